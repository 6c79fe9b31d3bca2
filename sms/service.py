"""Sending an outbound SMS: the order of the checks, and what a request does to a session.

No HTTP and no Firestore here: the service is handed a store and a clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sms import errors, render, schemas
from sms.domain import (
    ActiveSession,
    Agent,
    Chat,
    ConsumerState,
    EndUser,
    Finish,
    Lookup,
    Message,
    Participant,
    Plan,
    Tenant,
)
from sms.errors import BadRequest

ACTIVE_STATUSES = frozenset({"selecting", "assigned"})
_T = TypeVar("_T")


class Store(Protocol):
    def look_up(
        self,
        tenant_id: str,
        outbound_number: str,
        consumer: str,
        agent_id: int | None,
        agent_email: str | None,
    ) -> Lookup: ...

    def consumer_state(self, tenant_id: str, consumer: str) -> ConsumerState: ...

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]: ...

    def commit(self, plan: Plan) -> None: ...


def utc_now() -> dt.datetime:
    """Now, in UTC, at the millisecond precision the API shows."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class _Failures:
    """The rules a request broke, answered in the order of errors.PRECEDENCE."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        self._texts = sorted(texts, key=errors.rank)

    def raise_before(self, text: str) -> None:
        """Answer with the first failure that comes before ``text`` in precedence, if any."""
        if self._texts and errors.rank(self._texts[0]) < errors.rank(text):
            raise BadRequest(self._texts[0])


class OutboundSms:
    """POST /apps/api/v1/sms as a use case."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], dt.datetime] = utc_now,
        deadline_seconds: float = 8.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._deadline_seconds = deadline_seconds

    def send(self, tenant: Tenant, body: Any) -> dict[str, Any]:
        """Validate, then open a session (or send on an agent's behalf); the chat document."""
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
        deadline = _Deadline(self._deadline_seconds)
        lookup = deadline.retry(
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
        failures.raise_before(errors.AGENT_NOT_FOUND)
        request = loaded.request()
        agent = _named_agent(request, lookup)

        now = self._clock()
        state = lookup.consumer
        while True:
            plan = self._decide(tenant, request, agent, state, now)
            try:
                deadline.retry(functools.partial(self._store.commit, plan))
            except errors.Conflict:
                # Another request changed this consumer's session first: decide again on
                # what it wrote (usually: the consumer is now in an active session).
                deadline.pause_after_conflict()
                state = deadline.retry(
                    lambda: self._store.consumer_state(tenant.id, request.end_user_number)
                )
                continue
            assert plan.answer is not None
            return render.chat_document(plan.answer)

    def _decide(
        self,
        tenant: Tenant,
        request: schemas.OutboundSmsRequest,
        agent: Agent | None,
        state: ConsumerState,
        now: dt.datetime,
    ) -> Plan:
        session, chat = state.session, state.chat
        if session is None:
            return self._open(tenant, request, agent, state, now)
        if chat is None or chat.status not in ACTIVE_STATUSES:
            # The mark outlived its session (ended elsewhere, or removed): replace it.
            return self._open(tenant, request, agent, state, now, replaces=session)
        expires_at = session.expires_at(tenant.session_timeout_seconds)
        if now >= expires_at:
            duration = int((expires_at - chat.created_at).total_seconds())
            finish = Finish(chat.id, ends_at=expires_at, chat_duration=max(duration, 0))
            return self._open(tenant, request, agent, state, now, replaces=session, finish=finish)
        if (
            agent is not None
            and agent.id in session.agent_ids
            and request.outbound_number == session.outbound_number
        ):
            return Plan(
                tenant_id=tenant.id,
                consumer=request.end_user_number,
                message=_message(chat.id, request, agent, now),
                session=_replace_activity(session, now),
                session_version=session.version,
                answer=chat,
            )
        raise BadRequest(errors.ACTIVE_SESSION)

    def _open(
        self,
        tenant: Tenant,
        request: schemas.OutboundSmsRequest,
        agent: Agent | None,
        state: ConsumerState,
        now: dt.datetime,
        *,
        replaces: ActiveSession | None = None,
        finish: Finish | None = None,
    ) -> Plan:
        ids = self._store.take_ids
        new_end_user = None
        end_user = state.end_user
        if end_user is None:
            [end_user_id] = ids(tenant.id, "end_users", 1)
            end_user = new_end_user = EndUser(id=end_user_id, phone_number=request.end_user_number)
        [chat_id] = ids(tenant.id, "chats", 1)
        participant_ids = ids(tenant.id, "participants", 2 if agent else 1)
        participants = [
            Participant(participant_ids[0], "end_user", connected_at=now, end_user_id=end_user.id)
        ]
        if agent is not None:
            participants.append(
                Participant(participant_ids[1], "agent", connected_at=now, user_id=agent.id)
            )
        chat = Chat(
            id=chat_id,
            lang=tenant.lang,
            status="assigned" if agent else "selecting",
            created_at=now,
            end_user=end_user,
            outbound_number=request.outbound_number,
            participants=tuple(participants),
            agent=agent,
            assigned_at=now if agent else None,
            out_ticket_id=request.ticket_id,
            out_ticket_url=tenant.ticket_url(request.ticket_id),
            chat_subtype=request.chat_subtype,
        )
        session = ActiveSession(
            chat_id=chat_id,
            outbound_number=request.outbound_number,
            agent_ids=(agent.id,) if agent else (),
            created_at=now,
            last_activity_at=now,
        )
        return Plan(
            tenant_id=tenant.id,
            consumer=request.end_user_number,
            message=_message(chat_id, request, agent, now),
            session=session,
            session_version=replaces.version if replaces else None,
            new_chat=chat,
            new_end_user=new_end_user,
            finish=finish,
            answer=chat,
        )


def _named_agent(request: schemas.OutboundSmsRequest, lookup: Lookup) -> Agent | None:
    """The agent the request names by id and/or email (rules 15 and 16).

    Named both ways, both must name the same existing agent: where either names an agent the
    other does not, the names disagree (rule 15); where neither names one, it is not found.
    """
    by_id, by_email = lookup.agent_by_id, lookup.agent_by_email
    if request.agent_id is not None and request.agent_email is not None:
        if by_id is None and by_email is None:
            raise BadRequest(errors.AGENT_NOT_FOUND)
        if by_id is None or by_email is None or by_id.id != by_email.id:
            raise BadRequest(errors.AGENT_INVALID)
        return by_id
    named = by_id or by_email
    if named is None and (request.agent_id is not None or request.agent_email is not None):
        raise BadRequest(errors.AGENT_NOT_FOUND)
    return named


def _message(
    chat_id: int, request: schemas.OutboundSmsRequest, agent: Agent | None, now: dt.datetime
) -> Message:
    return Message(
        chat_id=chat_id,
        text=request.message,
        from_number=request.outbound_number,
        to_number=request.end_user_number,
        created_at=now,
        agent_id=agent.id if agent else None,
    )


def _replace_activity(session: ActiveSession, now: dt.datetime) -> ActiveSession:
    return ActiveSession(
        chat_id=session.chat_id,
        outbound_number=session.outbound_number,
        agent_ids=session.agent_ids,
        created_at=session.created_at,
        last_activity_at=now,
    )


class _Deadline:
    """The time one request may spend on the store before it answers 503."""

    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds
        self._delay = 0.05

    def _sleep(self) -> None:
        remaining = self._ends - time.monotonic()
        if remaining <= 0:
            raise errors.ServiceUnavailable(retry_after_seconds=1)
        time.sleep(min(remaining, random.uniform(0, self._delay)))  # noqa: S311 jitter, not secrets
        self._delay = min(self._delay * 2, 1.0)

    def retry(self, call: Callable[[], _T]) -> _T:
        """Run ``call``, retrying with jittered backoff while the store is unavailable."""
        while True:
            try:
                return call()
            except errors.BackendUnavailable:
                self._sleep()

    def pause_after_conflict(self) -> None:
        self._sleep()
