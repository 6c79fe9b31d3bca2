"""One JSON line per request on stdout, in Cloud Logging's structured format (SPEC 10.4).

Cloud Functions and Cloud Run turn each line into a log entry: ``severity``, ``message``,
``httpRequest`` and ``logging.googleapis.com/trace`` are understood by Cloud Logging, and
``stack_trace`` by Error Reporting. The rest (tenant, chat id, outcome, masked numbers) are
searchable fields. Message texts and tokens are never logged, and phone numbers only masked.
"""

from __future__ import annotations

import contextvars
import json
import re
import sys
import threading
import time
from typing import Any

import phonenumbers

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_fields", default=None
)
_write_lock = threading.Lock()
# What is logged of a request's path and method, at most; beyond, the length is said.
MAX_LOGGED_PATH = 200
MAX_LOGGED_METHOD = 16
# In a path: what looks like a phone number (9 digits or more, or + and 7), or a credential.
_PHONE_LIKE = re.compile(r"\+[\d\s().-]{7,}\d|\d(?:[\s().-]?\d){8,}")
_CREDENTIAL_LIKE = re.compile(r"(?i)\b(?:basic|bearer)\b(?:[\s:=]+[^\s/]+)?|[A-Za-z0-9+_=-]{24,}")
_E164_LIKE = re.compile(r"\+[1-9]\d{3,16}")
_CLOUD_TRACE = re.compile(r"([0-9a-fA-F]{32})(?:/([0-9]+))?(?:;o=([01]))?")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def mask(e164: str | None) -> str | None:
    """A phone number shown by its country code and last two digits: +1********00."""
    if not e164:
        return None
    country = _country_code(e164)
    if country is None:
        return "*" * max(len(e164) - 2, 0) + e164[-2:]
    hidden = len(e164) - 1 - len(country) - 2
    return f"+{country}{'*' * max(hidden, 0)}{e164[-2:]}"


def _country_code(e164: str) -> str | None:
    """The country calling code an E.164 number starts with. Country codes are a prefix
    code (none is the start of another), so the first of one to three digits that is one
    is the one; a lookup rather than a parse, since every request masks several numbers."""
    if not _E164_LIKE.fullmatch(e164):
        return None
    for length in (1, 2, 3):
        if int(e164[1 : 1 + length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return e164[1 : 1 + length]
    return None


def _masked_digits(match: re.Match[str]) -> str:
    digits = [c for c in match.group() if c.isdigit()]
    return "*" * (len(digits) - 2) + "".join(digits[-2:])


def clean_path(path: str) -> str:
    """A request path as it may be logged: bounded, numbers masked, credentials removed."""
    shown = _CREDENTIAL_LIKE.sub("[redacted]", path[:MAX_LOGGED_PATH])
    shown = _PHONE_LIKE.sub(_masked_digits, shown)
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
    if len(path) > MAX_LOGGED_PATH:
        shown += f"... ({len(path)} characters)"
    return shown


def note(**fields: Any) -> None:
    """Add fields to the line of the request being served (ignored outside a request)."""
    current = _fields.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def trace_fields(
    project: str | None, cloud_trace: str | None, traceparent: str | None
) -> dict[str, Any]:
    """The trace correlation fields, from X-Cloud-Trace-Context or W3C traceparent."""
    trace_id = span_id = sampled = None
    if cloud_trace and (match := _CLOUD_TRACE.fullmatch(cloud_trace.strip())):
        trace_id, span, flag = match.groups()
        span_id = f"{int(span):016x}" if span else None
        sampled = flag == "1" if flag else None
    elif traceparent and (match := _TRACEPARENT.fullmatch(traceparent.strip().lower())):
        trace_id, span_id, flags = match.groups()
        sampled = bool(int(flags, 16) & 1)
    if trace_id is None or not project:
        return {}
    fields: dict[str, Any] = {
        "logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}"
    }
    if span_id:
        fields["logging.googleapis.com/spanId"] = span_id
    if sampled is not None:
        fields["logging.googleapis.com/trace_sampled"] = sampled
    return fields


class RequestLine:
    """Collects one request's fields while it is served, then writes its line."""

    def __init__(self, method: str, path: str, base: dict[str, Any]) -> None:
        self._method = clean_path(method[:MAX_LOGGED_METHOD])
        self._path = clean_path(path)
        self._base = base
        self._started = time.monotonic()
        self._token: contextvars.Token[dict[str, Any] | None] | None = None
        self.fields: dict[str, Any] = {}

    def __enter__(self) -> RequestLine:
        self._token = _fields.set(self.fields)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _fields.reset(self._token)

    def write(self, status: int, stack_trace: str | None = None) -> None:
        latency = time.monotonic() - self._started
        # A 502 (the carrier refused) and a 503 (a backend outage) are not this code's faults.
        severity = "INFO" if status < 500 else "WARNING" if status in (502, 503) else "ERROR"
        outcome = self.fields.get("outcome", "ok" if status < 400 else "rejected")
        line: dict[str, Any] = {
            "severity": severity,
            "message": f"{self._method} {self._path} {status} {outcome}",
            "httpRequest": {
                "requestMethod": self._method,
                "requestUrl": self._path,
                "status": status,
                "latency": f"{latency:.3f}s",
            },
            **self._base,
            **self.fields,
            "outcome": outcome,
        }
        if stack_trace:
            line["stack_trace"] = stack_trace
        _write(line)


def detail(message: str, **fields: Any) -> None:
    """What happened, on the line of the request being served (one line per request), or on
    a line of its own outside a request (the sweeper's work)."""
    if _fields.get() is not None:
        note(**fields)
    else:
        event("INFO", message, **fields)


def event(severity: str, message: str, **fields: Any) -> None:
    """A line of its own, not a request's (the sweeper's, a carrier's), in the same format."""
    _write({"severity": severity, "message": message, **fields})


def _write(line: dict[str, Any]) -> None:
    text = json.dumps(line, ensure_ascii=False, default=str)
    with _write_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
