"""The stand-in served: HTTP on 127.0.0.1, scripted creates, holds, status callbacks."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import EllipsisType, TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

import requests
from requests import Response

from sms.devtools.twilio_standin.messages import (
    Messages,
    TwilioError,
    callback_form,
    new_resource,
    not_found,
    sign,
    validate,
)
from sms.devtools.twilio_standin.scripts import Accept, Behaviour, Drop, Hold, Refuse, ServerError

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$")

# What it does, a line each (creates and the reports of deliver_after), for a program that
# runs it to show; the tests configure no handler for it.
log = logging.getLogger(__name__)


class RecordedRequest(NamedTuple):
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
        self._messages = Messages(self.account_sid)
        self._requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque()
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
        return self._messages.all()

    def sent_to(self, number: str) -> list[dict[str, Any]]:
        """Copies of the stored messages to `number`, in creation order."""
        return [message for message in self.messages if message["to"] == number]

    def message(self, sid: str) -> dict[str, Any]:
        """A copy of one stored message resource (KeyError if there is none)."""
        return self._messages.get(sid)

    def callback_url(self, sid: str) -> str | None:
        """The StatusCallback the message was created with (KeyError if there is no message)."""
        return self._messages.callback_url(sid)

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
        self._messages.set_status(sid, status, error_code, self._now())

    def reset(self) -> None:
        """Forget the messages, the requests and the scripted behaviours."""
        self._messages.clear()
        with self._lock:
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
        resource = self._messages.get(sid)
        target = url or self._messages.callback_url(sid)
        if not target:
            raise ValueError(f"message {sid} has no StatusCallback and no url was given")
        form = callback_form(self.account_sid, resource, status, error_code)
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
        except TwilioError as error:
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
            raise not_found(path)
        self._authenticate(handler)
        if account != self.account_sid:
            raise not_found(path)
        if single:
            handler.answer(200, self._messages.fetch(path, single.group(2)))
        elif handler.command == "GET":
            handler.answer(200, self._messages.page(query))
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
            raise TwilioError(20003, 401)

    # -- create ------------------------------------------------------------------------------

    def _create(self, handler: _Handler, form: dict[str, list[str]]) -> None:
        with self._lock:
            behaviour = self._script.popleft() if self._script else Accept()
        if isinstance(behaviour, Refuse):
            raise TwilioError(behaviour.code, behaviour.status, behaviour.message)
        fields = {name: values[-1] for name, values in form.items() if values and values[-1]}
        validate(fields)
        media = len(form.get("MediaUrl", []))
        resource = new_resource(self.account_sid, fields, media, self._now(), self.sent_on_create)
        callback = fields.get("StatusCallback")
        match behaviour:
            case Accept():
                self._store(resource, callback)
                handler.answer(201, resource)
            case ServerError(record=record, status=status):
                if record:
                    self._store(resource, callback)
                raise TwilioError(20500, status)
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

    def _store(self, resource: dict[str, Any], callback: str | None) -> None:
        self._messages.add(resource, callback)
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
