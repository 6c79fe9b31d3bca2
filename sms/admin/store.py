"""The configuration documents of SPEC section 7, as the admin command line reads and writes them.

The function only reads these documents (sms/repository/); operators write them, here or
in the console. Each write is one call with a precondition where the command promises one
(create: must not exist; update and remove: must exist), so a command either does what it
says or changes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore


class Missing(Exception):
    """The document the command needs does not exist."""


class Exists(Exception):
    """The document the command would create exists already."""


class HeldElsewhere(Exists):
    """The phone number belongs to another tenant (numbers/{E.164} names it)."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ConfigStore:
    def __init__(self, client: firestore.Client) -> None:
        self._db = client

    def _tenant(self, tenant_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("tenants").document(tenant_id)
        return ref

    def _child(self, tenant_id: str, collection: str, doc_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection(collection).document(doc_id)
        )
        return ref

    def require_tenant(self, tenant_id: str) -> dict[str, Any]:
        snap = self._tenant(tenant_id).get()
        if not snap.exists:
            raise Missing(f"tenant {tenant_id!r} does not exist")
        data: dict[str, Any] = snap.to_dict() or {}
        return data

    def list_tenants(self) -> list[str]:
        return sorted(ref.id for ref in self._db.collection("tenants").list_documents())

    def create(self, ref: firestore.DocumentReference, data: dict[str, Any], what: str) -> None:
        try:
            ref.create(data)
        except gexc.AlreadyExists as exc:
            raise Exists(f"{what} exists already") from exc

    def update(self, ref: firestore.DocumentReference, data: dict[str, Any], what: str) -> None:
        try:
            ref.update(data)
        except gexc.NotFound as exc:
            raise Missing(f"{what} does not exist") from exc

    def remove(self, ref: firestore.DocumentReference, what: str) -> None:
        if not ref.get().exists:
            raise Missing(f"{what} does not exist")
        ref.delete()

    # -- numbers: the tenant's outbound_numbers entry and the index numbers/{E.164}, together

    def add_number(self, tenant_id: str, e164: str, data: dict[str, Any]) -> None:
        """The tenant's outbound_numbers entry and its index, in one transaction: refused if
        the entry exists or another tenant holds the number."""
        entry, index = self.number(tenant_id, e164), self._index(e164)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> None:
            held = index.get(transaction=transaction)
            owner = (held.to_dict() or {}).get("tenant") if held.exists else None
            if owner not in (None, tenant_id):
                raise HeldElsewhere(f"{e164} belongs to tenant {owner!r}")
            if entry.get(transaction=transaction).exists:
                raise Exists(f"outbound number {e164} exists already")
            transaction.create(entry, data)
            transaction.set(index, {"tenant": tenant_id})

        write(self._db.transaction())

    def remove_number(self, tenant_id: str, e164: str) -> None:
        """The entry, and its index where the index names this tenant."""
        entry, index = self.number(tenant_id, e164), self._index(e164)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> None:
            if not entry.get(transaction=transaction).exists:
                raise Missing(f"outbound number {e164} does not exist")
            held = index.get(transaction=transaction)
            transaction.delete(entry)
            if held.exists and (held.to_dict() or {}).get("tenant") == tenant_id:
                transaction.delete(index)

        write(self._db.transaction())

    def index_number(self, tenant_id: str, e164: str) -> str:
        """Index a number the tenant already has: "indexed", "already", or the other owner."""

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> str:
            held = self._index(e164).get(transaction=transaction)
            owner = (held.to_dict() or {}).get("tenant") if held.exists else None
            if owner is None:
                transaction.set(self._index(e164), {"tenant": tenant_id})
                return "indexed"
            return "already" if owner == tenant_id else str(owner)

        result: str = write(self._db.transaction())
        return result

    def _index(self, e164: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("numbers").document(e164)
        return ref

    def documents(self, tenant_id: str, collection: str) -> list[tuple[str, dict[str, Any]]]:
        docs = self._tenant(tenant_id).collection(collection).stream()
        return [(doc.id, doc.to_dict() or {}) for doc in docs]

    # -- the documents, by name

    def tenant(self, tenant_id: str) -> firestore.DocumentReference:
        return self._tenant(tenant_id)

    def number(self, tenant_id: str, e164: str) -> firestore.DocumentReference:
        return self._child(tenant_id, "outbound_numbers", e164)

    def agent(self, tenant_id: str, agent_id: int) -> firestore.DocumentReference:
        return self._child(tenant_id, "agents", str(agent_id))

    def credential(self, tenant_id: str, credential_id: str) -> firestore.DocumentReference:
        return self._child(tenant_id, "api_credentials", credential_id)

    def opt_out(self, tenant_id: str, e164: str) -> firestore.DocumentReference:
        return self._child(tenant_id, "opt_outs", e164)

    @property
    def client(self) -> firestore.Client:
        return self._db

    @staticmethod
    def now() -> dt.datetime:
        return _now()
