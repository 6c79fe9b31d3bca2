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
