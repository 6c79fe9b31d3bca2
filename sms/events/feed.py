"""GET /apps/api/v1/events (SPEC 10.7): a tenant's events, oldest first, each as delivered.

For a system that cannot take webhooks, and for catching up after an outage: page through
from ``since`` (a time as the API writes them), of one ``type`` or all.

No HTTP and no Firestore here: the use case is handed a store.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Protocol

from sms import deadline, errors, logs, paging
from sms.domain import Tenant
from sms.events import model
from sms.events.model import StoredEvent
from sms.paging import Page

DEFAULT_PAGE = 100
# A time as the API writes it (SPEC 5): 2021-10-04T17:20:51.000Z (milliseconds optional).
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z")


class FeedStore(Protocol):
    def events_page(
        self,
        tenant_id: str,
        since: dt.datetime | None,
        kind: str | None,
        page_size: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[StoredEvent]: ...


def parse_time(text: str, error: str) -> dt.datetime:
    """A time written as the API writes them, in UTC; BadRequest(``error``) otherwise."""
    if not _TIME.fullmatch(text):
        raise errors.BadRequest(error)
    try:
        return dt.datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise errors.BadRequest(error) from exc


class EventFeed:
    def __init__(self, store: FeedStore, deadline_seconds: float) -> None:
        self._store = store
        self._deadline_seconds = deadline_seconds

    def page(
        self,
        tenant: Tenant,
        since: str | None,
        kind: str | None,
        limit: str | None,
        page_token: str | None,
    ) -> Page[StoredEvent]:
        """A page of the tenant's events and the token of the next; the query's parameters
        judged in the order of SPEC 10.7's texts."""
        start = parse_time(since, errors.SINCE_INVALID) if since is not None else None
        if kind is not None and kind not in model.TYPES:
            raise errors.BadRequest(errors.TYPE_INVALID)
        size = paging.page_size(limit, DEFAULT_PAGE)
        after = paging.cursor(page_token, model.EVENT_ID) if page_token is not None else None
        budget = deadline.current(self._deadline_seconds)
        found = budget.retry(
            lambda: self._store.events_page(tenant.id, start, kind, size + 1, after)
        )
        following = None
        if len(found) > size:
            last = found[size - 1]
            following = paging.token(last.at, last.id)
        logs.note(outcome="events_read", events=min(len(found), size))
        return Page(found[:size], following)
