"""Idempotency-Key (SPEC 10.1): a retried request gets the first answer, not a second session.

A request with a key first claims it (a document written with a precondition, so that only
one request can hold it). The holder runs; its answer is recorded for the key in the same
commit as the session it produced, so no crash can leave one without the other. That answer
is bound to the session's message: whether it stands (200) or the carrier refused the
message (502), a replay answers from what became of the message, and a replay of a send that
was left unsettled settles it. An error answer (4xx) is recorded on its own; a 5xx before
the commit releases the claim so that a retry runs afresh. A holder that died is recognised
by its lease running out, and the key is claimed again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import math
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sms import deadline, errors
from sms.clock import Clock
from sms.domain import Chat, Claim, KeyCompletion, MessageRef, StoredKey

KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")  # 1 to 255 visible ASCII characters
LIFETIME = dt.timedelta(hours=24)
# Giving a claim up happens when the request's deadline may be spent: it gets time of its own.
RELEASE_SECONDS = 1.0


class KeyStore(Protocol):
    def read_key(self, tenant_id: str, key_id: str) -> StoredKey | None: ...

    def claim_key(self, claim: Claim, record: StoredKey, replaces: StoredKey | None) -> Claim: ...

    def finish_key(self, completion: KeyCompletion) -> None: ...

    def release_key(self, claim: Claim) -> None: ...


@dataclass(frozen=True)
class Answer:
    """What to answer for a key: a chat (200), an error's text, or a text an earlier version
    recorded as it was sent."""

    status: int
    chat: Chat | None = None
    error: str | None = None
    body: str | None = None
    replayed: bool = False


def key_id(key: str) -> str:
    """The key's digest: a document id whatever characters the key has."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def fingerprint(body: Any) -> str:
    """A digest of the request body, compared as parsed JSON (key order and spacing ignored)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def raw_fingerprint(data: bytes) -> str:
    """A digest of a body that is not JSON: compared byte for byte."""
    return hashlib.sha256(b"raw\0" + data).hexdigest()


def parse_key(header: str | None) -> str | None:
    """The Idempotency-Key header's value, None when absent; 400 when malformed."""
    if header is None:
        return None
    if not KEY_PATTERN.fullmatch(header):
        raise errors.BadRequest(errors.IDEMPOTENCY_KEY_INVALID)
    return header


class Idempotency:
    def __init__(
        self,
        store: KeyStore,
        clock: Clock,
        deadline_seconds: float,
        lease: dt.timedelta,
    ) -> None:
        self._store = store
        self._clock = clock
        self._deadline_seconds = deadline_seconds
        self._lease = lease

    def run(
        self,
        tenant_id: str,
        key: str,
        digest: str,
        handle: Callable[[Claim], Chat],
        resume: Callable[[MessageRef, Chat], Chat],
    ) -> Answer:
        """The answer for this key: replayed if recorded, else ``handle``'s, then recorded.

        A recorded success is bound to the message it sent: ``resume`` answers what became
        of that message (settling it first if its send was left unsettled).
        """
        claimed = self._claim(tenant_id, key_id(key), digest)
        if isinstance(claimed, StoredKey):
            return self._replay(claimed, resume)
        try:
            return Answer(200, chat=handle(claimed))
        except (errors.SmsNotSent, errors.SendPending):
            raise  # after the commit: the key is bound to its message already
        except errors.ApiError as error:
            if error.status >= 500:
                self._release(claimed)
                raise
            # If this fails, the claim's lease runs out and a retry runs afresh.
            with contextlib.suppress(errors.LostRace, errors.BackendUnavailable):
                self._store.finish_key(KeyCompletion(claimed, error.status, error=error.message))
            raise
        except BaseException:
            self._release(claimed)
            raise

    @staticmethod
    def _replay(stored: StoredKey, resume: Callable[[MessageRef, Chat], Chat]) -> Answer:
        """The recorded answer; a success bound to its message, as that message stands."""
        status = stored.status or 200
        if stored.message is not None and stored.chat is not None:
            try:
                return Answer(status, chat=resume(stored.message, stored.chat), replayed=True)
            except errors.SmsNotSent as error:
                return Answer(error.status, error=error.message, replayed=True)
        return Answer(status, chat=stored.chat, error=stored.error, body=stored.body, replayed=True)

    def _claim(self, tenant_id: str, kid: str, digest: str) -> Claim | StoredKey:
        budget = deadline.current(self._deadline_seconds)
        holder = secrets.token_hex(8)
        while True:
            stored = budget.retry(lambda: self._store.read_key(tenant_id, kid))
            now = self._clock()
            if stored is not None and stored.holder == holder and stored.status is None:
                # A claim whose answer was lost in transit, but which landed: it is ours.
                return Claim(tenant_id, kid, digest, holder=holder, version=stored.version)
            if stored is not None and now < stored.expires_at:
                if stored.fingerprint != digest:
                    raise errors.Unprocessable(errors.IDEMPOTENCY_KEY_REUSED)
                if stored.answered:
                    return stored
                if now < stored.lease_expires_at:
                    wait = math.ceil((stored.lease_expires_at - now).total_seconds())
                    raise errors.Conflict(errors.IDEMPOTENCY_KEY_IN_PROGRESS, retry_after=wait)
                # The first request died while holding the key: take it over.
            claim = Claim(tenant_id=tenant_id, key_id=kid, fingerprint=digest, holder=holder)
            record = StoredKey(
                fingerprint=digest,
                holder=holder,
                status=None,
                lease_expires_at=now + self._lease,
                expires_at=now + LIFETIME,
            )
            try:
                return budget.retry(functools.partial(self._store.claim_key, claim, record, stored))
            except errors.LostRace:
                budget.pause()  # another request claimed it first: look again

    def _release(self, claim: Claim) -> None:
        with (
            deadline.bounded(RELEASE_SECONDS),
            contextlib.suppress(errors.LostRace, errors.BackendUnavailable),
        ):
            self._store.release_key(claim)  # if this fails, the lease runs out instead
