"""A session as it stands, ending it, and its transcript (SPEC 10.2 and 10.5).

No HTTP and no Firestore here: the use case is handed a store and a clock.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sms import deadline, errors, logs, paging
from sms.clock import Clock
from sms.domain import ActiveSession, Chat, Message, Tenant
from sms.errors import BadRequest
from sms.paging import Page
from sms.sessions import as_of

DEFAULT_TRANSCRIPT_PAGE = 100


class ChatStore(Protocol):
    def read_chat(self, tenant_id: str, chat_id: int) -> Chat | None: ...

    def chat_and_session(
        self, tenant_id: str, chat_id: int
    ) -> tuple[Chat | None, ActiveSession | None]: ...

    def end_chat(self, tenant_id: str, ended: Chat, session: ActiveSession | None) -> None: ...

    def messages_page(
        self,
        tenant_id: str,
        chat_id: int,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[Message]: ...


class ChatSessions:
    """GET and PATCH /apps/api/v1/chats/{id}, and its messages."""

    def __init__(self, store: ChatStore, clock: Clock, deadline_seconds: float) -> None:
        self._store = store
        self._clock = clock
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
            try:
                self._store.end_chat(tenant.id, ended, mark)
                logs.note(outcome="chat_ended", chat_id=chat.id)
                return ended
            except errors.LostRace:
                budget.pause()  # changed meanwhile (ended by another request?): read it again
            except errors.BackendUnavailable as exc:
                tried.add(now)
                budget.pause(exc)

    def messages(
        self, tenant: Tenant, chat_id: int, limit: str | None, page_token: str | None
    ) -> Page[Message]:
        """A page of a chat's transcript, oldest first, and the token of the next page."""
        size = paging.page_size(limit, DEFAULT_TRANSCRIPT_PAGE)
        after = paging.cursor(page_token) if page_token is not None else None
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
