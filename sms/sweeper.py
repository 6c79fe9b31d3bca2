"""The sweeper: what no request is there to do, once a minute.

- It ends the sessions idle past their tenant's timeout that no request has met yet (as the
  request would have: chat.ended, ``ends_at`` the moment it expired).
- It releases the messages held for quiet hours whose time has come (SPEC 10.8): sent
  through the same claim as any other send, cancelled if their session ended, failed if
  their consumer opted out meanwhile, held again if the window came back.
- It settles what a crashed or timed-out sender left ``queued`` or ``sending``: every message
  unsettled since it was last claimed more than SMS_SWEEP_AFTER_SECONDS ago, settled as
  ``Delivery.settle`` does: claimed first (so that two sweepers, or a sweeper and a retried
  request, never both send it), the carrier asked whether it holds it, and only then handed
  over. A message handed to another carrier is left to that carrier's sweeper.
- It announces again the events no dispatcher has taken.

It runs as ``python -m sms.admin sweep`` and as the functions-framework target
``sms_sweeper``. No HTTP and no Firestore here: the use case is handed a store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sms import deadline, errors, logs, quiet_hours
from sms.clock import Clock
from sms.delivery import (
    Delivered,
    Delivery,
    Failed,
    Foreign,
    MessageStore,
    Outcome,
    Pending,
    Taken,
)
from sms.domain import (
    DELIVERED,
    FAILED,
    SENT,
    UNDELIVERED,
    ActiveSession,
    Chat,
    ConsumerState,
    Event,
    Message,
    MessageRef,
    Tenant,
)
from sms.events import model as events
from sms.events.outbox import PUBLISH_SECONDS, Outbox
from sms.sessions import as_of

BATCH = 100  # messages or sessions read at once
# An event no dispatcher has taken this long after it was made is announced again: its
# request's own announcement failed, or is still on its way. (The next sweep takes the rest.)
ANNOUNCE_AFTER = dt.timedelta(seconds=10)
EVENTS_PER_SWEEP = 500


class SweepStore(MessageStore, Protocol):
    def unsettled_messages(
        self, claimed_before: dt.datetime, batch_size: int
    ) -> list[tuple[str, Message]]: ...

    def undispatched_events(
        self, before: dt.datetime, batch_size: int
    ) -> list[tuple[str, str]]: ...

    def due_held(self, now: dt.datetime, batch_size: int) -> list[tuple[str, Message]]: ...

    def expired_chats(self, before: dt.datetime, batch_size: int) -> list[tuple[str, Chat]]: ...

    def postpone_expiry(self, tenant_id: str, chat: Chat, expires_at: dt.datetime) -> None: ...

    def tenant_and_consumer(
        self, tenant_id: str, consumer: str
    ) -> tuple[Tenant | None, ConsumerState]: ...

    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None: ...

    def end_chat(
        self,
        tenant_id: str,
        ended: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
        cancelled: Message | None = None,
    ) -> None: ...


@dataclass(frozen=True)
class Settled:
    """What one message became. Where the sweep settled it, its status then: sent (the
    carrier took it), delivered, undelivered (the carrier said so already), or failed
    (refused, never taken in 24 hours, cancelled). Else: pending (not settled yet: try again
    later), taken (someone else claimed it), held (quiet hours came back), or other_carrier
    (handed to a carrier this sweeper does not send with: left alone, for that carrier)."""

    tenant: str
    chat_id: int
    message_id: str
    outcome: str
    carrier_id: str | None = None


# A settled message's outcome is its status: one a carrier took it at (Delivered), or one
# it failed at (Failed); the others say why it is not settled.
_TAKEN_AT = (SENT, DELIVERED, UNDELIVERED, FAILED)
_UNSETTLED = {Pending: "pending", Taken: "taken", Foreign: "other_carrier"}

# Every outcome a message can have in a sweep, as its report counts them.
OUTCOMES = (*_TAKEN_AT, *_UNSETTLED.values(), "held")


def _outcome_name(outcome: Outcome) -> str:
    """What became of a message, in the report's words (see Settled)."""
    if isinstance(outcome, Delivered):
        status = outcome.message.status
        return status if status in _TAKEN_AT else SENT
    if isinstance(outcome, Failed):
        return FAILED
    return _UNSETTLED[type(outcome)]


@dataclass(frozen=True)
class Swept:
    """What one sweep did."""

    settled: list[Settled]
    sessions_ended: list[tuple[str, int]]
    events_announced: int


class Sweeper:
    def __init__(
        self,
        store: SweepStore,
        delivery: Delivery,
        clock: Clock,
        outbox: Outbox,
        *,
        grace_seconds: float,
        deadline_seconds: float,
        budget_seconds: float = 50.0,
    ) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._outbox = outbox
        self._grace = dt.timedelta(seconds=grace_seconds)
        self._deadline_seconds = deadline_seconds
        self._budget_seconds = budget_seconds

    def run(self) -> Swept:
        """One sweep (see the module's doc), until its work is done or its time budget is
        spent (the next sweep takes the rest)."""
        ends = time.monotonic() + self._budget_seconds
        # Messages first: one no carrier took for 24 hours fails its session as a refusal
        # does (SPEC 10.3), though the session's idle clock ran out with it.
        settled = self.release_held(ends) + self.sweep(ends)
        ended = self.end_idle_sessions(ends)
        return Swept(settled, ended, self.announce_events())

    def sweep(self, ends: float | None = None) -> list[Settled]:
        """Settle every unsettled message due, each under a deadline of its own."""
        ends = ends if ends is not None else time.monotonic() + self._budget_seconds
        seen: set[tuple[str, MessageRef]] = set()
        settled: list[Settled] = []
        while time.monotonic() < ends:
            due = deadline.current(self._deadline_seconds).retry(
                lambda: self._store.unsettled_messages(self._clock() - self._grace, BATCH)
            )
            fresh = [(tenant, m) for tenant, m in due if (tenant, m.ref) not in seen]
            if not fresh:
                break
            for tenant_id, message in fresh:
                if time.monotonic() >= ends:
                    break
                seen.add((tenant_id, message.ref))
                settled.append(self._settle(tenant_id, message))
        return settled

    def end_idle_sessions(self, ends: float) -> list[tuple[str, int]]:
        """End the sessions idle past their timeout that no request has met; each one's
        (tenant, chat id)."""
        ended: list[tuple[str, int]] = []
        due = deadline.current(self._deadline_seconds).retry(
            lambda: self._store.expired_chats(self._clock(), BATCH)
        )
        for tenant_id, chat in due:
            if time.monotonic() >= ends:
                break
            try:
                with deadline.bounded(self._deadline_seconds):
                    if self._expire(tenant_id, chat):
                        ended.append((tenant_id, chat.id))
            except (errors.BackendUnavailable, errors.LostRace) as exc:
                # Changed meanwhile (a request met it first), or Firestore is out: next sweep.
                logs.event(
                    "WARNING", f"sweeper: chat {chat.id} not ended: {exc!r}", tenant=tenant_id
                )
        return ended

    def _expire(self, tenant_id: str, chat: Chat) -> bool:
        budget = deadline.current(self._deadline_seconds)
        tenant, state = budget.retry(
            lambda: self._store.tenant_and_consumer(tenant_id, chat.end_user.phone_number)
        )
        if tenant is None:
            return False
        mark = state.session if state.session and state.session.chat_id == chat.id else None
        now = self._clock()
        current = as_of(tenant, chat, mark, now)
        if current.active:  # the tenant's timeout grew since: it expires later
            last = mark.last_activity_at if mark else chat.last_activity_at
            if last is not None:
                later = last + dt.timedelta(seconds=tenant.session_timeout_seconds)
                budget.retry(lambda: self._store.postpone_expiry(tenant_id, chat, later))
            return False
        assert current.ends_at is not None
        changes = [events.chat_event(events.CHAT_ENDED, tenant_id, current, now)]
        cancelled = None
        held = self._held_message(tenant_id, chat)
        if held is not None:
            cancelled = held.moved_to(FAILED, now)
            if cancelled is not None:
                changes += events.message_events(tenant_id, held, cancelled, now)
        budget.retry(lambda: self._store.end_chat(tenant_id, current, mark, changes, cancelled))
        self._outbox.committed(changes)
        logs.event(
            "INFO",
            f"sweeper: chat {chat.id} ended, idle since {current.ends_at.isoformat()}",
            tenant=tenant_id,
            chat_id=chat.id,
            outcome="chat_expired",
        )
        return True

    def _held_message(self, tenant_id: str, chat: Chat) -> Message | None:
        """The chat's first message, where it is still held for quiet hours."""
        if chat.held_message_id is None:
            return None
        ref = MessageRef(chat.id, chat.held_message_id)
        held = deadline.current(self._deadline_seconds).retry(
            lambda: self._store.read_message(tenant_id, ref)
        )
        return held if held is not None and held.held else None

    def release_held(self, ends: float) -> list[Settled]:
        """Release the messages held for quiet hours whose time has come."""
        settled: list[Settled] = []
        due = deadline.current(self._deadline_seconds).retry(
            lambda: self._store.due_held(self._clock(), BATCH)
        )
        for tenant_id, message in due:
            if time.monotonic() >= ends:
                break
            settled.append(self._settle(tenant_id, message, held=True))
        return settled

    def _release(self, tenant_id: str, message: Message) -> Outcome | str:
        budget = deadline.current(self._deadline_seconds)
        tenant, state = budget.retry(
            lambda: self._store.tenant_and_consumer(tenant_id, message.to_number)
        )
        chat = state.chat if state.chat is not None and state.chat.id == message.chat_id else None
        if chat is None:
            chat = budget.retry(lambda: self._store.read_chat(tenant_id, message.chat_id))
        mark = state.session if state.session and state.session.chat_id == message.chat_id else None
        now = self._clock()
        if tenant is None or chat is None or not as_of(tenant, chat, mark, now).active:
            return self._delivery.cancel(tenant_id, message)
        if state.opted_out:
            return self._delivery.refuse_opted_out(tenant_id, message)
        if tenant.quiet_hours is not None:
            verdict = quiet_hours.check(
                message.to_number, tenant.quiet_hours, tenant.default_time_zone, now
            )
            if verdict.quiet and verdict.until is None:
                # The tenant's rules changed so that no moment is outside them: the message
                # can never go, and sending it now would send it inside them.
                return self._delivery.cancel(tenant_id, message)
            if verdict.quiet and verdict.until is not None:  # the window came back
                later = dataclasses.replace(message, scheduled_for=verdict.until)
                try:
                    budget.retry(lambda: self._store.save_message(tenant_id, later))
                except errors.LostRace:
                    return "taken"
                return "held"
        return self._delivery.settle(tenant_id, message, sweeping=True)

    def announce_events(self) -> int:
        """Announce again the events no dispatcher has taken (their request's announcement
        failed or is late), up to EVENTS_PER_SWEEP of them; how many. Nothing is announced
        where nothing carries events."""
        if self._outbox.transport.name == "none":
            return 0
        before = self._clock() - ANNOUNCE_AFTER
        due = deadline.current(self._deadline_seconds).retry(
            lambda: self._store.undispatched_events(before, EVENTS_PER_SWEEP)
        )
        refs: dict[str, list[str]] = {}
        for tenant_id, event_id in due:
            refs.setdefault(tenant_id, []).append(event_id)
        if not due or not self._outbox.transport.publish(refs, PUBLISH_SECONDS * 5):
            return 0
        logs.event("INFO", f"sweeper: announced {len(due)} events again", events=len(due))
        return len(due)

    def _settle(self, tenant_id: str, message: Message, held: bool = False) -> Settled:
        try:
            with deadline.bounded(self._deadline_seconds):
                if held:
                    outcome = self._release(tenant_id, message)
                else:
                    outcome = self._delivery.settle(tenant_id, message, sweeping=True)
            if isinstance(outcome, str):
                name, carrier_id = outcome, None
            else:
                name, carrier_id = _outcome_name(outcome), outcome.message.carrier_id
        except errors.BackendUnavailable as exc:
            logs.event("WARNING", f"sweeper: Firestore unavailable: {exc!r}", tenant=tenant_id)
            name, carrier_id = "pending", None
        result = Settled(tenant_id, message.chat_id, message.id, name, carrier_id)
        logs.event(
            "INFO",
            f"sweeper: message {message.id} of chat {message.chat_id} {name}",
            tenant=tenant_id,
            chat_id=message.chat_id,
            message_id=message.id,
            outcome=name,
            carrier_id=carrier_id,
        )
        return result
