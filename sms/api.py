"""HTTP: routing, the size limit, authentication, JSON in and out, errors as {"message"}."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import functools
import json
import re
import traceback
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import flask
import phonenumbers

from sms import (
    admission,
    carriers,
    credentials,
    deadline,
    errors,
    idempotency,
    logs,
    phone,
    render,
    tenants,
)
from sms.cache import TtlCache
from sms.carriers import Carrier
from sms.carriers.log import LogCarrier
from sms.carriers.twilio import TwilioWebhooks, incoming_sms
from sms.config import Settings, settings
from sms.delivery import Delivery, MessageStore
from sms.domain import MAX_ID, SUBDOMAIN, Claim, MessageRef, Tenant
from sms.errors import ApiError
from sms.idempotency import Idempotency, KeyStore
from sms.replies import Replies, Reply, ReplyStore
from sms.repository import FirestoreStore
from sms.service import ChatSessions, OutboundSms, utc_now
from sms.sweeper import Settled, Sweeper

SMS_PATH = "/apps/api/v1/sms"
_SMS = re.compile(re.escape(SMS_PATH))
_STATUS_CALLBACK = re.compile(re.escape(SMS_PATH + "/status"))
_INBOUND = re.compile(re.escape(SMS_PATH + "/inbound"))
EMPTY_TWIML = "<Response/>"
# A chat id: a positive integer, of no more digits than a stored id can have.
_CHAT = re.compile(r"/apps/api/v1/chats/(?P<id>0*[1-9][0-9]{0,17})")
_TRANSCRIPT = re.compile(_CHAT.pattern + "/messages")
MAX_BODY_BYTES = 64 * 1024
_MAX_INT_DIGITS = 4000  # under Python's limit on converting digits to int
# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class ApiStore(ReplyStore, KeyStore, MessageStore, Protocol):
    def authenticate(self, tenant_id: str, token_sha256: str) -> Tenant | None: ...

    def count_request(self, tenant_id: str) -> int: ...


def json_response(
    status: int, payload: Any, headers: dict[str, str] | None = None
) -> flask.Response:
    """A JSON answer; keys keep the order they were built in."""
    return text_response(status, render.to_json(payload), headers)


def text_response(status: int, body: str, headers: dict[str, str] | None = None) -> flask.Response:
    """An answer whose JSON text is already made."""
    response = flask.Response(body, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def no_content() -> flask.Response:
    """204: no body, so no Content-Type either."""
    response = flask.Response(status=204)
    del response.headers["Content-Type"]
    response.headers["Cache-Control"] = "no-store"
    return response


def error_response(error: ApiError) -> flask.Response:
    response = json_response(error.status, {"message": error.message}, error.headers())
    if isinstance(error, errors.PayloadTooLarge):
        response.headers["Connection"] = "close"  # the body was refused unread
    return response


def _read_body(request: flask.Request) -> bytes:
    """The body, of at most MAX_BODY_BYTES; 413 as soon as it is known to be longer.

    A body declared too long is not read at all. Whatever is not read here is not read
    later either: functions-framework reads the whole request after the function has
    answered (and into memory), unless the request says its data is read already.
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        request._cached_data = b""  # noqa: SLF001 werkzeug's cache of get_data()
        raise errors.PayloadTooLarge()
    data = request.stream.read(MAX_BODY_BYTES + 1)
    request._cached_data = data  # noqa: SLF001
    if len(data) > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    return data


def leave_body_unread(request: flask.Request, response: flask.Response) -> None:
    """A body no handler read (a 404, a 405, an answer of the framework's own) is never read.

    functions-framework would otherwise read it whole, into memory, once the function has
    answered, and a client that declared a large body and stalled would get no answer. The
    connection is closed instead, since its unread bytes cannot be taken for a next request.
    """
    if getattr(request, "_cached_data", None) is not None:
        return
    request._cached_data = b""  # noqa: SLF001 werkzeug's cache of get_data()
    if request.content_length or "Transfer-Encoding" in request.headers:
        response.headers["Connection"] = "close"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int:
    """A JSON integer. Python refuses to convert thousands of digits (and doing so would be
    slow); such a number stands for what it is to this API: an integer beyond any id."""
    if len(text.lstrip("-")) <= _MAX_INT_DIGITS:
        return int(text)
    return -(MAX_ID + 1) if text.startswith("-") else MAX_ID + 1


def parse_json(data: bytes) -> Any:
    """The body as JSON whatever its Content-Type; anything that is not JSON is rule 1."""
    try:
        # Decoded strictly: bytes that are not text in the detected encoding (a UTF-8 encoded
        # surrogate, say) are refused here rather than stored as text Firestore cannot hold.
        text = data.decode(json.detect_encoding(data))
        body = json.loads(text, parse_constant=_reject_constant, parse_int=_integer)
        if _SURROGATE_ESCAPE.search(text):
            # A lone surrogate cannot be stored or sent: such a text is not valid Unicode.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise errors.BadRequest(errors.BODY_NOT_OBJECT) from exc
    return body


def _json_or_none(data: bytes) -> Any:
    """The body as JSON, or None where it is not (the caller then refuses it its own way)."""
    try:
        return parse_json(data)
    except errors.BadRequest:
        return None


def _credentials(request: flask.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise errors.Unauthorized()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise errors.Unauthorized() from exc
    username, colon, password = decoded.partition(":")
    if not colon or not password or not SUBDOMAIN.fullmatch(username):
        raise errors.Unauthorized()
    return username, password


Handler = Callable[[flask.Request, "re.Match[str]", bytes], flask.Response]
TenantHandler = Callable[[flask.Request, "re.Match[str]", bytes, Tenant], flask.Response]


@dataclass(frozen=True)
class Route:
    """A path, and the handler of each method it has."""

    pattern: re.Pattern[str]
    methods: dict[str, Handler]


class Api:
    """The function's HTTP surface, handed the store, the carrier and the webhooks' checker."""

    def __init__(
        self,
        store: ApiStore,
        deadline_seconds: float,
        project: str | None = None,
        *,
        carrier: Carrier | None = None,
        webhooks: TwilioWebhooks | None = None,
        sweep_after_seconds: float = 60.0,
        config_cache_seconds: float = 0.0,
    ) -> None:
        self._store = store
        # Who a credential lets in, as read: kept per instance for a few seconds (SPEC 7).
        self._signed_in: TtlCache[tuple[str, str], Tenant] = TtlCache(config_cache_seconds)
        self._project = project
        self._deadline_seconds = deadline_seconds
        self._webhooks = webhooks or TwilioWebhooks(None, None)
        # A request writes nothing after its deadline (but for giving a claim up), so a claim
        # older than this belongs to one that died. Late writes could not harm anyway: they
        # are made on the condition that the claim is still the one read.
        lease = dt.timedelta(seconds=deadline_seconds + idempotency.RELEASE_SECONDS)
        self._delivery = Delivery(
            store,
            carrier or LogCarrier(),
            utc_now,
            deadline_seconds=deadline_seconds,
            grace_seconds=sweep_after_seconds,
        )
        self._sms = OutboundSms(
            store, self._delivery, deadline_seconds=deadline_seconds, lease=lease
        )
        self._chats = ChatSessions(store, deadline_seconds=deadline_seconds)
        self._replies = Replies(store, deadline_seconds=deadline_seconds)
        self._keys = Idempotency(
            store, clock=utc_now, deadline_seconds=deadline_seconds, lease=lease
        )
        self._counter = admission.Counter(store.count_request)
        signed_in = self._signed_in_as
        self._routes = (
            Route(_SMS, {"POST": signed_in(self._send)}),
            Route(_STATUS_CALLBACK, {"POST": self._status_callback}),
            Route(_INBOUND, {"POST": self._inbound}),
            Route(_CHAT, {"GET": signed_in(self._get_chat), "PATCH": signed_in(self._end_chat)}),
            Route(_TRANSCRIPT, {"GET": signed_in(self._transcript)}),
        )

    def handle(self, request: flask.Request) -> flask.Response:
        headers = request.headers
        trace = logs.trace_fields(
            self._project, headers.get("X-Cloud-Trace-Context"), headers.get("traceparent")
        )
        stack_trace = None
        with logs.RequestLine(request.method, request.path, trace) as line:
            try:
                with deadline.bounded(self._deadline_seconds):
                    response = self._route(request)
            except ApiError as error:
                logs.note(error=error.message, outcome=error.outcome)
                response = error_response(error)
            except errors.BackendUnavailable as exc:
                logs.note(outcome="unavailable", error=str(exc))
                response = error_response(errors.ServiceUnavailable())
            except Exception:
                stack_trace = traceback.format_exc()
                logs.note(outcome="error")
                response = json_response(500, {"message": "Internal Server Error"})
        leave_body_unread(request, response)
        line.write(response.status_code, stack_trace)
        return response

    def _route(self, request: flask.Request) -> flask.Response:
        """404, 405 and 413 in that order, then the handler (which authenticates first)."""
        path = request.path.rstrip("/") or "/"
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is not None:
                break
        else:
            raise errors.NotFound()
        handler = route.methods.get(request.method)
        if handler is None:
            raise errors.MethodNotAllowed(tuple(route.methods))
        return handler(request, match, _read_body(request))

    def _signed_in_as(self, handler: TenantHandler) -> Handler:
        """A route of the tenants' API: HTTP Basic first (401), then the tenant's rate limit
        (429, before any other answer and any write), then the handler."""

        def run(request: flask.Request, match: re.Match[str], data: bytes) -> flask.Response:
            tenant = self._authenticate(request)
            with self._counter.admitting(tenant.id, tenant.rate_limit_per_second):
                try:
                    response = handler(request, match, data, tenant)
                except BaseException:
                    admission.check()  # over the limit: 429, whatever else went wrong
                    raise
                admission.check()
                return response

        return run

    # -- POST /apps/api/v1/sms

    def _send(
        self, request: flask.Request, _: re.Match[str], data: bytes, tenant: Tenant
    ) -> flask.Response:
        key = idempotency.parse_key(request.headers.get("Idempotency-Key"))
        if key is None:
            return text_response(200, self._sms.send(tenant, parse_json(data)))
        body: Any = None
        failure: errors.BadRequest | None = None
        try:
            body = parse_json(data)
            digest = idempotency.fingerprint(body)
        except errors.BadRequest as error:
            digest, failure = idempotency.raw_fingerprint(data), error

        def handle(claim: Claim) -> str:
            if failure is not None:
                raise failure
            return self._sms.send(tenant, body, claim)

        def resume(message: MessageRef, answer: str) -> str:
            return self._sms.resume(tenant, message, answer)

        answer = self._keys.run(tenant.id, key, digest, handle, resume)
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        if answer.replayed:
            logs.note(outcome="replayed")
        return text_response(answer.status, answer.body, headers)

    # -- /apps/api/v1/chats/{id} and its messages

    def _get_chat(
        self, _: flask.Request, chat: re.Match[str], __: bytes, tenant: Tenant
    ) -> flask.Response:
        return text_response(200, self._chats.get(tenant, int(chat["id"])))

    def _end_chat(
        self, _: flask.Request, chat: re.Match[str], data: bytes, tenant: Tenant
    ) -> flask.Response:
        return text_response(200, self._chats.end(tenant, int(chat["id"]), _json_or_none(data)))

    def _transcript(
        self, request: flask.Request, chat: re.Match[str], _: bytes, tenant: Tenant
    ) -> flask.Response:
        args = request.args
        page = self._chats.messages(
            tenant, int(chat["id"]), args.get("limit"), args.get("page_token")
        )
        return text_response(200, page)

    # -- Twilio's webhooks

    def _status_callback(
        self, request: flask.Request, _: re.Match[str], data: bytes
    ) -> flask.Response:
        params = self._signed_form(request, data)
        report = TwilioWebhooks.status_report(params)
        logs.note(carrier_id=report.carrier_id, carrier_status=report.status)
        if report.status is None:
            logs.note(outcome="status_ignored")
        else:
            done = self._delivery.report(report.carrier_id, report.status, report.error_code)
            logs.note(outcome=f"status_{done}")
        return no_content()

    def _inbound(self, request: flask.Request, _: re.Match[str], data: bytes) -> flask.Response:
        incoming = incoming_sms(self._signed_form(request, data))
        to_number = phone.judge(incoming.to_number, phonenumbers.SUPPORTED_REGIONS).e164
        if to_number is None:
            raise errors.NotFound()  # no tenant can own what is not a phone number
        from_number = phone.judge(incoming.from_number, phonenumbers.SUPPORTED_REGIONS).e164
        if from_number is None:
            raise errors.BadRequest(errors.FROM_INVALID)
        logs.note(end_user_number=logs.mask(from_number), outbound_number=logs.mask(to_number))
        reply = Reply(incoming.carrier_id, from_number, to_number, incoming.text)
        logs.note(outcome=f"reply_{self._replies.receive(reply)}")
        response = flask.Response(EMPTY_TWIML, status=200, mimetype="text/xml")
        response.headers["Cache-Control"] = "no-store"
        return response

    def _signed_form(self, request: flask.Request, data: bytes) -> dict[str, list[str]]:
        """The form Twilio posted, if Twilio signed it (403 otherwise: nothing changes)."""
        try:
            pairs = urllib.parse.parse_qsl(
                data.decode("utf-8"), keep_blank_values=True, strict_parsing=False
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise errors.Forbidden() from exc
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        query = request.query_string.decode("latin-1")
        signature = request.headers.get("X-Twilio-Signature")
        if not self._webhooks.signed(request.path, query, params, signature):
            if not self._webhooks.configured:
                logs.note(error="webhooks need TWILIO_AUTH_TOKEN and SMS_PUBLIC_BASE_URL")
            logs.note(outcome="forbidden")
            raise errors.Forbidden()
        return params

    def _authenticate(self, request: flask.Request) -> Tenant:
        username, password = _credentials(request)
        key = (username, credentials.hash_token(password))
        tenant = self._signed_in.get(key)
        if tenant is None:
            read_at = self._signed_in.now()
            tenant = deadline.current(self._deadline_seconds).retry(
                lambda: self._store.authenticate(*key)
            )
            if tenant is not None:
                self._signed_in.put(key, tenant, read_at)
                tenants.report_problems(tenant)
        if tenant is None:
            logs.note(outcome="unauthorized")
            raise errors.Unauthorized()
        logs.note(tenant=tenant.id)
        return tenant


@functools.cache
def _store_and_carrier() -> tuple[FirestoreStore, Carrier]:
    """The process's store and carrier, made once, on first use."""
    config = settings()
    return FirestoreStore.from_settings(config), carriers.from_settings(config)


@functools.cache
def default_api() -> Api:
    """The process's API on Firestore, built on first use: importing needs no credentials."""
    config = settings()
    store, carrier = _store_and_carrier()
    return Api(
        store,
        config.request_deadline_seconds,
        project=config.project,
        carrier=carrier,
        webhooks=TwilioWebhooks.from_settings(config),
        sweep_after_seconds=config.sweep_after_seconds,
        config_cache_seconds=config.config_cache_seconds,
    )


def handle(request: flask.Request) -> flask.Response:
    """Answer one request of the Cloud Function."""
    try:
        api = default_api()
    except ValueError as exc:
        response = _misconfigured(exc)
        leave_body_unread(request, response)
        return response
    return api.handle(request)


def framework_answer(status: int, name: str) -> flask.Response:
    """An answer functions-framework gives by itself (/favicon.ico, /robots.txt, a path it
    cannot route): JSON like every other, and logged like every other."""
    request = flask.request
    with logs.RequestLine(request.method, request.path, {}) as line:
        logs.note(outcome="rejected", error=name)
        response = json_response(status, {"message": name})
    leave_body_unread(request, response)
    line.write(response.status_code)
    return response


def _misconfigured(exc: ValueError) -> flask.Response:
    """A setting the function cannot work with: the operator reads why, the client a 500."""
    logs.event("ERROR", f"the function cannot start: {exc}")
    return json_response(500, {"message": "Internal Server Error"})


def build_sweeper(config: Settings, store: FirestoreStore, carrier: Carrier) -> Sweeper:
    delivery = Delivery(
        store,
        carrier,
        utc_now,
        deadline_seconds=config.request_deadline_seconds,
        grace_seconds=config.sweep_after_seconds,
    )
    return Sweeper(
        store,
        delivery,
        utc_now,
        grace_seconds=config.sweep_after_seconds,
        deadline_seconds=config.request_deadline_seconds,
    )


def sweep_report(settled: list[Settled]) -> dict[str, Any]:
    """What a sweep settled, as the sweeper's answer and the admin command print it."""
    counts = dict.fromkeys(("delivered", "failed", "pending", "taken"), 0)
    for one in settled:
        counts[one.outcome] += 1
    return {"counts": counts, "settled": [dataclasses.asdict(one) for one in settled]}


def handle_sweep(request: flask.Request) -> flask.Response:
    """The sms_sweeper target: one sweep, answered with what it settled (POST only)."""
    with logs.RequestLine(request.method, request.path, {}) as line:
        if request.method != "POST":
            response = error_response(errors.MethodNotAllowed(("POST",)))
        else:
            try:
                config = settings()
                sweeper = build_sweeper(config, *_store_and_carrier())
            except ValueError as exc:
                return _misconfigured(exc)
            report = sweep_report(sweeper.sweep())
            logs.note(outcome="swept", **report["counts"])
            response = json_response(200, report)
    leave_body_unread(request, response)
    line.write(response.status_code)
    return response
