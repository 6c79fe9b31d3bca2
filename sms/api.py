"""HTTP: routing, the size limit, authentication, JSON in and out, errors as {"message"}."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
import traceback
from typing import Any, Protocol

import flask

from sms import credentials, deadline, errors, idempotency, logs, render
from sms.config import settings
from sms.domain import MAX_ID, SUBDOMAIN, Claim, Tenant
from sms.errors import ApiError
from sms.idempotency import Idempotency, KeyStore
from sms.repository import FirestoreStore
from sms.service import ChatSessions, OutboundSms, Store, utc_now

SMS_PATH = "/apps/api/v1/sms"
# A chat id: a positive integer, of no more digits than a stored id can have.
_CHAT_PATH = re.compile(r"/apps/api/v1/chats/(?P<id>0*[1-9][0-9]{0,17})")
MAX_BODY_BYTES = 64 * 1024
_MAX_INT_DIGITS = 4000  # under Python's limit on converting digits to int
# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class ApiStore(Store, KeyStore, Protocol):
    def authenticate(self, tenant_id: str, token_sha256: str) -> Tenant | None: ...


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


def error_response(error: ApiError) -> flask.Response:
    return json_response(error.status, {"message": error.message}, error.headers())


def _read_body(request: flask.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    data = request.stream.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    return data


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


class Api:
    """The function's HTTP surface, handed the store it works on."""

    def __init__(
        self, store: ApiStore, deadline_seconds: float, project: str | None = None
    ) -> None:
        self._store = store
        self._project = project
        self._deadline_seconds = deadline_seconds
        self._sms = OutboundSms(store, deadline_seconds=deadline_seconds)
        self._chats = ChatSessions(store, deadline_seconds=deadline_seconds)
        self._keys = Idempotency(
            store,
            clock=utc_now,
            deadline_seconds=deadline_seconds,
            # A request writes nothing after its deadline (but for giving a claim up), so a
            # claim older than this belongs to one that died. Late writes could not harm
            # anyway: they are made on the condition that the claim is still the one read.
            lease=dt.timedelta(seconds=deadline_seconds + idempotency.RELEASE_SECONDS),
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
                outcome = "unavailable" if error.status == 503 else None
                logs.note(error=error.message, outcome=outcome)
                response = error_response(error)
            except errors.BackendUnavailable as exc:
                logs.note(outcome="unavailable", error=str(exc))
                response = error_response(errors.ServiceUnavailable())
            except Exception:
                stack_trace = traceback.format_exc()
                logs.note(outcome="error")
                response = json_response(500, {"message": "Internal Server Error"})
        line.write(response.status_code, stack_trace)
        return response

    def _route(self, request: flask.Request) -> flask.Response:
        path = request.path.rstrip("/") or "/"
        if path == SMS_PATH:
            self._allow(request, "POST")
            data = _read_body(request)
            return self._send(request, self._authenticate(request), data)
        chat = _CHAT_PATH.fullmatch(path)
        if chat is None:
            raise errors.NotFound()
        self._allow(request, "GET", "PATCH")
        data = _read_body(request)
        tenant = self._authenticate(request)
        chat_id = int(chat["id"])
        if request.method == "GET":
            return text_response(200, self._chats.get(tenant, chat_id))
        return text_response(200, self._chats.end(tenant, chat_id, _json_or_none(data)))

    @staticmethod
    def _allow(request: flask.Request, *methods: str) -> None:
        if request.method not in methods:
            raise errors.MethodNotAllowed(methods)

    def _send(self, request: flask.Request, tenant: Tenant, data: bytes) -> flask.Response:
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

        answer = self._keys.run(tenant.id, key, digest, handle)
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        if answer.replayed:
            logs.note(outcome="replayed")
        return text_response(answer.status, answer.body, headers)

    def _authenticate(self, request: flask.Request) -> Tenant:
        username, password = _credentials(request)
        tenant = deadline.current(self._deadline_seconds).retry(
            lambda: self._store.authenticate(username, credentials.hash_token(password))
        )
        if tenant is None:
            logs.note(outcome="unauthorized")
            raise errors.Unauthorized()
        logs.note(tenant=tenant.id)
        return tenant


@functools.cache
def default_api() -> Api:
    """The process's API on Firestore, built on first use: importing needs no credentials."""
    config = settings()
    store = FirestoreStore.from_settings(config)
    return Api(store, config.request_deadline_seconds, project=config.project)


def handle(request: flask.Request) -> flask.Response:
    """Answer one request of the Cloud Function."""
    return default_api().handle(request)
