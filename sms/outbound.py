"""POST /apps/api/v1/sms as a use case: the order of the checks, the session's commit, the send.

No HTTP and no Firestore here: the use case is handed a store, a delivery and a clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from typing import Any, Protocol

from sms import deadline, errors, logs, quiet_hours, render, schemas
from sms.clock import Clock
from sms.delivery import Delivered, Delivery, Failed, Outcome, Pending, outcome_of
from sms.domain import (
    QUEUED,
    SCHEDULED,
    SENDING,
    Agent,
    Chat,
    Claim,
    ConsumerState,
    KeyCompletion,
    Lookup,
    Message,
    MessageRef,
    Plan,
    StatusChange,
    Tenant,
)
from sms.errors import BadRequest
from sms.events.outbox import Outbox
from sms.sessions import joined, named_agent, open_session, standing


class OutboundStore(Protocol):
    def look_up(
        self,
        tenant_id: str,
        outbound_number: str,
        consumer: str,
        agent_id: int | None,
        agent_email: str | None,
    ) -> Lookup: ...

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState: ...

    def read_message(self, tenant_id: str, ref: MessageRef) -> Message | None: ...

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]: ...

    def commit(self, plan: Plan) -> Any: ...


class _Failures:
    """The rules a request broke, answered in the order of errors.PRECEDENCE."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        self._texts = sorted(texts, key=errors.rank)

    def raise_before(self, text: str) -> None:
        """Answer with the first failure that comes before ``text`` in precedence, if any."""
        if self._texts and errors.rank(self._texts[0]) < errors.rank(text):
            raise BadRequest(self._texts[0])


class OutboundSms:
    """Open a session (or send on an agent's behalf), then hand its message to the carrier."""

    def __init__(
        self,
        store: OutboundStore,
        delivery: Delivery,
        clock: Clock,
        *,
        outbox: Outbox,
        deadline_seconds: float,
        lease: dt.timedelta,
    ) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
        self._outbox = outbox
        self._deadline_seconds = deadline_seconds
        self._lease = lease  # how long the request that committed a message may still run

    def send(self, tenant: Tenant, body: Any, claim: Claim | None = None) -> Chat:
        """Validate, open a session (or send on an agent's behalf), send; the chat.

        The answer comes once the carrier has answered: the chat when it took the message,
        SmsNotSent when it refused it, SendPending when that cannot be told in time. With
        ``claim``, the chat is recorded for its Idempotency-Key in the same commit as the
        session, bound to the message: replays answer what became of it.
        """
        if not isinstance(body, dict):
            raise BadRequest(errors.BODY_NOT_OBJECT)
        loaded = schemas.load(body, tenant.allowed_regions)
        failures = _Failures(loaded.failures)
        failures.raise_before(errors.SMS_DISABLED)
        if not tenant.sms_enabled:
            raise BadRequest(errors.SMS_DISABLED)
        if not tenant.outbound_sms_enabled:
            raise BadRequest(errors.OUTBOUND_SMS_DISABLED)
        failures.raise_before(errors.OUTBOUND_NUMBER_NOT_FOUND)

        values = loaded.values
        budget = deadline.current(self._deadline_seconds)
        lookup = budget.retry(
            lambda: self._store.look_up(
                tenant.id,
                values["outbound_number"],
                values["end_user_number"],
                values.get("agent_id"),
                values.get("agent_email"),
            )
        )
        if not lookup.outbound_number_enabled:
            raise BadRequest(errors.OUTBOUND_NUMBER_NOT_FOUND)
        failures.raise_before(errors.OPTED_OUT)
        if lookup.opted_out:
            raise BadRequest(errors.OPTED_OUT)
        now = self._clock()
        failures.raise_before(errors.QUIET_HOURS)
        hold_until = _quiet_until(tenant, values, lookup, now)
        failures.raise_before(errors.AGENT_NOT_FOUND)
        request = loaded.request()
        logs.note(
            end_user_number=logs.mask(request.end_user_number),
            outbound_number=logs.mask(request.outbound_number),
        )
        agent = named_agent(request.agent_id, request.agent_email, lookup.agent_by_id,
                            lookup.agent_by_email)  # fmt: skip

        state = lookup.consumer
        decide = functools.partial(self._decide, tenant, request, agent, now=now, hold=hold_until)
        while True:
            plan = budget.retry(lambda: decide(state))  # noqa: B023
            assert plan.answer is not None
            if claim is not None:
                plan.key = KeyCompletion(claim, 200, chat=plan.answer, message=plan.message.ref)
            try:
                version = self._store.commit(plan)
                break
            except (errors.LostRace, errors.BackendUnavailable):
                # Another request changed this consumer's session first, or the outcome of
                # the commit is unknown. Read what is stored now: if it is this commit's own
                # work, it landed after all; otherwise decide again on what is there.
                budget.pause()
                state = budget.retry(
                    lambda: self._store.consumer_state(tenant.id, request.end_user_number)
                )
                if (
                    state.session is not None
                    and state.session.written_by == plan.session.written_by
                ):
                    version = None
                    break
        _note_sent(plan)
        self._outbox.committed(plan.events)
        if plan.message.held:  # it goes when quiet hours are over (the sweeper sends it)
            logs.note(held_until=render.timestamp(plan.message.scheduled_for))
            return plan.answer
        message = dataclasses.replace(plan.message, version=version)
        if version is None:  # it landed unseen: its version is what is stored
            stored = budget.retry(lambda: self._store.read_message(tenant.id, plan.message.ref))
            message = stored or message
        return self._answer(self._delivery.send_new(tenant.id, message), plan.answer)

    def resume(self, tenant: Tenant, ref: MessageRef, answer: Chat) -> Chat:
        """The answer to a retry of a request whose session was committed: what became of its
        message, settling it first where its first request left it unsettled."""
        budget = deadline.current(self._deadline_seconds)
        message = budget.retry(lambda: self._store.read_message(tenant.id, ref))
        if message is None:
            return answer
        logs.note(chat_id=message.chat_id)
        if message.scheduled_for is not None:
            # Held for quiet hours (SPEC 10.8): its first answer was a 200, and a retry replays
            # it whatever became of the message since (sent, cancelled, failed for an opt-out).
            return answer
        if message.settled:
            return self._answer(outcome_of(message), answer)
        claimed_at = message.claimed_at or message.created_at
        running = claimed_at + self._lease - self._clock()
        if running > dt.timedelta(0):  # the request that committed it may be sending it now
            wait = math.ceil(running.total_seconds())
            raise errors.Conflict(errors.IDEMPOTENCY_KEY_IN_PROGRESS, retry_after=wait)
        return self._answer(self._delivery.settle(tenant.id, message), answer)

    @staticmethod
    def _answer(outcome: Outcome, answer: Chat) -> Chat:
        if isinstance(outcome, Delivered):
            return answer
        if isinstance(outcome, Failed):
            raise errors.SmsNotSent()
        if isinstance(outcome, Pending):
            raise errors.SendPending(outcome.retry_after)
        raise errors.Conflict(errors.IDEMPOTENCY_KEY_IN_PROGRESS, retry_after=1)

    def _decide(
        self,
        tenant: Tenant,
        request: schemas.OutboundSmsRequest,
        agent: Agent | None,
        state: ConsumerState,
        *,
        now: dt.datetime,
        hold: dt.datetime | None,
    ) -> Plan:
        active, replaces, finish = standing(tenant, state, now)

        def message(chat_id: int) -> Message:
            if hold is not None:  # quiet hours: stored scheduled, sent when they are over
                return _held(chat_id, request, agent, now, hold)
            return _message(chat_id, request, agent, now, self._delivery.carrier_name)

        if active is None:
            return open_session(
                self._store,
                tenant,
                request.end_user_number,
                state,
                now,
                outbound_number=request.outbound_number,
                message=message,
                agent=agent,
                replaces=replaces,
                finish=finish,
                out_ticket_id=request.ticket_id,
                out_ticket_url=tenant.ticket_url(request.ticket_id),
                chat_subtype=request.chat_subtype,
                holding=hold is not None,
            )
        session, chat = active
        if (
            agent is not None
            and agent.id in session.agent_ids
            and request.outbound_number == session.outbound_number
        ):
            # On an agent's behalf (6.3): never held (SPEC 10.8), even where quiet hours held
            # the session this request meant to open and another request opened it meanwhile.
            sent = _message(chat.id, request, agent, now, self._delivery.carrier_name)
            return joined(tenant, request.end_user_number, active, sent, now)
        raise BadRequest(errors.ACTIVE_SESSION)


def _quiet_until(
    tenant: Tenant, values: dict[str, Any], lookup: Lookup, now: dt.datetime
) -> dt.datetime | None:
    """Until when a message that opens a session is held for the tenant's quiet hours (SPEC
    10.8); None when it goes now. Policy refuse (or a hold that would never end) is the 400.
    A message an agent sends into the consumer's active session is never held nor refused."""
    rules = tenant.quiet_hours
    if rules is None:
        return None
    verdict = quiet_hours.check(values["end_user_number"], rules, tenant.default_time_zone, now)
    if not verdict.quiet:
        return None
    active, _, _ = standing(tenant, lookup.consumer, now)
    agent = lookup.agent_by_id or lookup.agent_by_email
    if (
        active is not None
        and agent is not None
        and agent.id in active[0].agent_ids
        and values.get("outbound_number") == active[0].outbound_number
    ):
        return None  # on an agent's behalf (6.3): the consumer is in a conversation
    if rules.policy == "refuse" or verdict.until is None:
        logs.note(quiet_hours=verdict.zones)
        raise BadRequest(errors.QUIET_HOURS)
    return verdict.until


def _note_sent(plan: Plan) -> None:
    outcome = "session_opened" if plan.new_chat is not None else "sent_on_behalf"
    logs.note(outcome=outcome, chat_id=plan.message.chat_id)


def _held(
    chat_id: int,
    request: schemas.OutboundSmsRequest,
    agent: Agent | None,
    now: dt.datetime,
    until: dt.datetime,
) -> Message:
    """The outbound message held for quiet hours: scheduled, for the sweeper to send."""
    return Message.new(
        chat_id,
        request.message,
        (request.outbound_number, request.end_user_number),
        now,
        agent_id=agent.id if agent else None,
        status=SCHEDULED,
        history=(StatusChange(SCHEDULED, now),),
        scheduled_for=until,
    )


def _message(
    chat_id: int,
    request: schemas.OutboundSmsRequest,
    agent: Agent | None,
    now: dt.datetime,
    carrier: str,
) -> Message:
    """The outbound message, as its commit stores it: queued, and at once claimed by this
    request to send (``sending``), so that no one else sends it while it does."""
    return Message.new(
        chat_id,
        request.message,
        (request.outbound_number, request.end_user_number),
        now,
        agent_id=agent.id if agent else None,
        status=SENDING,
        history=(StatusChange(QUEUED, now), StatusChange(SENDING, now)),
        claimed_at=now,
        carrier=carrier,
    )
