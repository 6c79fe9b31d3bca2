"""The checks of what an operator typed, shared by the admin commands.

Each returns the value as it is stored, or raises Invalid; commands check every input before
they write anything, so an Invalid always means nothing was written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sms import phone
from sms.domain import DEFAULT_ALLOWED_REGIONS, SUBDOMAIN

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_URL = re.compile(r"https?://\S+")


class Invalid(Exception):
    """An input the command refuses; nothing has been written."""


class Answered(Exception):
    """The function's own refusal, with its API's message; nothing has been written.
    ``state``: the store is not as the command needs (else the input is bad)."""

    def __init__(self, message: str, *, state: bool) -> None:
        super().__init__(message)
        self.state = state


def subdomain(value: str) -> str:
    if not SUBDOMAIN.fullmatch(value):
        raise Invalid(f"{value!r} is not a subdomain (letters, digits, '-' and '_', 1 to 63)")
    return value


def positive_int(what: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", value) or int(value) <= 0:
        raise Invalid(f"{what} must be a positive whole number, got {value!r}")
    return int(value)


def whole_number(what: str, value: str) -> int:
    """A number as typed: digits only (what it may be is the tenant rules' to say)."""
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise Invalid(f"{what} must be a whole number, got {value!r}")
    return int(value)


def regions(value: str) -> list[str]:
    return [name.strip().upper() for name in value.split(",") if name.strip()]


def email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise Invalid(f"{value!r} is not an email address")
    return value


def url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise Invalid(f"{value!r} is not an http(s) URL")
    return value


def number(value: str, allowed: Sequence[str]) -> str:
    """A phone number as the API will judge it for this tenant, in E.164."""
    judgement = phone.judge(value, allowed)
    if judgement.e164 is None:
        reason = {
            phone.Verdict.MISSING: "is empty",
            phone.Verdict.INVALID: "is not a valid phone number",
            phone.Verdict.FOREIGN: f"is outside the tenant's allowed regions {list(allowed)}",
        }[judgement.verdict]
        raise Invalid(f"{value!r} {reason}")
    return judgement.e164


def allowed_regions(tenant: dict[str, Any]) -> list[str]:
    """The regions a tenant's numbers may belong to, as its document says (default US)."""
    stored = tenant.get("allowed_regions")
    if isinstance(stored, list) and stored and all(isinstance(r, str) for r in stored):
        return [r.upper() for r in stored]
    return list(DEFAULT_ALLOWED_REGIONS)
