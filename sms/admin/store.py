"""The configuration documents of SPEC section 7, as the admin command line reads and writes them.

The function only reads these documents (sms/repository/); operators write them, here or
in the console. Each write is one call with a precondition where the command promises one
(create: must not exist; update and remove: must exist), so a command either does what it
says or changes nothing. A change the function tells the tenant of (an opt-out) is committed
with its event, written as the function writes its own (sms.repository.events, SPEC 10.7).

Every call is one try (``retry=None``) with a ``timeout=`` of what remains of the command's
time (``COMMAND_SECONDS``, held by ``sms.deadline``): the library's defaults retry for
minutes, and a stopped emulator or an unreachable project would leave the operator waiting in
silence. A transaction's own begin, commit and rollback take no such arguments:
``sms.reach`` bounds them the same way. Firestore not answering comes out as Unreachable,
which names where it was tried and how to fix that.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from sms import deadline, reach
from sms.domain import Event
from sms.repository.events import event_document

# The time one command may wait on Firestore, all its calls together.
COMMAND_SECONDS = 10.0
# Firestore did not answer: refused, timed out, or given up on.
_UNANSWERED = (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError)
# What an operator can do about it, by where the command tried.
_EMULATOR_HINT = (
    "is the emulator running? (bash scripts/run-local.sh starts one, and prints the export "
    "line to use)"
)
_PROJECT_HINT = "check your network and credentials (gcloud auth application-default login)"
# Clients whose transaction calls are bounded already (a test hands in the same one often).
_BOUNDED: weakref.WeakSet[firestore.Client] = weakref.WeakSet()


class Missing(Exception):
    """The document the command needs does not exist."""


class Exists(Exception):
    """The document the command would create exists already."""


class Unfit(Exception):
    """The document exists, but is not as the command needs it (a disabled endpoint...)."""


class HeldElsewhere(Exists):
    """The phone number belongs to another tenant (numbers/{E.164} names it)."""


class Unreachable(Exception):
    """Firestore did not answer in time; the message says where it was tried and what to do."""


def unanswered(exc: BaseException) -> bool:
    """Whether ``exc`` is Firestore not answering, or was caused by it (the transaction API
    wraps such failures in ValueError, the service's store in BackendUnavailable)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, _UNANSWERED):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ConfigStore:
    def __init__(self, client: firestore.Client, database: str = "(default)") -> None:
        self._db = client
        self._database = database

    def _tenant(self, tenant_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("tenants").document(tenant_id)
        return ref

    def _child(self, tenant_id: str, collection: str, doc_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection(collection).document(doc_id)
        )
        return ref

    # -- every call: one try, within what remains of the command's time

    @staticmethod
    def _bounds() -> dict[str, Any]:
        return {"retry": None, "timeout": deadline.call_timeout(COMMAND_SECONDS)}

    @contextlib.contextmanager
    def _answered(self) -> Iterator[None]:
        """Firestore not answering, as Unreachable; any other failure as it is."""
        try:
            yield
        except (*_UNANSWERED, ValueError) as exc:
            if not unanswered(exc):
                raise
            raise self.unreachable() from exc

    def unreachable(self, seconds: float = COMMAND_SECONDS) -> Unreachable:
        """What the command says when Firestore did not answer within ``seconds``."""
        emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
        if emulator:
            where = f"Firestore at {emulator} (the emulator, FIRESTORE_EMULATOR_HOST)"
            hint = _EMULATOR_HINT
        else:
            where = f"Firestore of project {self._db.project} (database {self._database})"
            hint = _PROJECT_HINT
        return Unreachable(f"{where} did not answer within {seconds:g} s: {hint}")

    def _transaction(self) -> firestore.Transaction:
        """A transaction whose begin, commit and rollback are bounded like every other call."""
        if self._db not in _BOUNDED:
            reach.bound_transaction_calls(self._db, COMMAND_SECONDS)
            _BOUNDED.add(self._db)
        transaction: firestore.Transaction = self._db.transaction()
        return transaction

    # -- reads and writes

    def require_tenant(self, tenant_id: str) -> dict[str, Any]:
        with self._answered():
            snap = self._tenant(tenant_id).get(**self._bounds())
        if not snap.exists:
            raise Missing(f"tenant {tenant_id!r} does not exist")
        data: dict[str, Any] = snap.to_dict() or {}
        return data

    def list_tenants(self) -> list[str]:
        with self._answered():
            refs = list(self._db.collection("tenants").list_documents(**self._bounds()))
        return sorted(ref.id for ref in refs)

    def create(self, ref: firestore.DocumentReference, data: dict[str, Any], what: str) -> None:
        try:
            with self._answered():
                ref.create(data, **self._bounds())
        except gexc.AlreadyExists as exc:
            raise Exists(f"{what} exists already") from exc

    def update(self, ref: firestore.DocumentReference, data: dict[str, Any], what: str) -> None:
        try:
            with self._answered():
                ref.update(data, **self._bounds())
        except gexc.NotFound as exc:
            raise Missing(f"{what} does not exist") from exc

    def remove(self, ref: firestore.DocumentReference, what: str) -> None:
        with self._answered():
            exists = ref.get(**self._bounds()).exists
        if not exists:
            raise Missing(f"{what} does not exist")
        with self._answered():
            ref.delete(**self._bounds())

    def change(
        self,
        ref: firestore.DocumentReference,
        decide: Callable[[dict[str, Any]], dict[str, Any]],
        what: str,
    ) -> dict[str, Any]:
        """Update a document with the fields ``decide`` makes of what it holds, in one
        transaction (Missing if it does not exist); those fields."""

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> dict[str, Any]:
            snap = ref.get(transaction=transaction, **self._bounds())
            if not snap.exists:
                raise Missing(f"{what} does not exist")
            fields = decide(snap.to_dict() or {})
            transaction.update(ref, fields)
            return fields

        with self._answered():
            changed: dict[str, Any] = write(self._transaction())
        return changed

    def write_with_event(
        self,
        ref: firestore.DocumentReference,
        data: dict[str, Any] | None,
        event: Event,
        what: str,
    ) -> None:
        """In one commit: create ``ref`` with ``data`` (Exists if it exists), or delete it
        (``data`` None; Missing if it does not exist), and record ``event`` as the function
        records the events of its own changes (SPEC 10.7)."""
        batch = self._db.batch()
        if data is None:
            batch.delete(ref, option=self._db.write_option(exists=True))
        else:
            batch.create(ref, data)
        batch.create(self._child(event.tenant, "events", event.id), event_document(event))
        try:
            with self._answered():
                batch.commit(**self._bounds())
        except gexc.AlreadyExists as exc:
            raise Exists(f"{what} exists already") from exc
        except gexc.NotFound as exc:
            raise Missing(f"{what} does not exist") from exc

    # -- numbers: the tenant's outbound_numbers entry and the index numbers/{E.164}, together

    def add_number(self, tenant_id: str, e164: str, data: dict[str, Any]) -> None:
        """The tenant's outbound_numbers entry and its index, in one transaction: refused if
        the entry exists or another tenant holds the number."""
        entry, index = self.number(tenant_id, e164), self._index(e164)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> None:
            held = index.get(transaction=transaction, **self._bounds())
            owner = (held.to_dict() or {}).get("tenant") if held.exists else None
            if owner not in (None, tenant_id):
                raise HeldElsewhere(f"{e164} belongs to tenant {owner!r}")
            if entry.get(transaction=transaction, **self._bounds()).exists:
                raise Exists(f"outbound number {e164} exists already")
            transaction.create(entry, data)
            transaction.set(index, {"tenant": tenant_id})

        with self._answered():
            write(self._transaction())

    def remove_number(self, tenant_id: str, e164: str) -> None:
        """The entry, and its index where the index names this tenant."""
        entry, index = self.number(tenant_id, e164), self._index(e164)

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> None:
            if not entry.get(transaction=transaction, **self._bounds()).exists:
                raise Missing(f"outbound number {e164} does not exist")
            held = index.get(transaction=transaction, **self._bounds())
            transaction.delete(entry)
            if held.exists and (held.to_dict() or {}).get("tenant") == tenant_id:
                transaction.delete(index)

        with self._answered():
            write(self._transaction())

    def index_number(self, tenant_id: str, e164: str) -> str:
        """Index a number the tenant already has: "indexed", "already", or the other owner."""

        @firestore.transactional
        def write(transaction: firestore.Transaction) -> str:
            held = self._index(e164).get(transaction=transaction, **self._bounds())
            owner = (held.to_dict() or {}).get("tenant") if held.exists else None
            if owner is None:
                transaction.set(self._index(e164), {"tenant": tenant_id})
                return "indexed"
            return "already" if owner == tenant_id else str(owner)

        with self._answered():
            result: str = write(self._transaction())
        return result

    def _index(self, e164: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("numbers").document(e164)
        return ref

    def documents(self, tenant_id: str, collection: str) -> list[tuple[str, dict[str, Any]]]:
        with self._answered():
            docs = list(self._tenant(tenant_id).collection(collection).stream(**self._bounds()))
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

    def webhook_endpoint(self, tenant_id: str, endpoint_id: str) -> firestore.DocumentReference:
        return self._child(tenant_id, "webhook_endpoints", endpoint_id)

    @property
    def client(self) -> firestore.Client:
        return self._db

    @staticmethod
    def now() -> dt.datetime:
        return _now()
