"""Tenants as the requests meet them: who a credential signs in, how many requests a tenant
made this second (SPEC 10.6), and which tenant owns a phone number (SPEC 10.5)."""

from __future__ import annotations

import datetime as dt
import hmac
import time
from dataclasses import dataclass

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from sms.domain import Tenant
from sms.repository import documents
from sms.repository.database import Database

# Why a credential signed no tenant in: for the log, never for the answer (SPEC 2).
UNKNOWN_TENANT = "unknown tenant"
DISABLED_CREDENTIAL = "disabled credential"
BAD_TOKEN = "bad token (no credential of the tenant matches)"  # noqa: S105 a log text


@dataclass(frozen=True)
class SignIn:
    """Who a credential signs in (``tenant``), or why it signs no one in (``reason``)."""

    tenant: Tenant | None
    reason: str | None = None


class Tenants:
    def __init__(self, db: Database) -> None:
        self._db = db

    def authenticate(self, tenant_id: str, token_sha256: str) -> Tenant | None:
        """The tenant, if one of its enabled credentials has this token hash."""
        return self.sign_in(tenant_id, token_sha256).tenant

    def sign_in(self, tenant_id: str, token_sha256: str) -> SignIn:
        """The tenant, if one of its enabled credentials has this token hash; else why not
        (an unknown tenant, a disabled credential, or no credential with this hash). The
        same reads whatever the reason."""
        tenant_ref = self._db.tenant(tenant_id)
        query = tenant_ref.collection("api_credentials").where(
            filter=FieldFilter("token_sha256", "==", token_sha256)
        )
        # Both reads, whatever the first finds: an unknown tenant must not answer sooner.
        tenant_snap = self._db.get(tenant_ref)
        credentials = self._db.stream(query.limit(10))
        if not tenant_snap.exists:
            return SignIn(None, UNKNOWN_TENANT)
        reason = BAD_TOKEN
        for credential in credentials:
            data = credential.to_dict() or {}
            stored = data.get("token_sha256")
            if not isinstance(stored, str) or not hmac.compare_digest(stored, token_sha256):
                continue
            if data.get("enabled") is True:
                return SignIn(documents.tenant_from(tenant_id, tenant_snap.to_dict() or {}))
            reason = DISABLED_CREDENTIAL
        return SignIn(None, reason)

    def count_request(self, tenant_id: str) -> int:
        """Count one request in its tenant's current second; the count so far (SPEC 10.6).

        A server-side increment of request_counts/{tenant}@{second}: it reads nothing, so
        counts made at once by any number of instances never wait on or abort each other.
        It lives outside the tenant's documents (a refused request writes nothing there),
        and expires (TTL on expires_at) a minute later.
        """
        second = int(time.time())
        ref = self._db.client.collection("request_counts").document(f"{tenant_id}@{second}")
        expires = dt.datetime.fromtimestamp(second + 60, dt.timezone.utc)
        batch = self._db.client.batch()
        batch.set(ref, {"count": firestore.Increment(1), "expires_at": expires}, merge=True)
        with self._db.failures(commit=True):
            [result] = batch.commit(**self._db.options())
        return int(result.transform_results[0].integer_value)

    def reply_route(self, number: str, carrier_id: str) -> tuple[str | None, bool]:
        """The tenant that owns a number (numbers/{E.164}), and whether a message with this
        carrier id is stored already."""
        owner_ref, seen_ref = self._db.number(number), self._db.carrier_id(carrier_id)
        snaps = self._db.get_all([owner_ref, seen_ref])
        owner = snaps[owner_ref.path].to_dict() if snaps[owner_ref.path].exists else None
        tenant = owner.get("tenant") if owner else None
        return (tenant if isinstance(tenant, str) else None), snaps[seen_ref.path].exists
