"""Write a tenant's configuration documents (SPEC section 7), for local runs and tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.cloud import firestore

from sms import credentials


@dataclass
class TenantSeed:
    """A tenant as an operator would configure it."""

    id: str
    token: str = field(default_factory=credentials.new_token)
    settings: dict[str, Any] = field(
        default_factory=lambda: {"sms_enabled": True, "outbound_sms_enabled": True}
    )
    outbound_numbers: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"+16285550199": {"sms_enabled": True}}
    )
    agents: dict[int, dict[str, Any]] = field(default_factory=dict)
    credential_id: str = "default"
    # Write numbers/{E.164} for the outbound numbers too (which tenant replies to them reach);
    # off by default, as test tenants share the seed's number.
    index_numbers: bool = False

    def write(self, db: firestore.Client) -> None:
        tenant = db.collection("tenants").document(self.id)
        batch = db.batch()
        batch.set(tenant, self.settings)
        for number, data in self.outbound_numbers.items():
            batch.set(tenant.collection("outbound_numbers").document(number), data)
            if self.index_numbers:
                batch.set(db.collection("numbers").document(number), {"tenant": self.id})
        for agent_id, data in self.agents.items():
            batch.set(tenant.collection("agents").document(str(agent_id)), data)
        batch.set(
            tenant.collection("api_credentials").document(self.credential_id),
            {"name": "seed", "token_sha256": credentials.hash_token(self.token), "enabled": True},
        )
        batch.commit()


DEMO_AGENT = {
    "agent_number": 9,
    "email": "john.doe@foo.com",
    "name": "John Doe",
    "first_name": "John",
    "last_name": "Doe",
    "avatar_url": "https://foobar.com/johndoe",
}
