"""Sending an outbound SMS: the order of the checks, and what a request does to a session.

No HTTP and no Firestore here: the service is handed a store and a clock.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import math
import re
import secrets
from collections.abc import Callable
from typing import Any, Protocol

from sms import deadline, errors, logs, render, schemas
from sms.delivery import Delivered, Delivery, Failed, Outcome, Pending, outcome_of
from sms.domain import (
    QUEUED,
    SENDING,
    ActiveSession,
    Agent,
    Chat,
    Claim,
    ConsumerState,
    EndUser,
    Finish,
    KeyCompletion,
    Lookup,
    Message,
    MessageRef,
    Participant,
    Plan,
    StatusChange,
    Tenant,
)
from sms.errors import BadRequest


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

    def read_message(self, tenant_id: str, ref: MessageRef) -> Message | None: ...

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]: ...

    def commit(self, plan: Plan) -> Any: ...

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]: ...

    def end_chat(self, tenant_id: str, ended: Chat, session: ActiveSession | None) -> None: ...

    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None: ...

    def messages_page(
        self, tenant_id: str, chat_id: int, limit: int, after: tuple[dt.datetime, str] | None
    ) -> list[Message]: ...


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


class _UseCase:
    """A use case is handed its store, its clock, and how long it may wait on the store."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], dt.datetime] = utc_now,
        deadline_seconds: float = 8.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._deadline_seconds = deadline_seconds


class SessionOpener(_UseCase):
    """What opens a session: an outbound request, or a consumer's reply (sms.replies)."""

    def _new_session(
        self,
        tenant: Tenant,
        consumer: str,
        state: ConsumerState,
        now: dt.datetime,
        *,
        outbound_number: str,
        message: Callable[[int], Message],
        agent: Agent | None = None,
        replaces: ActiveSession | None = None,
        finish: Finish | None = None,
        **chat_fields: Any,
    ) -> Plan:
        """A new session for the consumer, its first message, and its mark (replacing
        ``replaces``, finishing ``finish``). ``chat_fields`` set what differs from an
        outbound session's chat."""
        ids = self._store.take_ids
        new_end_user = None
        end_user = state.end_user
        if end_user is None:
            [end_user_id] = ids(tenant.id, "end_users", 1)
            end_user = new_end_user = EndUser(id=end_user_id, phone_number=consumer)
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
            outbound_number=outbound_number,
            participants=tuple(participants),
            agent=agent,
            assigned_at=now if agent else None,
            last_activity_at=now,
        )
        chat = dataclasses.replace(chat, **chat_fields)
        session = ActiveSession(
            chat_id=chat_id,
            outbound_number=outbound_number,
            agent_ids=(agent.id,) if agent else (),
            created_at=now,
            last_activity_at=now,
            written_by=_write_id(),
            chat=chat,
        )
        return Plan(
            tenant_id=tenant.id,
            consumer=consumer,
            message=message(chat_id),
            session=session,
            session_version=replaces.version if replaces else None,
            new_chat=chat,
            new_end_user=new_end_user,
            finish=finish,
            answer=chat,
        )


class OutboundSms(SessionOpener):
    """POST /apps/api/v1/sms as a use case: the checks, the session's commit, then the send."""

    def __init__(
        self,
        store: Store,
        delivery: Delivery,
        clock: Callable[[], dt.datetime] = utc_now,
        deadline_seconds: float = 8.0,
        lease: dt.timedelta = dt.timedelta(seconds=10),
    ) -> None:
        super().__init__(store, clock, deadline_seconds)
        self._delivery = delivery
        self._lease = lease  # how long the request that committed a message may still run

    def send(self, tenant: Tenant, body: Any, claim: Claim | None = None) -> str:
        """Validate, open a session (or send on an agent's behalf), send; the answer's JSON.

        The answer comes once the carrier has answered: the chat document when it took the
        message, SmsNotSent when it refused it, SendPending when that cannot be told in time.
        With ``claim``, the chat document is recorded for its Idempotency-Key in the same
        commit as the session, bound to the message: replays answer what became of it.
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
        limit = deadline.current(self._deadline_seconds)
        lookup = limit.retry(
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
        agent = _named_agent(request, lookup)

        now = self._clock()
        state = lookup.consumer
        while True:
            plan = limit.retry(functools.partial(self._decide, tenant, request, agent, state, now))
            assert plan.answer is not None
            answer = render.to_json(render.chat_document(plan.answer))
            if claim is not None:
                plan.key = KeyCompletion(claim, 200, answer, plan.message.ref)
            try:
                version = self._store.commit(plan)
                break
            except (errors.LostRace, errors.BackendUnavailable):
                # Another request changed this consumer's session first, or the outcome of
                # the commit is unknown. Read what is stored now: if it is this commit's own
                # work, it landed after all; otherwise decide again on what is there.
                limit.pause()
                state = limit.retry(
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
            stored = limit.retry(lambda: self._store.read_message(tenant.id, plan.message.ref))
            message = stored or message
        return self._answer(self._delivery.send_new(tenant.id, message), answer)

    def resume(self, tenant: Tenant, ref: MessageRef, answer: str) -> str:
        """The answer to a retry of a request whose session was committed: what became of its
        message, settling it first where its first request left it unsettled."""
        limit = deadline.current(self._deadline_seconds)
        message = limit.retry(lambda: self._store.read_message(tenant.id, ref))
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
    def _answer(outcome: Outcome, answer: str) -> str:
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
            return self._new_session(
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


def standing(
    tenant: Tenant, state: ConsumerState, now: dt.datetime
) -> tuple[tuple[ActiveSession, Chat] | None, ActiveSession | None, Finish | None]:
    """The consumer's active session and its chat; or, where there is none, the mark a new
    session replaces and the session idle past its timeout that it finishes (rule 6.4)."""
    session, chat = state.session, state.chat
    if session is None:
        return None, None, None
    if chat is None or not chat.active:
        # The mark outlived its session (ended elsewhere, or removed): replace it.
        return None, session, None
    expires_at = session.expires_at(tenant.session_timeout_seconds)
    if now >= expires_at:
        ended = chat.ended(expires_at)
        return None, session, Finish(chat.id, ends_at=expires_at, chat_duration=ended.chat_duration)
    return (session, chat), None, None


def joined(
    tenant_id: str,
    consumer: str,
    active: tuple[ActiveSession, Chat],
    message: Message,
    now: dt.datetime,
) -> Plan:
    """A message joins the consumer's active session, which counts as activity."""
    session, chat = active
    chat = dataclasses.replace(chat, last_activity_at=now, version=None)
    return Plan(
        tenant_id=tenant_id,
        consumer=consumer,
        message=message,
        session=dataclasses.replace(
            session, last_activity_at=now, written_by=_write_id(), chat=chat, version=None
        ),
        session_version=session.version,
        answer=chat,
    )


def _note_sent(plan: Plan) -> None:
    outcome = "session_opened" if plan.new_chat is not None else "sent_on_behalf"
    logs.note(outcome=outcome, chat_id=plan.message.chat_id)


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


def _write_id() -> str:
    """A token naming one commit, so that a retry can recognise its own write."""
    return secrets.token_hex(8)


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


class ChatSessions(_UseCase):
    """GET and PATCH /apps/api/v1/chats/{id}: a session as it stands, and ending it."""

    def get(self, tenant: Tenant, chat_id: int) -> str:
        """The chat document as it stands now."""
        limit = deadline.current(self._deadline_seconds)
        chat = limit.retry(lambda: self._store.read_chat(tenant.id, chat_id))
        session = None
        if chat is not None and chat.active and chat.last_activity_at is None:
            # A chat stored before it kept its idle clock: its consumer's mark has it.
            chat, session = limit.retry(lambda: self._store.chat_and_session(tenant.id, chat_id))
        if chat is None:
            raise errors.NotFound()
        logs.note(outcome="chat_read", chat_id=chat.id)
        return render.to_json(render.chat_document(_as_of(tenant, chat, session, self._clock())))

    def end(self, tenant: Tenant, chat_id: int, body: Any) -> str:
        """Finish an active session and free its consumer; the ended chat's document."""
        limit = deadline.current(self._deadline_seconds)
        tried: set[dt.datetime] = set()  # ends of commits whose outcome is unknown
        while True:
            chat, session = limit.retry(lambda: self._store.chat_and_session(tenant.id, chat_id))
            if chat is None:
                raise errors.NotFound()
            if not isinstance(body, dict) or body.get("status") != "finished":
                raise BadRequest(errors.STATUS_MUST_BE_FINISHED)
            # The time of this attempt, and never before the chat's last message: a message
            # that joined while this request was retrying is part of the session it ends.
            now = max(self._clock(), chat.last_activity_at or chat.created_at)
            current = _as_of(tenant, chat, session, now)
            if not current.active:
                if current.ends_at in tried:
                    return render.to_json(render.chat_document(current))  # it had landed
                raise BadRequest(errors.CHAT_ALREADY_ENDED)
            ended = chat.ended(now)
            mark = session if session is not None and session.chat_id == chat.id else None
            try:
                self._store.end_chat(tenant.id, ended, mark)
                logs.note(outcome="chat_ended", chat_id=chat.id)
                return render.to_json(render.chat_document(ended))
            except errors.LostRace:
                pass  # changed meanwhile (ended by another request?): read it again
            except errors.BackendUnavailable:
                tried.add(now)
            limit.pause()

    def messages(
        self, tenant: Tenant, chat_id: int, limit: str | None, page_token: str | None
    ) -> str:
        """A page of a chat's transcript, oldest first, and the token of the next page."""
        size = _page_size(limit)
        after = _cursor(page_token) if page_token is not None else None
        retry = deadline.current(self._deadline_seconds).retry
        if retry(lambda: self._store.read_chat(tenant.id, chat_id)) is None:
            raise errors.NotFound()
        page = retry(lambda: self._store.messages_page(tenant.id, chat_id, size + 1, after))
        following = page_token_of(page[size - 1]) if len(page) > size else None
        logs.note(outcome="transcript_read", chat_id=chat_id)
        return render.to_json(
            {
                "messages": [render.message_document(m) for m in page[:size]],
                "next_page_token": following,
            }
        )


_LIMIT = re.compile(r"[0-9]{1,3}")
MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE = 200, 100
_TOKEN = re.compile(r"([0-9]{1,15})\.([A-Za-z0-9_-]{1,64})")


def _page_size(limit: str | None) -> int:
    if limit is None:
        return DEFAULT_PAGE_SIZE
    if not _LIMIT.fullmatch(limit) or not 1 <= int(limit) <= MAX_PAGE_SIZE:
        raise BadRequest(errors.LIMIT_INVALID)
    return int(limit)


def page_token_of(message: Message) -> str:
    """The opaque token of the page after ``message``: its time and id."""
    millis = round(message.created_at.timestamp() * 1000)
    raw = f"{millis}.{message.id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _cursor(token: str) -> tuple[dt.datetime, str]:
    """Where a page token says the page starts; 400 for anything this service did not issue."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        match = _TOKEN.fullmatch(raw)
        if match is None or base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=") != token:
            raise ValueError(token)
        at = dt.datetime.fromtimestamp(int(match[1]) / 1000, dt.timezone.utc)
    except (ValueError, OverflowError, OSError) as exc:  # binascii.Error is a ValueError
        raise BadRequest(errors.PAGE_TOKEN_INVALID) from exc
    return at, match[2]


def _as_of(tenant: Tenant, chat: Chat, session: ActiveSession | None, now: dt.datetime) -> Chat:
    """The chat as it stands at ``now``: a session idle past the tenant's timeout has ended."""
    if not chat.active:
        return chat
    last_activity = chat.last_activity_at
    if session is not None and session.chat_id == chat.id:
        last_activity = session.last_activity_at
    if last_activity is None:
        return chat
    expires_at = last_activity + dt.timedelta(seconds=tenant.session_timeout_seconds)
    return chat.ended(expires_at) if now >= expires_at else chat
