"""Pages of a list: the page size a query asks for, and opaque tokens for the next page.

A token names where the next page starts (the time and id of the last item given) and is
accepted only as this service issued it: anything else is the route's 400, never a value
that reaches Firestore.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from sms import errors

_T = TypeVar("_T")
_DIGITS = re.compile(r"[0-9]{1,3}")
MAX_PAGE_SIZE = 200
_TOKEN = re.compile(r"([0-9]{1,15})\.(.{1,64})")


@dataclass(frozen=True)
class Page(Generic[_T]):
    """One page of a list, and the token of the next one (None: this is the last)."""

    items: list[_T]
    next_page_token: str | None


def page_size(limit: str | None, default: int) -> int:
    """The ``limit`` query parameter: 1 to 200, ``default`` when absent."""
    if limit is None:
        return default
    if not _DIGITS.fullmatch(limit) or not 1 <= int(limit) <= MAX_PAGE_SIZE:
        raise errors.BadRequest(errors.LIMIT_INVALID)
    return int(limit)


def token(at: dt.datetime, item_id: str) -> str:
    """The opaque token of the page after the item created at ``at`` with id ``item_id``."""
    millis = round(at.timestamp() * 1000)
    raw = f"{millis}.{item_id}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def cursor(page_token: str, ids: re.Pattern[str]) -> tuple[dt.datetime, str]:
    """Where a page token says the page starts; 400 for anything this service did not issue.

    ``ids`` is the form of the ids the list's items have: only such an id, never a name
    Firestore reserves or refuses (``__x__``, ``..``, a ``/``), reaches a query."""
    try:
        raw = base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)).decode("ascii")
        match = _TOKEN.fullmatch(raw)
        reencoded = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
        if match is None or reencoded != page_token or not ids.fullmatch(match[2]):
            raise ValueError(page_token)
        at = dt.datetime.fromtimestamp(int(match[1]) / 1000, dt.timezone.utc)
    except (ValueError, OverflowError, OSError) as exc:  # binascii.Error is a ValueError
        raise errors.BadRequest(errors.PAGE_TOKEN_INVALID) from exc
    return at, match[2]
