"""A tenant's settings as its document holds them (SPEC 7), judged rather than trusted.

Operators may write the document by hand, so any field can hold anything: the wrong type, a
negative or huge number, a malformed template. Each field is judged here; a value the
service cannot use is replaced by the field's documented default, and the reason is kept
in ``Tenant.problems`` for the operator's log (at ERROR). A tenant's requests go on being
served meanwhile, as if the field were missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

import phonenumbers

from sms import logs, quiet_hours
from sms.domain import (
    DEFAULT_ALLOWED_REGIONS,
    DEFAULT_LANG,
    DEFAULT_SESSION_TIMEOUT_SECONDS,
    Tenant,
)

MAX_SESSION_TIMEOUT_SECONDS = 365 * 86400
MAX_RATE_LIMIT = 1_000_000
MAX_TEMPLATE_CHARS = 2048
_LANG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
_T = TypeVar("_T")
_TEMPLATE = re.compile(r"https?://\S+")


class _Judge:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.refusals: dict[str, str] = {}  # field: why its value cannot be used
        self.problems: list[str] = []

    def refuse(self, name: str, why: str, default: Any) -> Any:
        shown = repr(self.data.get(name))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        self.refusals[name] = why
        self.problems.append(f"{name}={shown} {why}; using {default!r}")
        return default

    def flag(self, name: str) -> bool:
        """Missing or false: off. Anything else but true is a mistake, and off too."""
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value is True
        return bool(self.refuse(name, "is not true or false", False))

    def rule(self, name: str, judged: Callable[[object], _T], default: _T) -> _T:
        """A field judged by ``judged`` (ValueError: why it cannot be used); missing: default."""
        value = self.data.get(name)
        if value is None:
            return default
        try:
            return judged(value)
        except ValueError as exc:
            return cast(_T, self.refuse(name, str(exc), default))

    def whole(self, name: str, default: int, low: int, high: int) -> int:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool):
            return int(self.refuse(name, "is not a whole number", default))
        if not low <= value <= high:
            return int(self.refuse(name, f"is not from {low} to {high}", default))
        return value


def judge(tenant_id: str, data: dict[str, Any]) -> Tenant:
    """The tenant its document describes, every field judged."""
    return _judged(tenant_id, _Judge(data))


def refusals(data: dict[str, Any]) -> dict[str, str]:
    """The fields of a tenant document the function could not use, and why: what the admin
    command line refuses to write."""
    judge = _Judge(data)
    _judged("", judge)
    return judge.refusals


def _judged(tenant_id: str, judge: _Judge) -> Tenant:
    data = judge.data
    lang = data.get("lang", DEFAULT_LANG)
    if not isinstance(lang, str) or not _LANG.fullmatch(lang):
        lang = judge.refuse("lang", "is not a language tag (such as en or pt-BR)", DEFAULT_LANG)
    regions = data.get("allowed_regions", list(DEFAULT_ALLOWED_REGIONS))
    known = (
        isinstance(regions, list)
        and 0 < len(regions) <= len(phonenumbers.SUPPORTED_REGIONS)
        and all(isinstance(r, str) and r.upper() in phonenumbers.SUPPORTED_REGIONS for r in regions)
    )
    if not known:
        why = "is not a list of ISO region codes (such as US,CA)"
        regions = judge.refuse("allowed_regions", why, ["US"])
    template = data.get("ticket_url_template")
    if template is not None and not (
        isinstance(template, str)
        and len(template) <= MAX_TEMPLATE_CHARS
        and _TEMPLATE.fullmatch(template)
    ):
        why = f"is not an http(s) URL template of at most {MAX_TEMPLATE_CHARS} characters"
        template = judge.refuse("ticket_url_template", why, None)
    return Tenant(
        id=tenant_id,
        sms_enabled=judge.flag("sms_enabled"),
        outbound_sms_enabled=judge.flag("outbound_sms_enabled"),
        lang=lang,
        session_timeout_seconds=judge.whole(
            "session_timeout_seconds",
            DEFAULT_SESSION_TIMEOUT_SECONDS,
            1,
            MAX_SESSION_TIMEOUT_SECONDS,
        ),
        allowed_regions=tuple(r.upper() for r in regions),
        ticket_url_template=template,
        rate_limit_per_second=judge.whole("rate_limit_per_second", 0, 0, MAX_RATE_LIMIT),
        quiet_hours=judge.rule("quiet_hours", quiet_hours.judge_quiet_hours, None),
        default_time_zone=judge.rule(
            "default_time_zone", quiet_hours.judge_time_zone, quiet_hours.DEFAULT_TIME_ZONE
        ),
        problems=tuple(judge.problems),
    )


def report_problems(tenant: Tenant) -> None:
    """The tenant settings that could not be used: the operator's to fix (logged at ERROR)."""
    for problem in tenant.problems:
        logs.event("ERROR", f"tenant {tenant.id}: setting {problem}", tenant=tenant.id)
