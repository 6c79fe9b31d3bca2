"""A consumer's reply (SPEC 10.5): it joins their active session, or opens a queued one.

The tenant is the one that owns the number the reply came to (numbers/{E.164}). The reply is
stored through the same commit as an outbound request, with the same preconditions on the
consumer's mark, so a reply racing an outbound request, or a session being ended, leaves
one active session or none, never two, and is never lost. It is stored once per carrier id:
the commit creates carrier_ids/{MessageSid}, which must not exist. STOP and the other
opt-out keywords record the consumer as opted out in that same commit; START lifts it.

No HTTP and no Firestore here: the use case is handed a store and a clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

import phonenumbers

from sms import deadline, errors, logs, phone, tenants
from sms.clock import Clock
from sms.domain import (
    INBOUND,
    RECEIVED,
    SUBDOMAIN,
    ConsumerState,
    Event,
    Message,
    OptOut,
    Plan,
    StatusChange,
    Tenant,
)
from sms.events import model as events
from sms.events.outbox import Outbox
from sms.sessions import joined, open_session, standing

OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})


class ReplyStore(Protocol):
    def reply_route(self, number: str, carrier_id: str) -> tuple[str | None, bool]: ...

    def tenant_and_consumer(
        self, tenant_id: str, consumer: str
    ) -> tuple[Tenant | None, ConsumerState]: ...

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState: ...

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]: ...

    def commit(self, plan: Plan) -> Any: ...


@dataclass(frozen=True)
class Reply:
    """An incoming SMS, as the carrier delivered it."""

    carrier_id: str
    from_number: str  # the consumer (E.164 once judged)
    to_number: str  # the tenant's number (E.164 once judged)
    text: str

    @property
    def keyword(self) -> str | None:
        """The reply as a keyword: trimmed and upper-cased, in ASCII only, as Twilio matches
        them (a long s or an st ligature is no S, though Python would upper-case it so)."""
        text = self.text.strip()
        return text.upper() if text.isascii() else None

    def judged(self) -> Reply:
        """This reply with its numbers in E.164: 404 for a To no tenant can own (it is not a
        phone number), 400 for a From that is not one."""
        to_number = phone.judge(self.to_number, phonenumbers.SUPPORTED_REGIONS).e164
        if to_number is None:
            raise errors.NotFound()
        from_number = phone.judge(self.from_number, phonenumbers.SUPPORTED_REGIONS).e164
        if from_number is None:
            raise errors.BadRequest(errors.FROM_INVALID)
        return Reply(self.carrier_id, from_number, to_number, self.text)


class Replies:
    """Consumers' replies, stored in their sessions (or opening one)."""

    def __init__(
        self, store: ReplyStore, clock: Clock, outbox: Outbox, deadline_seconds: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._outbox = outbox
        self._deadline_seconds = deadline_seconds

    def receive(self, incoming: Reply) -> str:
        """Store a reply; what it did: joined, opened, or duplicate (stored already)."""
        reply = incoming.judged()
        logs.note(
            end_user_number=logs.mask(reply.from_number),
            outbound_number=logs.mask(reply.to_number),
        )
        budget = deadline.current(self._deadline_seconds)
        tenant_id, seen = budget.retry(
            lambda: self._store.reply_route(reply.to_number, reply.carrier_id)
        )
        if tenant_id is None:
            raise errors.NotFound()
        if not SUBDOMAIN.fullmatch(tenant_id):  # numbers/{E.164} written by hand, wrongly
            logs.event(
                "ERROR",
                f"numbers/{logs.mask(reply.to_number)}: tenant {tenant_id[:64]!r} is no tenant id",
            )
            raise errors.NotFound()
        logs.note(tenant=tenant_id, carrier_id=reply.carrier_id)
        if seen:
            return "duplicate"
        tenant, state = budget.retry(
            lambda: self._store.tenant_and_consumer(tenant_id, reply.from_number)
        )
        if tenant is None:  # the number's index names a tenant that is gone
            raise errors.NotFound()
        tenants.report_problems(tenant)
        now = self._clock()
        while True:
            plan = budget.retry(lambda: self._decide(tenant, reply, state, now))  # noqa: B023
            try:
                self._store.commit(plan)
                return self._committed(plan)
            except (errors.LostRace, errors.BackendUnavailable):
                # The consumer's session changed first, the same reply was stored by a
                # concurrent delivery, or this commit's outcome is unknown: look again.
                budget.pause()
                _, seen = budget.retry(
                    lambda: self._store.reply_route(reply.to_number, reply.carrier_id)
                )
                state = budget.retry(
                    lambda: self._store.consumer_state(tenant.id, reply.from_number)
                )
                if seen:
                    mine = state.session is not None and (
                        state.session.written_by == plan.session.written_by
                    )
                    return self._committed(plan) if mine else "duplicate"

    def _committed(self, plan: Plan) -> str:
        """What a reply's commit did (opened or joined), its events announced."""
        self._outbox.committed(plan.events)
        if plan.opt_out is not None:
            logs.note(opt_out="keyword")
        elif plan.opt_in:
            logs.note(opt_in="keyword")
        logs.note(chat_id=plan.message.chat_id)
        return "opened" if plan.new_chat is not None else "joined"

    def _decide(self, tenant: Tenant, reply: Reply, state: ConsumerState, now: dt.datetime) -> Plan:
        active, replaces, finish = standing(tenant, state, now)

        def message(chat_id: int) -> Message:
            return _inbound(chat_id, reply, now)

        if active is None:
            plan = open_session(
                self._store,
                tenant,
                reply.from_number,
                state,
                now,
                outbound_number=reply.to_number,
                message=message,
                replaces=replaces,
                finish=finish,
                status="queued",
                queued_at=now,
            )
        else:
            plan = joined(tenant, reply.from_number, active, message(active[1].id), now)
        plan.index_carrier_id = True
        plan.events.append(events.received_event(tenant.id, plan.message))
        consumer = reply.from_number
        if reply.keyword in OPT_OUT_KEYWORDS:
            plan.opt_out = OptOut(consumer, now, "reply")
            if not state.opted_out:
                plan.events.append(_consumer_event(events.OPTED_OUT, tenant, consumer, now))
        elif reply.keyword in OPT_IN_KEYWORDS:
            plan.opt_in = True
            if state.opted_out:
                plan.events.append(_consumer_event(events.OPTED_IN, tenant, consumer, now))
        return plan


def _consumer_event(kind: str, tenant: Tenant, consumer: str, now: dt.datetime) -> Event:
    return events.consumer_event(kind, tenant.id, consumer, "keyword", now)


def _inbound(chat_id: int, reply: Reply, now: dt.datetime) -> Message:
    return Message.new(
        chat_id,
        reply.text,
        (reply.from_number, reply.to_number),
        now,
        direction=INBOUND,
        status=RECEIVED,
        carrier_id=reply.carrier_id,
        history=(StatusChange(RECEIVED, now),),
    )
