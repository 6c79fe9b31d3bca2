"""Twilio's Messages resource (API version 2010-04-01) as the stand-in keeps it: what a create
must carry, the resource it makes, Twilio's error bodies, how a list filters and pages, and the
form of the status callbacks Twilio posts. No HTTP here: server.py serves it."""

from __future__ import annotations

import copy
import email.utils
import math
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_BODY_LENGTH = 1600
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# Twilio's texts for the errors the stand-in answers, by code.
ERROR_MESSAGES: dict[int, str] = {
    20001: "Invalid parameter",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "Invalid 'To' Phone Number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the "
    "'To' number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The 'From' phone number provided is not a valid, message-capable Twilio phone number.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number is not currently reachable via SMS",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


class TwilioError(Exception):
    """A Twilio error answer: the HTTP status and the JSON body."""

    def __init__(self, code: int, status: int, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.message = message if message is not None else ERROR_MESSAGES.get(code, "Error")

    def body(self) -> dict[str, Any]:
        """The JSON body Twilio answers with."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        if self.code == 20003:
            body["detail"] = "Your AccountSid or AuthToken was incorrect."
        return body


def not_found(path: str) -> TwilioError:
    """Twilio's 404 for a path it does not serve, or a message it does not hold."""
    return TwilioError(20404, 404, f"The requested resource {path} was not found")


def sign(url: str, params: dict[str, str], auth_token: str) -> str:
    """The X-Twilio-Signature Twilio sends with a webhook POST of `params` to `url`."""
    signature: str = RequestValidator(auth_token).compute_signature(url, params)
    return signature


def rfc2822(instant: datetime) -> str:
    """An instant as Twilio writes it: RFC 2822 in GMT ('Wed, 02 Dec 2026 19:22:17 +0000')."""
    return email.utils.format_datetime(instant.astimezone(timezone.utc).replace(microsecond=0))


def num_segments(body: str) -> int:
    """How many segments an SMS body takes: GSM-7 (160, or 153 each) or UCS-2 (70, or 67)."""
    septets = 0
    for char in body:
        if char in _GSM_BASIC:
            septets += 1
        elif char in _GSM_EXTENSION:
            septets += 2
        else:
            units = len(body.encode("utf-16-le")) // 2
            return 1 if units <= 70 else math.ceil(units / 67)
    return 1 if septets <= 160 else math.ceil(septets / 153)


# -- create ----------------------------------------------------------------------------------


def validate(fields: dict[str, str]) -> None:
    """Refuse a create as Twilio does, in its order: To, Body or media, a sender, the number,
    the length."""
    to = fields.get("To")
    if not to:
        raise TwilioError(21604, 400)
    if "Body" not in fields and "MediaUrl" not in fields:
        raise TwilioError(21602, 400)
    if "From" not in fields and "MessagingServiceSid" not in fields:
        raise TwilioError(21603, 400)
    if not E164.match(to):
        raise TwilioError(21211, 400)
    if len(fields.get("Body", "")) > MAX_BODY_LENGTH:
        raise TwilioError(21617, 400)


def new_resource(
    account_sid: str, fields: dict[str, str], media: int, now: datetime, sent: bool
) -> dict[str, Any]:
    """The message resource a create makes, `sent` at once or queued (accepted when a
    Messaging Service is to pick the sender)."""
    sid = "SM" + uuid.uuid4().hex
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json"
    sender = fields.get("From")
    if sent:
        status = "sent"
    elif sender is None:
        status = "accepted"
    else:
        status = "queued"
    body = fields.get("Body", "")
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": rfc2822(now),
        "date_sent": rfc2822(now) if status == "sent" else None,
        "date_updated": rfc2822(now),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": fields.get("MessagingServiceSid"),
        "num_media": str(media),
        "num_segments": str(num_segments(body)) if body else "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {
            "media": uri.removesuffix(".json") + "/Media.json",
            "feedback": uri.removesuffix(".json") + "/Feedback.json",
        },
        "to": fields["To"],
        "uri": uri,
    }


def callback_form(
    account_sid: str, resource: dict[str, Any], status: str, error_code: int | None
) -> dict[str, str]:
    """The form of the status callback Twilio posts when a message reaches `status`."""
    sid = resource["sid"]
    form: dict[str, str] = {"MessageSid": sid, "SmsSid": sid, "AccountSid": account_sid}
    if resource["messaging_service_sid"]:
        form["MessagingServiceSid"] = resource["messaging_service_sid"]
    if resource["from"]:
        form["From"] = resource["from"]
    form |= {
        "To": resource["to"],
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": API_VERSION,
    }
    if error_code is not None:
        form["ErrorCode"] = str(error_code)
    return form


# -- the messages an account holds -----------------------------------------------------------


@dataclass
class _Stored:
    """A stored message: its resource, the instants it is ordered and filtered by."""

    resource: dict[str, Any]
    created: datetime
    sent: datetime | None
    seq: int
    status_callback: str | None

    @property
    def key(self) -> tuple[datetime, int]:
        """The ordering key: lists answer the largest first."""
        return (self.created, self.seq)


class Messages:
    """The messages of one account, safe to use from the server's threads. Everything it
    hands out is a copy."""

    def __init__(self, account_sid: str) -> None:
        self.account_sid = account_sid
        self._lock = threading.Lock()
        self._stored: list[_Stored] = []
        self._by_sid: dict[str, _Stored] = {}
        self._seq = 0

    def all(self) -> list[dict[str, Any]]:
        """The resources, in creation order."""
        with self._lock:
            return [copy.deepcopy(stored.resource) for stored in self._stored]

    def get(self, sid: str) -> dict[str, Any]:
        """One resource (KeyError if there is none)."""
        with self._lock:
            return copy.deepcopy(self._by_sid[sid].resource)

    def callback_url(self, sid: str) -> str | None:
        """The StatusCallback the message was created with (KeyError if there is none)."""
        with self._lock:
            return self._by_sid[sid].status_callback

    def fetch(self, path: str, sid: str) -> dict[str, Any]:
        """One resource, or Twilio's 404 for `path`."""
        try:
            return self.get(sid)
        except KeyError:
            raise not_found(path) from None

    def add(self, resource: dict[str, Any], callback: str | None) -> None:
        """Keep a created message."""
        created = email.utils.parsedate_to_datetime(resource["date_created"])
        date_sent = resource["date_sent"]
        sent = email.utils.parsedate_to_datetime(date_sent) if date_sent else None
        with self._lock:
            self._seq += 1
            stored = _Stored(copy.deepcopy(resource), created, sent, self._seq, callback)
            self._stored.append(stored)
            self._by_sid[resource["sid"]] = stored

    def set_status(self, sid: str, status: str, error_code: int | None, now: datetime) -> None:
        """Move a message on, as Twilio does (KeyError if there is none)."""
        with self._lock:
            stored = self._by_sid[sid]
            resource = stored.resource
            resource["status"] = status
            resource["error_code"] = error_code
            if status in {"sent", "delivered", "undelivered"} and stored.sent is None:
                stored.sent = now
                resource["date_sent"] = rfc2822(now)
            resource["date_updated"] = rfc2822(now)

    def clear(self) -> None:
        """Forget every message."""
        with self._lock:
            self._stored.clear()
            self._by_sid.clear()

    def page(self, query_lists: dict[str, list[str]]) -> dict[str, Any]:
        """A list request's answer: filtered by To, From and DateSent, newest first, paged by
        Page or by PageToken, with Twilio's page URIs."""
        query = {name: values[-1] for name, values in query_lists.items() if values and values[-1]}
        dates = _date_filter(query)
        page_size = min(_integer(query, "PageSize", DEFAULT_PAGE_SIZE, minimum=1), MAX_PAGE_SIZE)
        page = _integer(query, "Page", 0, minimum=0)
        token = query.get("PageToken")
        with self._lock:
            matching = [
                stored
                for stored in sorted(self._stored, key=lambda s: s.key, reverse=True)
                if ("To" not in query or stored.resource["to"] == query["To"])
                and ("From" not in query or stored.resource["from"] == query["From"])
                and dates.matches(stored.sent)
            ]
            if token is None:
                begin = page * page_size
                items = matching[begin : begin + page_size]
            else:
                items = self._after_token(matching, token, page_size)
            resources = [copy.deepcopy(stored.resource) for stored in items]
            later = bool(items) and items[-1] is not matching[-1]
            earlier = bool(items) and items[0] is not matching[0]
        filters = [
            (name, query[name])
            for name in ("To", "From", "DateSent", "DateSent<", "DateSent>")
            if name in query
        ]
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

        def uri(page_number: int, page_token: str | None) -> str:
            params = [*filters, ("PageSize", str(page_size)), ("Page", str(page_number))]
            if page_token is not None:
                params.append(("PageToken", page_token))
            return base + "?" + urlencode(params, quote_via=quote)

        start = page * page_size
        return {
            "end": start + max(len(resources) - 1, 0),
            "first_page_uri": uri(0, None),
            "messages": resources,
            "next_page_uri": uri(page + 1, "PA" + resources[-1]["sid"]) if later else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": (
                uri(page - 1, "PB" + resources[0]["sid"]) if earlier and page > 0 else None
            ),
            "start": start,
            "uri": uri(page, token),
        }

    def _after_token(self, matching: list[_Stored], token: str, page_size: int) -> list[_Stored]:
        """The page a PageToken points at: after (PA) or before (PB) the message it names."""
        direction, sid = token[:2], token[2:]
        anchor = self._by_sid.get(sid)
        if direction not in {"PA", "PB"} or anchor is None:
            raise TwilioError(20001, 400, f"Invalid PageToken: {token}")
        if direction == "PA":
            return [stored for stored in matching if stored.key < anchor.key][:page_size]
        before = [stored for stored in matching if stored.key > anchor.key]
        return before[-page_size:]


class _DateFilter(NamedTuple):
    """The DateSent filters of a list request, as inclusive bounds on date_sent."""

    low: datetime | None
    high: datetime | None

    def matches(self, sent: datetime | None) -> bool:
        if self.low is None and self.high is None:
            return True
        if sent is None:
            return False
        if self.low is not None and sent < self.low:
            return False
        return not (self.high is not None and sent > self.high)


def _parse_date_sent(name: str, value: str) -> tuple[datetime, bool]:
    """A DateSent value as an instant (a bare date: its start) and whether it was a bare date."""
    try:
        if _DAY.match(value):
            return datetime.combine(date.fromisoformat(value), time(), timezone.utc), True
        if _INSTANT.match(value):
            parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
            return parsed.replace(tzinfo=timezone.utc), False
    except ValueError:
        pass
    raise TwilioError(20001, 400, f"Invalid {name}: {value}")


def _date_filter(query: dict[str, str]) -> _DateFilter:
    bounds: list[tuple[datetime | None, datetime | None]] = []
    end_of_day = timedelta(days=1) - timedelta(microseconds=1)
    if "DateSent" in query:
        instant, _ = _parse_date_sent("DateSent", query["DateSent"])
        start = datetime.combine(instant.date(), time(), timezone.utc)
        bounds.append((start, start + end_of_day))
    if "DateSent<" in query:
        instant, bare = _parse_date_sent("DateSent<", query["DateSent<"])
        bounds.append((None, instant + end_of_day if bare else instant))
    if "DateSent>" in query:
        instant, _ = _parse_date_sent("DateSent>", query["DateSent>"])
        bounds.append((instant, None))
    lows = [low for low, _ in bounds if low is not None]
    highs = [high for _, high in bounds if high is not None]
    return _DateFilter(max(lows) if lows else None, min(highs) if highs else None)


def _integer(query: dict[str, str], name: str, default: int, minimum: int) -> int:
    """An integer query parameter; a malformed one is Twilio's error 20001."""
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise TwilioError(20001, 400, f"Invalid {name}: {query[name]}")
    return value
