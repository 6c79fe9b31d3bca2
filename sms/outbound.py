"""POST /apps/api/v1/sms as a use case: the order of the checks, the session's commit, the send.

No HTTP and no Firestore here: the use case is handed a store, a delivery and a clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from typing import Any, Protocol

from sms import deadline, errors, logs, schemas
from sms.clock import Clock
from sms.delivery import Delivered, Delivery, Failed, Outcome, Pending, outcome_of
from sms.domain import (
    QUEUED,
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
from sms.sessions import joined, open_session, standing


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
        deadline_seconds: float,
        lease: dt.timedelta,
    ) -> None:
        self._store = store
        self._delivery = delivery
        self._clock = clock
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
        failures.raise_before(errors.AGENT_NOT_FOUND)
        request = loaded.request()
        logs.note(
            end_user_number=logs.mask(request.end_user_number),
            outbound_number=logs.mask(request.outbound_number),
        )
        agent = named_agent(request.agent_id, request.agent_email, lookup.agent_by_id,
                            lookup.agent_by_email)  # fmt: skip

        now = self._clock()
        state = lookup.consumer
        while True:
            plan = budget.retry(functools.partial(self._decide, tenant, request, agent, state, now))
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
        now: dt.datetime,
    ) -> Plan:
        active, replaces, finish = standing(tenant, state, now)

        def message(chat_id: int) -> Message:
            return _message(chat_id, request, agent, now)

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
            )
        session, chat = active
        if (
            agent is not None
            and agent.id in session.agent_ids
            and request.outbound_number == session.outbound_number
        ):
            return joined(tenant.id, request.end_user_number, active, message(chat.id), now)
        raise BadRequest(errors.ACTIVE_SESSION)


def _note_sent(plan: Plan) -> None:
    outcome = "session_opened" if plan.new_chat is not None else "sent_on_behalf"
    logs.note(outcome=outcome, chat_id=plan.message.chat_id)


def named_agent(
    agent_id: int | None,
    agent_email: str | None,
    by_id: Agent | None,
    by_email: Agent | None,
) -> Agent | None:
    """The agent a request names by id and/or email (rules 15 and 16), given what the store
    found for each name.

    Named both ways, both must name the same existing agent: where either names an agent the
    other does not, the names disagree (rule 15); where neither names one, it is not found.
    """
    if agent_id is not None and agent_email is not None:
        if by_id is None and by_email is None:
            raise BadRequest(errors.AGENT_NOT_FOUND)
        if by_id is None or by_email is None or by_id.id != by_email.id:
            raise BadRequest(errors.AGENT_INVALID)
        return by_id
    named = by_id or by_email
    if named is None and (agent_id is not None or agent_email is not None):
        raise BadRequest(errors.AGENT_NOT_FOUND)
    return named


def _message(
    chat_id: int, request: schemas.OutboundSmsRequest, agent: Agent | None, now: dt.datetime
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
    )
