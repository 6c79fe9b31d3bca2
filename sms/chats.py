"""A session as it stands, ending it, and its transcript (SPEC 10.2 and 10.5).

No HTTP and no Firestore here: the use case is handed a store and a clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from typing import Protocol

from sms import deadline, errors, logs, paging, schemas
from sms.clock import Clock
from sms.domain import (
    FAILED,
    ActiveSession,
    Agent,
    Chat,
    Event,
    Message,
    MessageRef,
    Tenant,
)
from sms.errors import BadRequest
from sms.events import model as events
from sms.events.outbox import Outbox
from sms.paging import Page
from sms.schemas import AGENT_FIELDS
from sms.sessions import as_of, named_agent

DEFAULT_TRANSCRIPT_PAGE = 100
MESSAGE_ID = re.compile(r"[0-9a-f]{20}")  # as Message.new makes them


class ChatStore(Protocol):
    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None: ...

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]: ...

    def end_chat(
        self,
        tenant_id: str,
        ended: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
        cancelled: Message | None = None,
    ) -> None: ...

    def read_message(self, tenant_id: str, ref: MessageRef) -> Message | None: ...

    def agents(
        self, tenant_id: str, agent_id: int | None, agent_email: str | None
    ) -> tuple[Agent | None, Agent | None]: ...

    def take_ids(self, tenant_id: str, kind: str, count: int) -> list[int]: ...

    def assign_chat(
        self,
        tenant_id: str,
        assigned: Chat,
        session: ActiveSession | None,
        events: Sequence[Event] = (),
    ) -> None: ...

    def messages_page(
        self,
        tenant_id: str,
        chat_id: int,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[Message]: ...


class ChatSessions:
    """GET and PATCH /apps/api/v1/chats/{id}, and its messages."""

    def __init__(
        self, store: ChatStore, clock: Clock, outbox: Outbox, deadline_seconds: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._outbox = outbox
        self._deadline_seconds = deadline_seconds

    def get(self, tenant: Tenant, chat_id: int) -> Chat:
        """The chat as it stands now."""
        budget = deadline.current(self._deadline_seconds)
        chat = budget.retry(lambda: self._store.read_chat(tenant.id, chat_id))
        session = None
        if chat is not None and chat.active and chat.last_activity_at is None:
            # A chat stored before it kept its idle clock: its consumer's mark has it.
            chat, session = budget.retry(lambda: self._store.chat_and_session(tenant.id, chat_id))
        if chat is None:
            raise errors.NotFound()
        logs.note(outcome="chat_read", chat_id=chat.id)
        return as_of(tenant, chat, session, self._clock())

    def patch(self, tenant: Tenant, chat_id: int, body: object) -> Chat:
        """PATCH /apps/api/v1/chats/{id}: end the session (``{"status": "finished"}``) or
        assign it to the agent the body names; the chat as it then stands."""
        if isinstance(body, dict) and any(body.get(name) is not None for name in AGENT_FIELDS):
            # Both: which one was meant? (A null status names none, as a null agent field.)
            if body.get("status") is not None:
                budget = deadline.current(self._deadline_seconds)
                if budget.retry(lambda: self._store.read_chat(tenant.id, chat_id)) is None:
                    raise errors.NotFound()
                raise BadRequest(errors.STATUS_MUST_BE_FINISHED)
            return self.assign(tenant, chat_id, body)
        return self.end(tenant, chat_id, body)

    def assign(self, tenant: Tenant, chat_id: int, body: dict[str, object]) -> Chat:
        """Assign a session that has no agent (one a reply opened) to the agent ``body``
        names: checked as rows 15 and 16, then an ended session, then one assigned."""
        budget = deadline.current(self._deadline_seconds)
        tried: set[dt.datetime] = set()  # times of commits whose outcome is unknown
        while True:
            chat, session = budget.retry(lambda: self._store.chat_and_session(tenant.id, chat_id))
            if chat is None:
                raise errors.NotFound()
            agent_id, agent_email = schemas.load_agent(body)
            by_id, by_email = budget.retry(
                lambda: self._store.agents(tenant.id, agent_id, agent_email)  # noqa: B023
            )
            agent = named_agent(agent_id, agent_email, by_id, by_email)
            assert agent is not None
            now = max(self._clock(), chat.last_activity_at or chat.created_at)
            current = as_of(tenant, chat, session, now)
            if chat.agent is not None and chat.agent.id == agent.id and chat.assigned_at in tried:
                return current  # it had landed
            if not current.active:
                raise BadRequest(errors.CHAT_ALREADY_ENDED)
            if chat.agent is not None:
                raise BadRequest(errors.CHAT_ALREADY_ASSIGNED)
            [participant_id] = budget.retry(
                lambda: self._store.take_ids(tenant.id, "participants", 1)
            )
            expires_at = now + dt.timedelta(seconds=tenant.session_timeout_seconds)
            assigned = dataclasses.replace(
                chat.assigned(agent, participant_id, now),
                last_activity_at=now,  # an assignment counts as activity (6.4)
                expires_at=expires_at,
            )
            mark = session if session is not None and session.chat_id == chat.id else None
            changes = [events.chat_event(events.CHAT_ASSIGNED, tenant.id, assigned, now)]
            try:
                self._store.assign_chat(tenant.id, assigned, mark, changes)
            except errors.LostRace:
                budget.pause()  # changed meanwhile (a message joined, another assignment)
                continue
            except errors.BackendUnavailable as exc:
                tried.add(now)  # it may have landed: read it again to tell
                budget.pause(exc)
                continue
            self._outbox.committed(changes)
            logs.note(outcome="chat_assigned", chat_id=chat.id, agent_id=agent.id)
            return assigned

    def end(self, tenant: Tenant, chat_id: int, body: object) -> Chat:
        """Finish an active session and free its consumer; the ended chat."""
        budget = deadline.current(self._deadline_seconds)
        tried: set[dt.datetime] = set()  # ends of commits whose outcome is unknown
        while True:
            chat, session = budget.retry(lambda: self._store.chat_and_session(tenant.id, chat_id))
            if chat is None:
                raise errors.NotFound()
            if not isinstance(body, dict) or body.get("status") != "finished":
                raise BadRequest(errors.STATUS_MUST_BE_FINISHED)
            # The time of this attempt, and never before the chat's last message: a message
            # that joined while this request was retrying is part of the session it ends.
            now = max(self._clock(), chat.last_activity_at or chat.created_at)
            current = as_of(tenant, chat, session, now)
            if not current.active:
                if current.ends_at in tried:
                    return current  # it had landed
                raise BadRequest(errors.CHAT_ALREADY_ENDED)
            ended = chat.ended(now)
            mark = session if session is not None and session.chat_id == chat.id else None
            changes = [events.chat_event(events.CHAT_ENDED, tenant.id, ended, now)]
            cancelled = budget.retry(lambda: self._held(tenant.id, chat, now))  # noqa: B023
            if cancelled is not None:
                changes += events.message_events(tenant.id, None, cancelled, now)
            try:
                self._store.end_chat(tenant.id, ended, mark, changes, cancelled)
                self._outbox.committed(changes)
                logs.note(outcome="chat_ended", chat_id=chat.id)
                return ended
            except errors.LostRace:
                budget.pause()  # changed meanwhile (ended by another request?): read it again
            except errors.BackendUnavailable as exc:
                tried.add(now)
                budget.pause(exc)

    def _held(self, tenant_id: str, chat: Chat, now: dt.datetime) -> Message | None:
        """The chat's first message, cancelled, where it is still held for quiet hours."""
        if chat.held_message_id is None:
            return None
        ref = MessageRef(chat.id, chat.held_message_id)
        held = self._store.read_message(tenant_id, ref)
        if held is None or not held.held:
            return None
        return held.moved_to(FAILED, now)

    def messages(
        self, tenant: Tenant, chat_id: int, limit: str | None, page_token: str | None
    ) -> Page[Message]:
        """A page of a chat's transcript, oldest first, and the token of the next page."""
        size = paging.page_size(limit, DEFAULT_TRANSCRIPT_PAGE)
        after = paging.cursor(page_token, MESSAGE_ID) if page_token is not None else None
        retry = deadline.current(self._deadline_seconds).retry
        if retry(lambda: self._store.read_chat(tenant.id, chat_id)) is None:
            raise errors.NotFound()
        page = retry(lambda: self._store.messages_page(tenant.id, chat_id, size + 1, after))
        following = None
        if len(page) > size:
            last = page[size - 1]
            following = paging.token(last.created_at, last.id)
        logs.note(outcome="transcript_read", chat_id=chat_id)
        return Page(page[:size], following)
