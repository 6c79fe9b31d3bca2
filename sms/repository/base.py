"""What every part of the store shares: the client, Firestore's failures as the service knows
them, and every call bounded by the request's deadline."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import gapic_v1
from google.cloud import firestore

from sms import admission, deadline, errors
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


@contextlib.contextmanager
def _failures(commit: bool = False) -> Iterator[None]:
    """Firestore's failures as the service knows them: a lost race, or an outage that may pass.

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
        raise errors.BackendUnavailable(f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:
        # The transaction API wraps failures in ValueError: "failed to commit in N attempts"
        # (caused by Aborted), or "cannot be rolled back" when beginning the transaction
        # failed (in the context of that failure). Judge them by what lies underneath.
        origin = exc.__cause__ or exc.__context__
        if isinstance(origin, _TRANSIENT):
            raise errors.BackendUnavailable(f"{type(origin).__name__}: {origin}") from exc
        if commit and isinstance(origin, _LOST_RACE):
            raise errors.LostRace(str(origin)) from exc
        raise


class _CallTimeout:
    """Timeout for the generated Firestore methods: what remains of the request's deadline.

    Used as a method default (see ``_bound_calls``), it applies to every call the client
    makes, including BeginTransaction, Commit and Rollback, which the transaction API gives
    no way to time out.
    """

    def __init__(self, cap: float) -> None:
        self._cap = cap

    def __call__(self, func: Any) -> Any:
        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = deadline.call_timeout(self._cap)
            return func(*args, **kwargs)

        return call


def _bound_calls(client: firestore.Client, cap: float) -> None:
    """Make every Firestore call of ``client`` one try, timed out by the request's deadline.

    The generated defaults retry for 60 to 300 seconds; a request must answer within seconds,
    so retrying is left to the service, which knows the deadline and what is safe to retry.
    """
    transport = client._firestore_api._transport  # noqa: SLF001 no public hook for defaults
    for method in transport._wrapped_methods.values():  # noqa: SLF001
        if isinstance(method, gapic_v1.method._GapicCallable):  # noqa: SLF001
            method._retry = None  # noqa: SLF001
            method._timeout = _CallTimeout(cap)  # noqa: SLF001


class StoreBase:
    """The client, and the helpers every aggregate's part of the store uses."""

    def __init__(self, client: firestore.Client) -> None:
        self._db = client

    def _tenant(self, tenant_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("tenants").document(tenant_id)
        return ref

    def _get_all(self, refs: Iterable[firestore.DocumentReference]) -> dict[str, Any]:
        """Snapshots by path, read in one round trip."""
        with _failures():
            return {snap.reference.path: snap for snap in self._db.get_all(list(refs))}

    def _transact(self, write: Callable[[firestore.Transaction], None]) -> list[Any]:
        """Run a transaction body once; its write results, in the order it wrote.

        Lost races and transient failures come out as the service's errors.
        """
        admission.check(deadline.call_timeout(5.0))  # a request over its limit writes nothing
        transaction = self._db.transaction(max_attempts=1)
        with _failures(commit=True):
            firestore.transactional(write)(transaction)
        return list(transaction.write_results or ())

    def _batch(self, write: Callable[[firestore.WriteBatch], None]) -> list[Any]:
        """Commit writes atomically without a transaction (one call, no locks); the results."""
        admission.check(deadline.call_timeout(5.0))  # a request over its limit writes nothing
        batch = self._db.batch()
        write(batch)
        with _failures(commit=True):
            return list(batch.commit())

    # -- documents by name

    def _session_ref(self, tenant_id: str, consumer: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection("active_sessions").document(consumer)
        )
        return ref

    def _chat_ref(self, tenant_id: str, chat_id: int) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection("chats").document(str(chat_id))
        )
        return ref

    def _message_ref(self, tenant_id: str, message: MessageRef) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._chat_ref(tenant_id, message.chat_id)
            .collection("messages")
            .document(message.message_id)
        )
        return ref

    def _opt_out_ref(self, tenant_id: str, consumer: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = (
            self._tenant(tenant_id).collection("opt_outs").document(consumer)
        )
        return ref

    def _carrier_ref(self, carrier_id: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._db.collection("carrier_ids").document(carrier_id)
        return ref

    def _at(self, version: Any) -> Any:
        """The precondition: the document is still at ``version``."""
        return self._db.write_option(last_update_time=version)
