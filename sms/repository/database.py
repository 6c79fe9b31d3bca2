"""What every part of the store shares: one Firestore client whose every call is bounded by
the request's deadline, Firestore's failures as the service knows them, and documents by name.

Each call is one try, with ``retry=None`` and a ``timeout=`` of what remains of the
request's deadline: the generated defaults retry for 60 to 300 seconds, and a request must
answer within seconds, so retrying is left to the use cases, which know the deadline and
what is safe to retry. (A transaction's own begin, commit and rollback take no such
arguments: ``sms.reach`` bounds them.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from sms import admission, deadline, errors, reach
from sms.domain import MessageRef

# Precondition failures of a commit: another request wrote the document first.
_LOST_RACE = (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound)
# Failures that may pass: the call can be tried again (after a fresh read, for a commit).
_TRANSIENT = (
    gexc.Aborted,
    gexc.Cancelled,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.ServiceUnavailable,
    gexc.Unknown,
    gexc.RetryError,
)
# Of a request's deadline, the longest a write may wait for its request's rate-limit count.
_ADMISSION_SECONDS = 5.0


@contextlib.contextmanager
def classified(commit: bool = False, where: str = "Firestore") -> Iterator[None]:
    """Firestore's failures as the service knows them: a lost race (of a commit), or an outage
    that may pass, naming ``where`` it could not be reached.

    Anything else (a bug, a misconfiguration such as a missing permission) goes up as it is,
    to be logged with its traceback: retrying it until the deadline would only hide it.
    """
    try:
        yield
    except _LOST_RACE as exc:
        if not commit:
            raise
        raise errors.LostRace(str(exc)) from exc
    except _TRANSIENT as exc:
        raise _unavailable(where, exc) from exc
    except ValueError as exc:
        # The transaction API wraps failures in ValueError: "failed to commit in N attempts"
        # (caused by Aborted), or "cannot be rolled back" when beginning the transaction
        # failed (in the context of that failure). Judge them by what lies underneath.
        origin = exc.__cause__ or exc.__context__
        if isinstance(origin, _TRANSIENT):
            raise _unavailable(where, origin) from exc
        if commit and isinstance(origin, _LOST_RACE):
            raise errors.LostRace(str(origin)) from exc
        raise


def _unavailable(where: str, exc: BaseException) -> errors.BackendUnavailable:
    return errors.BackendUnavailable(f"{where} could not be used: {type(exc).__name__}: {exc}")


class Database:
    """One database: its client, its calls bounded, its documents by name."""

    def __init__(
        self, client: firestore.Client, call_seconds: float, database: str = "(default)"
    ) -> None:
        self.client = client
        self._call_seconds = call_seconds
        self._where = f"Firestore at {_where(client.project, database)}"
        reach.bound_transaction_calls(client, call_seconds)

    def failures(self, commit: bool = False) -> contextlib.AbstractContextManager[None]:
        """Firestore's failures as the service knows them (see ``classified``)."""
        return classified(commit, self._where)

    def options(self) -> dict[str, Any]:
        """The arguments that bound one call: no retry, and what remains of the deadline."""
        return {"retry": None, "timeout": deadline.call_timeout(self._call_seconds)}

    def get_all(self, refs: Iterable[firestore.DocumentReference]) -> dict[str, Any]:
        """Snapshots by path, read in one round trip."""
        with self.failures():
            return {
                snap.reference.path: snap
                for snap in self.client.get_all(list(refs), **self.options())
            }

    def get(self, ref: firestore.DocumentReference) -> Any:
        """One document's snapshot."""
        [snap] = self.get_all([ref]).values()
        return snap

    def stream(self, query: Any) -> list[Any]:
        """A query's snapshots, read at once."""
        with self.failures():
            return list(query.stream(**self.options()))

    def transact(self, write: Callable[[firestore.Transaction], None]) -> list[Any]:
        """Run a transaction body once; its write results, in the order it wrote.

        Lost races and transient failures come out as the service's errors.
        """
        admission.check(deadline.call_timeout(_ADMISSION_SECONDS))  # over its limit: no write
        transaction = self.client.transaction(max_attempts=1)
        with self.failures(commit=True):
            firestore.transactional(write)(transaction)
        return list(transaction.write_results or ())

    def batch(self, write: Callable[[firestore.WriteBatch], None]) -> list[Any]:
        """Commit writes atomically without a transaction (one call, no locks); the results."""
        admission.check(deadline.call_timeout(_ADMISSION_SECONDS))  # over its limit: no write
        batch = self.client.batch()
        write(batch)
        with self.failures(commit=True):
            return list(batch.commit(**self.options()))

    def at(self, version: Any) -> Any:
        """The precondition: the document is still at ``version``."""
        return self.client.write_option(last_update_time=version)

    # -- documents by name

    def tenant(self, tenant_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self.client.collection("tenants").document(tenant_id)
        return ref

    def of_tenant(
        self, tenant_id: str, collection: str, doc_id: str
    ) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self.tenant(tenant_id).collection(collection).document(doc_id)
        )
        return ref

    def session(self, tenant_id: str, consumer: str) -> firestore.DocumentReference:
        return self.of_tenant(tenant_id, "active_sessions", consumer)

    def end_user(self, tenant_id: str, consumer: str) -> firestore.DocumentReference:
        return self.of_tenant(tenant_id, "end_users", consumer)

    def chat(self, tenant_id: str, chat_id: int) -> firestore.DocumentReference:
        return self.of_tenant(tenant_id, "chats", str(chat_id))

    def message(self, tenant_id: str, message: MessageRef) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self.chat(tenant_id, message.chat_id)
            .collection("messages")
            .document(message.message_id)
        )
        return ref

    def opt_out(self, tenant_id: str, consumer: str) -> firestore.DocumentReference:
        return self.of_tenant(tenant_id, "opt_outs", consumer)

    def carrier_id(self, carrier_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self.client.collection("carrier_ids").document(
            carrier_id
        )
        return ref

    def number(self, e164: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self.client.collection("numbers").document(e164)
        return ref


def _where(project: str | None, database: str) -> str:
    """What a failure names as unreachable: the emulator's host, or the project's database."""
    emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if emulator:
        return f"{emulator} (the emulator), project {project}"
    return f"project {project}, database {database}"
