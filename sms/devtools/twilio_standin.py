"""A stand-in for Twilio's REST API (the Messages resource of API version 2010-04-01).

The tests run it on 127.0.0.1, and the function reaches it through TWILIO_API_BASE_URL (its
Twilio carrier sends the official client's requests there). It answers creates,
fetches and filtered, paged lists as Twilio documents them, with Twilio's error bodies; tests
can script how the next creates go (refused, failing, held, dropped), change a message's
status, and post status callbacks signed as Twilio signs them.

It also runs on its own, so that SMS_CARRIER=twilio works locally with no Twilio account:
``python -m sms.devtools twilio-standin`` (sms/devtools/run_standin.py), and the local run
starts it itself. There it is made with ``deliver_after``: each message created with a
StatusCallback is then reported ``sent``, then ``delivered``, as Twilio reports an SMS that
reached the phone. The function never imports this module.
"""

from __future__ import annotations

import base64
import binascii
import copy
import email.utils
import hmac
import json
import logging
import math
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import EllipsisType, TracebackType
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import requests
from requests import Response
from twilio.request_validator import RequestValidator

__all__ = [
    "Accept",
    "Behaviour",
    "Drop",
    "Hold",
    "RecordedRequest",
    "Refuse",
    "ServerError",
    "TwilioStandIn",
    "num_segments",
    "rfc2822",
    "sign",
]

API_VERSION = "2010-04-01"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_BODY_LENGTH = 1600
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")
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

# What it does, a line each (creates and the reports of deliver_after), for a program that
# runs it to show; the tests configure no handler for it.
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accept:
    """Create the message normally (what an empty script does too)."""


@dataclass(frozen=True)
class Refuse:
    """Answer the create with this Twilio error and store nothing."""

    code: int
    status: int = 400
    message: str | None = None


@dataclass(frozen=True)
class ServerError:
    """Answer the create with error 20500, after storing the message if `record`."""

    record: bool
    status: int = 500


@dataclass(frozen=True)
class Hold:
    """Hold the create until release(), `seconds`, or stop; store it before, after or never."""

    record: Literal["before", "after", "never"] = "before"
    seconds: float | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer, after storing the message if `record`."""

    record: bool = False


Behaviour = Accept | Refuse | ServerError | Hold | Drop


class RecordedRequest(NamedTuple):
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


class _TwilioError(Exception):
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


def _not_found(path: str) -> _TwilioError:
    return _TwilioError(20404, 404, f"The requested resource {path} was not found")


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


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
    raise _TwilioError(20001, 400, f"Invalid {name}: {value}")


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many simultaneous sends must not wait on a full backlog
    standin: TwilioStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "twilio-standin"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def _serve(self) -> None:
        self.server.standin._handle(self)  # noqa: SLF001 the stand-in answers its own requests

    def do_GET(self) -> None:
        """Fetch a message or list a page."""
        self._serve()

    def do_POST(self) -> None:
        """Create a message."""
        self._serve()

    def do_PUT(self) -> None:
        """Not a Messages endpoint: 404."""
        self._serve()

    def do_DELETE(self) -> None:
        """Not served by the stand-in: 404."""
        self._serve()

    def do_PATCH(self) -> None:
        """Not a Messages endpoint: 404."""
        self._serve()

    def answer(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Send a JSON answer; a client that has gone away is ignored."""
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Twilio-Request-Id", "RQ" + uuid.uuid4().hex)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def hang_up(self) -> None:
        """End the exchange without any answer."""
        self.close_connection = True


class TwilioStandIn:
    """Twilio's Messages API (2010-04-01) on a local port, with scripted create behaviours."""

    def __init__(
        self,
        account_sid: str | None = None,
        auth_token: str | None = None,
        sent_on_create: bool = False,
        clock: Callable[[], datetime] | None = None,
        deliver_after: float | None = None,
    ) -> None:
        """``deliver_after``: when set (the stand-in run on its own), each message created
        with a StatusCallback goes ``sent``, then ``delivered``, that many seconds apart, each
        time with a status callback signed as Twilio signs it. Unset (the tests), statuses
        change only by ``set_status`` and callbacks are sent only by ``status_callback``."""
        self.account_sid = account_sid or "AC" + uuid.uuid4().hex
        self.auth_token = auth_token or uuid.uuid4().hex
        self.sent_on_create = sent_on_create
        self.deliver_after = deliver_after
        self.clock: Callable[[], datetime] = clock or _utc_now
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._released = threading.Condition(self._lock)
        self._generation = 0
        self._stopping = False
        self._stored: list[_Stored] = []
        self._by_sid: dict[str, _Stored] = {}
        self._requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque()
        self._seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self, port: int = 0) -> Self:
        """Serve on 127.0.0.1 until stop(): on ``port``, or on a free port (0)."""
        if self._server is not None:
            return self
        with self._lock:
            self._stopping = False
        server = _Server(("127.0.0.1", port), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="twilio-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held requests end without an answer."""
        with self._released:
            self._stopping = True
            self._released.notify_all()
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the client: 'http://127.0.0.1:PORT'."""
        if self._server is None:
            raise RuntimeError("the Twilio stand-in is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- observation and control -------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Copies of the stored message resources, in creation order."""
        with self._lock:
            return [copy.deepcopy(stored.resource) for stored in self._stored]

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        """Copies of the stored messages to `number`, in creation order."""
        return [message for message in self.messages if message["to"] == number]

    def message(self, sid: str) -> dict[str, Any]:
        """A copy of one stored message resource (KeyError if there is none)."""
        with self._lock:
            return copy.deepcopy(self._by_sid[sid].resource)

    def callback_url(self, sid: str) -> str | None:
        """The StatusCallback the message was created with (KeyError if there is no message)."""
        with self._lock:
            return self._by_sid[sid].status_callback

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next create requests, one each, first in first out."""
        with self._lock:
            self._script.extend(behaviours)

    def release(self) -> None:
        """End every current hold and clear `holding`."""
        with self._released:
            self._generation += 1
            self.holding.clear()
            self._released.notify_all()

    def set_status(self, sid: str, status: str, error_code: int | None = None) -> None:
        """Change a stored message's status (and error_code), as Twilio does when it moves on."""
        now = self._now()
        with self._lock:
            stored = self._by_sid[sid]
            resource = stored.resource
            resource["status"] = status
            resource["error_code"] = error_code
            if status in {"sent", "delivered", "undelivered"} and stored.sent is None:
                stored.sent = now
                resource["date_sent"] = rfc2822(now)
            resource["date_updated"] = rfc2822(now)

    def reset(self) -> None:
        """Forget the messages, the requests and the scripted behaviours."""
        with self._lock:
            self._stored.clear()
            self._by_sid.clear()
            self._requests.clear()
            self._script.clear()

    def status_callback(
        self,
        sid: str,
        status: str,
        error_code: int | None = None,
        url: str | None = None,
        signature: str | EllipsisType | None = ...,
    ) -> Response:
        """POST Twilio's status callback for a message to its StatusCallback (or `url`)."""
        with self._lock:
            stored = self._by_sid[sid]
            resource = copy.deepcopy(stored.resource)
            target = url or stored.status_callback
        if not target:
            raise ValueError(f"message {sid} has no StatusCallback and no url was given")
        form: dict[str, str] = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": self.account_sid,
        }
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
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signature is ...:
            headers["X-Twilio-Signature"] = sign(target, form, self.auth_token)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        return requests.post(target, data=form, headers=headers, timeout=10)

    # -- serving -----------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        return now.astimezone(timezone.utc).replace(microsecond=0)

    def _handle(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        path = split.path
        length_header = handler.headers.get("Content-Length", "0")
        length = int(length_header) if length_header.isdigit() else 0
        raw = handler.rfile.read(length) if length > 0 else b""
        content_type = handler.headers.get("Content-Type", "")
        form: dict[str, list[str]] = {}
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        query = parse_qs(split.query, keep_blank_values=True)
        with self._lock:
            self._requests.append(
                RecordedRequest(handler.command, path, query, form, dict(handler.headers.items()))
            )
        try:
            self._route(handler, path, query, form)
        except _TwilioError as error:
            headers = {}
            if error.code == 20003:
                headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            handler.answer(error.status, error.body(), headers)

    def _route(
        self,
        handler: _Handler,
        path: str,
        query: dict[str, list[str]],
        form: dict[str, list[str]],
    ) -> None:
        collection = _MESSAGES.match(path)
        single = _MESSAGE.match(path)
        if collection and handler.command in {"GET", "POST"}:
            account = collection.group(1)
        elif single and handler.command == "GET":
            account = single.group(1)
        else:
            raise _not_found(path)
        self._authenticate(handler)
        if account != self.account_sid:
            raise _not_found(path)
        if single:
            handler.answer(200, self._fetch(path, single.group(2)))
        elif handler.command == "GET":
            handler.answer(200, self._list(query))
        else:
            self._create(handler, form)

    def _authenticate(self, handler: _Handler) -> None:
        scheme, _, encoded = handler.headers.get("Authorization", "").partition(" ")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, _, password = decoded.partition(":")
        expected = f"{self.account_sid}:{self.auth_token}"
        given = f"{username}:{password}"
        if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
            raise _TwilioError(20003, 401)

    def _fetch(self, path: str, sid: str) -> dict[str, Any]:
        with self._lock:
            stored = self._by_sid.get(sid)
            if stored is None:
                raise _not_found(path)
            return copy.deepcopy(stored.resource)

    # -- create ------------------------------------------------------------------------------

    def _create(self, handler: _Handler, form: dict[str, list[str]]) -> None:
        with self._lock:
            behaviour = self._script.popleft() if self._script else Accept()
        if isinstance(behaviour, Refuse):
            raise _TwilioError(behaviour.code, behaviour.status, behaviour.message)
        fields = {name: values[-1] for name, values in form.items() if values and values[-1]}
        self._validate(fields)
        resource, callback = self._resource(fields, media=len(form.get("MediaUrl", [])))
        match behaviour:
            case Accept():
                self._store(resource, callback)
                handler.answer(201, resource)
            case ServerError(record=record, status=status):
                if record:
                    self._store(resource, callback)
                raise _TwilioError(20500, status)
            case Drop(record=record):
                if record:
                    self._store(resource, callback)
                handler.hang_up()
            case Hold(record=record, seconds=seconds):
                if record == "before":
                    self._store(resource, callback)
                if not self._hold(seconds):
                    handler.hang_up()
                    return
                if record == "after":
                    self._store(resource, callback)
                handler.answer(201, resource)

    @staticmethod
    def _validate(fields: dict[str, str]) -> None:
        to = fields.get("To")
        if not to:
            raise _TwilioError(21604, 400)
        if "Body" not in fields and "MediaUrl" not in fields:
            raise _TwilioError(21602, 400)
        if "From" not in fields and "MessagingServiceSid" not in fields:
            raise _TwilioError(21603, 400)
        if not E164.match(to):
            raise _TwilioError(21211, 400)
        if len(fields.get("Body", "")) > MAX_BODY_LENGTH:
            raise _TwilioError(21617, 400)

    def _resource(self, fields: dict[str, str], media: int) -> tuple[dict[str, Any], str | None]:
        now = self._now()
        sid = "SM" + uuid.uuid4().hex
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        service = fields.get("MessagingServiceSid")
        sender = fields.get("From")
        if self.sent_on_create:
            status = "sent"
        elif sender is None:
            status = "accepted"
        else:
            status = "queued"
        body = fields.get("Body", "")
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": rfc2822(now),
            "date_sent": rfc2822(now) if status == "sent" else None,
            "date_updated": rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
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
        return resource, fields.get("StatusCallback")

    def _store(self, resource: dict[str, Any], callback: str | None) -> None:
        created = email.utils.parsedate_to_datetime(resource["date_created"])
        sent = (
            email.utils.parsedate_to_datetime(resource["date_sent"])
            if resource["date_sent"]
            else None
        )
        with self._lock:
            self._seq += 1
            stored = _Stored(copy.deepcopy(resource), created, sent, self._seq, callback)
            self._stored.append(stored)
            self._by_sid[resource["sid"]] = stored
        log.info(
            "Created %s: %s to %s, %s",
            resource["sid"],
            resource["from"] or resource["messaging_service_sid"],
            resource["to"],
            resource["status"],
        )
        if self.deliver_after is not None and callback:
            threading.Thread(
                target=self._deliver,
                args=(resource["sid"], self.deliver_after),
                name="twilio-standin-deliver",
                daemon=True,
            ).start()

    def _deliver(self, sid: str, seconds: float) -> None:
        """Report a message sent, then delivered, as Twilio does once the phone has it."""
        for status in ("sent", "delivered"):
            with self._released:
                if self._released.wait_for(lambda: self._stopping, timeout=seconds):
                    return
            try:
                self.set_status(sid, status)
                answer = self.status_callback(sid, status)
            except KeyError:
                return  # forgotten (reset) meanwhile
            except requests.RequestException as exc:
                log.warning("Status callback %s for %s failed: %s", status, sid, exc)
                continue
            log.info(
                "Status callback %s for %s: %s %s",
                status,
                sid,
                answer.status_code,
                answer.reason,
            )

    def _hold(self, seconds: float | None) -> bool:
        """Hold until released, `seconds` pass, or stop; False when the stand-in is stopping."""
        with self._released:
            generation = self._generation
            self.holding.set()
            self._released.wait_for(
                lambda: self._generation != generation or self._stopping, timeout=seconds
            )
            return not self._stopping

    # -- list --------------------------------------------------------------------------------

    def _list(self, query_lists: dict[str, list[str]]) -> dict[str, Any]:
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
            raise _TwilioError(20001, 400, f"Invalid PageToken: {token}")
        if direction == "PA":
            return [stored for stored in matching if stored.key < anchor.key][:page_size]
        before = [stored for stored in matching if stored.key > anchor.key]
        return before[-page_size:]


def _integer(query: dict[str, str], name: str, default: int, minimum: int) -> int:
    """An integer query parameter; a malformed one is Twilio's error 20001."""
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise _TwilioError(20001, 400, f"Invalid {name}: {query[name]}")
    return value
