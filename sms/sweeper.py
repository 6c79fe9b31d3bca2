"""The sweeper: settles what a crashed or timed-out sender left ``queued`` or ``sending``.

It takes every message of every tenant that has stayed unsettled since it was last claimed
more than SMS_SWEEP_AFTER_SECONDS ago, and settles it as ``Delivery.settle`` does: claimed
first (so that two sweepers, or a sweeper and a retried request, never both send it), the
carrier asked whether it holds it, and only then handed over. It runs as
``python -m sms.admin sweep`` and as the functions-framework target ``sms_sweeper``.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Protocol

from sms import deadline, errors, logs
from sms.clock import Clock
from sms.delivery import Delivered, Delivery, Failed, MessageStore, Pending, Taken
from sms.domain import Message, MessageRef

BATCH = 100  # messages read at once


class SweepStore(MessageStore, Protocol):
    def unsettled_messages(
        self, claimed_before: dt.datetime, batch_size: int
    ) -> list[tuple[str, Message]]: ...


@dataclass(frozen=True)
class Settled:
    """What one message became: delivered, failed, pending (try again later) or taken."""

    tenant: str
    chat_id: int
    message_id: str
    outcome: str
    carrier_id: str | None = None


_OUTCOMES = {Delivered: "delivered", Failed: "failed", Pending: "pending", Taken: "taken"}


class Sweeper:
    def __init__(
        self,
        store: SweepStore,
        delivery: Delivery,
        clock: Clock,
        *,
        grace_seconds: float,
        deadline_seconds: float,
        budget_seconds: float = 50.0,
    ) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._grace = dt.timedelta(seconds=grace_seconds)
        self._deadline_seconds = deadline_seconds
        self._budget_seconds = budget_seconds

    def sweep(self) -> list[Settled]:
        """One round: every message due, each under a deadline of its own, until none is left
        or the round's time budget is spent (the next round takes the rest)."""
        ends = time.monotonic() + self._budget_seconds
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

    def _settle(self, tenant_id: str, message: Message) -> Settled:
        try:
            with deadline.bounded(self._deadline_seconds):
                outcome = self._delivery.settle(tenant_id, message, sweeping=True)
            name, carrier_id = _OUTCOMES[type(outcome)], outcome.message.carrier_id
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
