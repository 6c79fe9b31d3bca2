"""Handing messages to the carrier: never lost, never sent twice.

The outbox is the message itself. A session's commit stores its message ``sending`` and
claimed by the request that committed it, so the normal path is that commit, one send, and
one write of what the carrier said. Anyone else who would send a message must first claim
it: move it on, with a precondition on the version it read, and a new ``claimed_at``. Of two
claimants (two sweepers, a sweeper and a retried request) only one can win, and only the
winner hands it over.

A message still ``sending`` may have gone out already: its last hand-over timed out, or its
sender died. Such a message is never handed over again before the carrier has been asked
whether it holds it (``Carrier.find``), and never while its last hand-over may still be in
flight: only after ``grace`` (SMS_SWEEP_AFTER_SECONDS) since it was claimed.

No HTTP, no Firestore, no carrier package here: the use case is handed a store and a carrier.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sms import deadline, errors, logs
from sms.carriers import Carrier, Outgoing, Receipt
from sms.clock import Clock
from sms.domain import FAILED, SENDING, ActiveSession, Chat, Event, Message, MessageRef, OptOut
from sms.events import model as events
from sms.events.outbox import Outbox

# A message no carrier has taken this long after it was stored is failed (SPEC 10.3).
MAX_AGE = dt.timedelta(hours=24)
# Of a request's deadline, what is kept for recording the carrier's answer.
RESERVE_SECONDS = 1.5
# The longest one call to the carrier may take, and the shortest it is given.
CARRIER_CALL_SECONDS = 5.0
MIN_CARRIER_CALL_SECONDS = 1.0
# How often one request hands a message over after the carrier answered 5xx.
MAX_ATTEMPTS = 3
OPT_OUT_REASON, UNKNOWN_REASON = "end_user_opt_out", "unknown"


class MessageStore(Protocol):
    def read_message(self, tenant_id: str, ref: MessageRef) -> Message | None: ...

    def save_message(
        self, tenant_id: str, message: Message, events: Sequence[Event] = ()
    ) -> Message: ...

    def fail_message(
        self,
        tenant_id: str,
        message: Message,
        ended: Chat | None,
        mark: ActiveSession | None,
        opt_out: OptOut | None,
        *,
        events: Sequence[Event] = (),
    ) -> None: ...

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]: ...

    def message_by_carrier_id(self, carrier_id: str) -> tuple[str, Message] | None: ...

    def carrier_id_owner(self, carrier_id: str) -> tuple[str, MessageRef] | None: ...


@dataclass(frozen=True)
class Delivered:
    """The carrier took the message."""

    message: Message


@dataclass(frozen=True)
class Failed:
    """The carrier refused the message, or none could be reached: its session has failed."""

    message: Message


@dataclass(frozen=True)
class Pending:
    """Not settled yet: it may have gone out. Settled later, by a retry or the sweeper."""

    message: Message
    retry_after: int  # seconds until it may be handed over again


@dataclass(frozen=True)
class Taken:
    """Someone else claimed it first, and settles it."""

    message: Message


@dataclass(frozen=True)
class Foreign:
    """It was handed to another carrier, which alone can settle it: left alone."""

    message: Message


Outcome = Delivered | Failed | Pending | Taken | Foreign
_CANNOT_TELL = object()  # the carrier could not be asked what it holds


def outcome_of(message: Message) -> Outcome:
    """What became of a settled message, as its first request answered it."""
    return Delivered(message) if message.accepted else Failed(message)


def outgoing(message: Message, until: dt.datetime | None = None) -> Outgoing:
    return Outgoing(message.to_number, message.from_number, message.text, message.created_at, until)


class Delivery:
    """Sending, settling and status reports of messages, on a store and a carrier."""

    def __init__(
        self,
        store: MessageStore,
        carrier: Carrier,
        clock: Clock,
        *,
        outbox: Outbox,
        deadline_seconds: float,
        grace_seconds: float,
    ) -> None:
        self._store = store
        self._carrier = carrier
        self._clock = clock
        self._outbox = outbox
        self._deadline_seconds = deadline_seconds
        self._grace = dt.timedelta(seconds=grace_seconds)

    @property
    def carrier_name(self) -> str:
        """The carrier this delivery hands messages to (and the only one it settles)."""
        return self._carrier.name

    def send_new(self, tenant_id: str, message: Message) -> Outcome:
        """Hand over a message its own commit has just stored, claimed by this request."""
        return self._hand_over(tenant_id, message, unreachable_fails=True)

    def settle(self, tenant_id: str, message: Message, sweeping: bool = False) -> Outcome:
        """Bring a message another sender left unsettled to its outcome, sending it at most once.

        While its last hand-over may still be in flight, the carrier is only asked whether it
        has it. After that, it is claimed; if it may have gone out, the carrier is asked
        again; only then is it handed over. The sweeper (``sweeping``) leaves a message
        whose carrier cannot be reached for its next round instead of failing it.
        """
        budget = deadline.current(self._deadline_seconds)
        if message.settled:
            return outcome_of(message)
        if message.carrier not in (None, self._carrier.name):
            return Foreign(message)
        now = self._clock()
        if message.status == SENDING and now < self._free_at(message):
            found = self._find(tenant_id, message, budget)
            if isinstance(found, Receipt):
                return self._record(tenant_id, message, found, budget)
            return Pending(message, self._retry_after(message))
        was_sending = message.status == SENDING
        # A hand-over of its last sender that was to land at the carrier has landed by now.
        handed_over_by = self._free_at(message)
        try:
            message = budget.retry(
                lambda: self._store.save_message(
                    tenant_id, message.claimed(now, self._carrier.name)
                )
            )
        except errors.LostRace:
            return Taken(message)
        if was_sending:
            found = self._find(tenant_id, message, budget, until=handed_over_by)
            if isinstance(found, Receipt):
                return self._record(tenant_id, message, found, budget)
            if found is _CANNOT_TELL:
                return Pending(message, self._retry_after(message))
        # A message held for quiet hours was ready to go when its hold ended, not before.
        if now - (message.scheduled_for or message.created_at) >= MAX_AGE:
            return self._fail(tenant_id, message, None, opted_out=False)
        return self._hand_over(tenant_id, message, unreachable_fails=not sweeping)

    def cancel(self, tenant_id: str, message: Message) -> Outcome:
        """A message held for quiet hours whose session ended before its time: failed, with no
        carrier's code, and no carrier asked (SPEC 10.8)."""
        budget = deadline.current(self._deadline_seconds)
        now = self._clock()
        cancelled = message.moved_to(FAILED, now)
        if cancelled is None:
            return outcome_of(message)
        changes = events.message_events(tenant_id, message, cancelled, now)
        try:
            saved = budget.retry(lambda: self._store.save_message(tenant_id, cancelled, changes))
        except errors.LostRace:
            return Taken(message)
        self._outbox.committed(changes)
        return Failed(saved)

    def refuse_opted_out(self, tenant_id: str, message: Message) -> Outcome:
        """A held message whose consumer opted out meanwhile: failed without a carrier call,
        its session ended for the opt-out (already recorded)."""
        return self._fail(tenant_id, message, None, opted_out=True, known=True)

    def report(self, carrier_id: str, status: str, error_code: str | None) -> str:
        """Apply a carrier's status report; what it did: updated, unchanged or unknown."""
        budget = deadline.current(self._deadline_seconds)
        while True:
            found = budget.retry(lambda: self._store.message_by_carrier_id(carrier_id))
            if found is None:
                return "unknown"
            tenant_id, message = found
            now = self._clock()
            moved = message.moved_to(status, now, error_code=error_code)
            if moved is None:
                return "unchanged"  # late, repeated, or after a final status
            logs.note(tenant=tenant_id, chat_id=message.chat_id)
            changes = events.message_events(tenant_id, message, moved, now)
            try:
                save = functools.partial(self._store.save_message, tenant_id, moved, changes)
                budget.retry(save)
                self._outbox.committed(changes)
                return "updated"
            except errors.LostRace:
                budget.pause()  # changed meanwhile: read it again

    # -- the steps

    def _hand_over(self, tenant_id: str, message: Message, unreachable_fails: bool) -> Outcome:
        budget = deadline.current(self._deadline_seconds)
        for _ in range(MAX_ATTEMPTS):
            try:
                receipt = self._carrier.send(outgoing(message), self._call_timeout(budget))
            except errors.CarrierRefused as refused:
                return self._fail(tenant_id, message, refused.code, refused.opted_out)
            except errors.CarrierUnreachable as exc:
                self._unreachable(tenant_id, message, exc)
                if unreachable_fails:
                    return self._fail(tenant_id, message, None, opted_out=False)
                return Pending(message, self._retry_after(message))
            except errors.CarrierOutcomeUnknown as unknown:
                found = self._find(tenant_id, message, budget)
                if isinstance(found, Receipt):
                    return self._record(tenant_id, message, found, budget)
                enough_time = budget.remaining() > RESERVE_SECONDS + MIN_CARRIER_CALL_SECONDS
                if unknown.in_flight or found is _CANNOT_TELL or not enough_time:
                    return Pending(message, self._retry_after(message))
                continue  # the carrier is done with it and does not hold it: again
            return self._record(tenant_id, message, receipt, budget)
        return Pending(message, self._retry_after(message))

    def _unreachable(
        self, tenant_id: str, message: Message, exc: errors.CarrierUnreachable
    ) -> None:
        """Log that the carrier could not be reached: a line of its own (the sweeper's too),
        and on the request's line, which has its trace."""
        host = self._carrier.host
        where = {"carrier": self._carrier.name, "carrier_host": host}
        logs.event(
            "WARNING",
            f"carrier unreachable: {exc}",
            **{k: v for k, v in where.items() if v is not None},
            tenant=tenant_id,
            chat_id=message.chat_id,
            message_id=message.id,
        )
        logs.note(carrier_unreachable=host or self._carrier.name)

    def _find(
        self,
        tenant_id: str,
        message: Message,
        budget: deadline.Deadline,
        until: dt.datetime | None = None,
    ) -> Receipt | object | None:
        """The carrier's record of the message, None if it has none, or _CANNOT_TELL.

        A record the carrier matched whose id is another message's is not this one.
        """
        try:
            candidates = self._carrier.find(outgoing(message, until), self._call_timeout(budget))
            for receipt in candidates:
                owner_of = functools.partial(self._store.carrier_id_owner, receipt.carrier_id)
                if budget.retry(owner_of) in (None, (tenant_id, message.ref)):
                    return receipt
        except (errors.Transient, errors.Refused):  # the carrier's, or the store's
            return _CANNOT_TELL
        return None

    def _record(
        self, tenant_id: str, message: Message, receipt: Receipt, budget: deadline.Deadline
    ) -> Outcome:
        """Store what the carrier said of a message it took. It went out whatever happens to
        this write: should it fail, the sweeper finds the carrier's record and stores it."""
        now = self._clock()
        moved = message.moved_to(receipt.status, now, receipt.carrier_id, receipt.error_code)
        moved = moved or dataclasses.replace(message, carrier_id=receipt.carrier_id)
        logs.note(carrier_id=receipt.carrier_id, message_status=moved.status)
        changes = events.message_events(tenant_id, message, moved, now)
        try:
            saved = budget.retry(lambda: self._store.save_message(tenant_id, moved, changes))
            self._outbox.committed(changes)
            return Delivered(saved)
        except (errors.LostRace, errors.BackendUnavailable) as exc:
            _not_stored(f"SMS {receipt.carrier_id} went out", exc, tenant_id, message)
            return Delivered(moved)

    def _fail(
        self,
        tenant_id: str,
        message: Message,
        code: str | None,
        opted_out: bool,
        known: bool = False,
    ) -> Outcome:
        """The message failed, its session ends failed and frees the consumer, at once; where
        the consumer ``opted_out`` (and it was not ``known``), the opt-out is recorded too."""
        budget = deadline.current(self._deadline_seconds)
        now = self._clock()
        failed = message.moved_to(FAILED, now, error_code=code) or message
        reason = OPT_OUT_REASON if opted_out else UNKNOWN_REASON
        opt_out = (
            OptOut(message.to_number, now, "carrier", code) if opted_out and not known else None
        )
        logs.note(message_status=FAILED, carrier_error=code)
        try:
            while True:
                chat, mark = budget.retry(
                    lambda: self._store.chat_and_session(tenant_id, message.chat_id)
                )
                ended = None
                if chat is not None and chat.active:  # never before its last message
                    at = max(self._clock(), chat.last_activity_at or chat.created_at)
                    ended = chat.ended(at, "failed", reason)
                if ended is None or mark is None or mark.chat_id != message.chat_id:
                    mark = None
                changes = _failure_events(
                    tenant_id, message, failed, ended=ended, opt_out=opt_out, now=now
                )
                try:
                    write = functools.partial(
                        self._store.fail_message,
                        tenant_id,
                        failed,
                        ended,
                        mark,
                        opt_out,
                        events=changes,
                    )
                    budget.retry(write)
                    self._outbox.committed(changes)
                    return Failed(failed)
                except errors.LostRace:
                    current = budget.retry(lambda: self._store.read_message(tenant_id, message.ref))
                    if current is not None and current.version != message.version:
                        return outcome_of(current) if current.settled else Taken(current)
                    budget.pause()  # the session changed meanwhile: decide again
        except errors.BackendUnavailable as exc:
            _not_stored("the carrier refused an SMS", exc, tenant_id, message)
            return Failed(failed)

    # -- time

    def _free_at(self, message: Message) -> dt.datetime:
        """When a message's last hand-over can no longer be in flight."""
        return (message.claimed_at or message.created_at) + self._grace

    def _retry_after(self, message: Message) -> int:
        left = (self._free_at(message) - self._clock()).total_seconds()
        return max(1, math.ceil(left))

    @staticmethod
    def _call_timeout(budget: deadline.Deadline) -> float:
        left = budget.remaining() - RESERVE_SECONDS
        return max(MIN_CARRIER_CALL_SECONDS, min(CARRIER_CALL_SECONDS, left))


def _failure_events(
    tenant_id: str,
    before: Message,
    failed: Message,
    *,
    ended: Chat | None,
    opt_out: OptOut | None,
    now: dt.datetime,
) -> list[Event]:
    """A failed message's events: message.failed, then its session's chat.ended, then the
    consumer's consumer.opted_out where the carrier said they had unsubscribed."""
    changes = events.message_events(tenant_id, before, failed, now)
    if ended is not None:
        changes.append(events.chat_event(events.CHAT_ENDED, tenant_id, ended, now))
    if opt_out is not None:
        changes.append(
            events.consumer_event(events.OPTED_OUT, tenant_id, opt_out.number, "carrier", now)
        )
    return changes


def _not_stored(what: str, exc: Exception, tenant_id: str, message: Message) -> None:
    """Log an outcome that could not be stored, and what becomes of the message.

    Firestore could not be reached: the message stays claimed by this sender, so that after
    SMS_SWEEP_AFTER_SECONDS a sweeper (or a retry with its Idempotency-Key) asks the carrier
    and stores what it holds, without sending it again. Someone else claimed the message
    meanwhile: that is only possible if this sender outlived SMS_SWEEP_AFTER_SECONDS (a
    request is bounded well below it), and the other sender may have sent it a second time.
    """
    fields = {"tenant": tenant_id, "chat_id": message.chat_id, "message_id": message.id}
    if isinstance(exc, errors.LostRace):
        logs.event(
            "ERROR",
            f"{what}, but another sender claimed the message meanwhile (this one outlived "
            "SMS_SWEEP_AFTER_SECONDS): it settles it, and may have sent it again",
            **fields,
        )
        return
    logs.event(
        "WARNING",
        f"{what}, but that could not be stored ({exc!r}): the sweeper will ask the carrier "
        "after SMS_SWEEP_AFTER_SECONDS and store it, without sending it again",
        **fields,
    )
