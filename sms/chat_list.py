"""GET /apps/api/v1/chats (SPEC 10.2): the tenant's chats, newest first, filtered by status
and by the consumer's number, for an agent desktop to find the sessions waiting for an agent.

A session idle past its timeout counts as finished, though no request or sweep has recorded
it yet: the store is asked for the stored statuses that can stand for the one asked, and
each chat is judged as it stands now, so that a page may take more than one read.

No HTTP and no Firestore here: the use case is handed a store and a clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Protocol

import phonenumbers

from sms import deadline, errors, logs, paging, phone
from sms.clock import Clock
from sms.domain import ACTIVE_STATUSES, MAX_ID, Chat, Tenant
from sms.paging import Page
from sms.sessions import as_of

DEFAULT_PAGE = 50
CHAT_ID = re.compile(r"[1-9][0-9]{0,18}")
ACTIVE = "active"
STATUSES = ("queued", "selecting", "assigned", "finished", "failed", ACTIVE)
# The most chats one page may read to fill itself (with sessions expired but not recorded).
MAX_SCANNED = 2000
# Every region a valid number can have, the non-geographic numbers' "001" (+800, +870...)
# among them: a valid number of any is searched for, and a foreign one simply finds nothing.
ANY_REGION = frozenset(
    {*phonenumbers.SUPPORTED_REGIONS, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY}
)


class ChatListStore(Protocol):
    def chats_page(
        self,
        tenant_id: str,
        statuses: tuple[str, ...],
        end_user_number: str | None,
        page_size: int,
        after: tuple[dt.datetime, int] | None,
    ) -> list[Chat]: ...


def _stored(status: str | None) -> tuple[str, ...]:
    """The stored statuses of the chats that may stand at ``status`` now."""
    if status is None:
        return ()
    if status == ACTIVE:
        return tuple(sorted(ACTIVE_STATUSES))
    if status == "finished":  # recorded, or expired without being recorded yet
        return tuple(sorted({"finished", *ACTIVE_STATUSES}))
    return (status,)


def _matches(chat: Chat, status: str | None) -> bool:
    if status is None:
        return True
    if status == ACTIVE:
        return chat.active
    return chat.status == status


class ChatList:
    def __init__(self, store: ChatListStore, clock: Clock, deadline_seconds: float) -> None:
        self._store = store
        self._clock = clock
        self._deadline_seconds = deadline_seconds

    def page(
        self,
        tenant: Tenant,
        status: str | None,
        end_user_number: str | None,
        limit: str | None,
        page_token: str | None,
    ) -> Page[Chat]:
        """A page of the tenant's chats, newest first (by created_at, then id), each as it
        stands now, and the token of the next; the query judged in SPEC 10.2's order."""
        if status is not None and status not in STATUSES:
            raise errors.BadRequest(errors.STATUS_INVALID)
        number = None
        if end_user_number is not None:
            # Any format; a foreign number is valid, and simply finds nothing.
            number = phone.judge(end_user_number, ANY_REGION).e164
            if number is None:
                raise errors.BadRequest(errors.END_USER_NUMBER_INVALID)
        size = paging.page_size(limit, DEFAULT_PAGE)
        after = None
        if page_token is not None:
            at, chat_id = paging.cursor(page_token, CHAT_ID)
            if int(chat_id) > MAX_ID:  # of the form of an id, but no id is so large
                raise errors.BadRequest(errors.PAGE_TOKEN_INVALID)
            after = (at, int(chat_id))
        budget = deadline.current(self._deadline_seconds)
        now = self._clock()
        found: list[Chat] = []
        scanned = 0
        more = True
        while more and len(found) <= size and scanned < MAX_SCANNED:
            read = functools.partial(
                self._store.chats_page, tenant.id, _stored(status), number, size + 1, after
            )
            batch = budget.retry(read)
            scanned += len(batch)
            more = len(batch) == size + 1
            for chat in batch:
                after = (chat.created_at, chat.id)
                current = as_of(tenant, chat, None, now)
                if _matches(current, status):
                    found.append(current)
                    if len(found) > size:
                        break
        following = None
        if len(found) > size or (more and scanned >= MAX_SCANNED):
            last = found[size - 1] if len(found) > size else None
            position = (last.created_at, last.id) if last is not None else after
            if position is not None:
                following = paging.token(position[0], str(position[1]))
        logs.note(outcome="chats_read", chats=min(len(found), size))
        return Page(found[:size], following)
