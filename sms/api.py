"""The sms_api target over HTTP: the route table, authentication, the tenants' API routes.

Routes are tried in order: 404 for a path none has, 405 for a method its route lacks, 413
for a body too large, then the handler. The tenants' routes sign the tenant in (HTTP Basic,
401) and count the request against its rate limit (429) before anything else; Twilio's
webhooks (sms.carrier_hooks) check Twilio's signature instead. Handlers translate: they
parse what the request says, call a use case, and render what it returns.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask

from sms import admission, credentials, deadline, errors, idempotency, logs, render, tenants, web
from sms.bootstrap import App
from sms.cache import TtlCache
from sms.carrier_hooks import CarrierHooks
from sms.domain import SUBDOMAIN, Claim, MessageRef, Tenant

SMS_PATH = "/apps/api/v1/sms"
_SMS = re.compile(re.escape(SMS_PATH))
# A chat id: a positive integer, of no more digits than a stored id can have (leading zeros
# aside: int() refuses thousands of digits).
_CHAT = re.compile(r"/apps/api/v1/chats/0*(?P<id>[1-9][0-9]{0,17})")
_TRANSCRIPT = re.compile(_CHAT.pattern + "/messages")
_EVENTS = re.compile(re.escape("/apps/api/v1/events"))
_CHATS = re.compile(re.escape("/apps/api/v1/chats"))

Handler = Callable[[flask.Request, "re.Match[str]", bytes], flask.Response]
TenantHandler = Callable[[flask.Request, "re.Match[str]", bytes, Tenant], flask.Response]


@dataclass(frozen=True)
class Route:
    """A path, and the handler of each method it has."""

    pattern: re.Pattern[str]
    methods: dict[str, Handler]


def _unauthorized(reason: str) -> errors.Unauthorized:
    """The one 401 for every cause; the cause goes in the log line only (SPEC 2, 10.4)."""
    logs.note(outcome="unauthorized", reason=reason)
    return errors.Unauthorized()


def _credentials(request: flask.Request) -> tuple[str, str]:
    header = request.headers.get("Authorization", "").strip()
    if not header:
        raise _unauthorized("missing Authorization")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized("malformed Authorization: not Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise _unauthorized("malformed Authorization: not base64 of UTF-8 text") from exc
    username, colon, password = decoded.partition(":")
    if not colon or not password:
        raise _unauthorized("malformed Authorization: no username:password")
    if not SUBDOMAIN.fullmatch(username):
        raise _unauthorized("malformed Authorization: the username is no tenant subdomain")
    return username, password


class Api:
    """The function's HTTP surface, on an app built by sms.bootstrap."""

    def __init__(self, app: App) -> None:
        settings = app.settings
        self._app = app
        self._deadline_seconds = settings.request_deadline_seconds
        self.entry = web.Entry(settings.project, self._deadline_seconds, app.outbox)
        # Who a credential lets in, as read: kept per instance for a few seconds (SPEC 7).
        self.signed_in: TtlCache[tuple[str, str], Tenant] = TtlCache(settings.config_cache_seconds)
        self.counter = admission.Counter(app.store.count_request)
        hooks = CarrierHooks(app.twilio_webhooks, app.delivery, app.replies)
        signed_in = self._signed_in_as
        self._routes = (
            Route(_SMS, {"POST": signed_in(self._send)}),
            Route(hooks.STATUS, {"POST": hooks.status_callback}),
            Route(hooks.INBOUND, {"POST": hooks.inbound}),
            Route(_CHAT, {"GET": signed_in(self._get_chat), "PATCH": signed_in(self._end_chat)}),
            Route(_TRANSCRIPT, {"GET": signed_in(self._transcript)}),
            Route(_EVENTS, {"GET": signed_in(self._events)}),
            Route(_CHATS, {"GET": signed_in(self._chats)}),
        )

    def handle(self, request: flask.Request) -> flask.Response:
        """Answer one request of the Cloud Function."""
        return self.entry.answer(request, lambda: self._route(request))

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
        return handler(request, match, web.read_body(request))

    def _signed_in_as(self, handler: TenantHandler) -> Handler:
        """A route of the tenants' API: HTTP Basic first (401), then the tenant's rate limit
        (429, before any other answer and any write), then the handler."""

        def run(request: flask.Request, match: re.Match[str], data: bytes) -> flask.Response:
            tenant = self._authenticate(request)
            with self.counter.admitting(tenant.id, tenant.rate_limit_per_second):
                try:
                    response = handler(request, match, data, tenant)
                except BaseException:
                    admission.check()  # over the limit: 429, whatever else went wrong
                    raise
                admission.check()
                return response

        return run

    def _authenticate(self, request: flask.Request) -> Tenant:
        username, password = _credentials(request)
        key = (username, credentials.hash_token(password))
        tenant = self.signed_in.get(key)
        reason: str | None = None
        if tenant is None:
            read_at = self.signed_in.now()
            tenant, reason = deadline.current(self._deadline_seconds).retry(
                lambda: self._sign_in(*key)
            )
            if tenant is not None:
                self.signed_in.put(key, tenant, read_at)
                tenants.report_problems(tenant)
        if tenant is None:
            # The name tried, as a path is logged: a token put in the username by mistake
            # is not logged.
            logs.note(claimed_tenant=logs.clean_path(username))
            raise _unauthorized(reason or "no tenant for this credential")
        logs.note(tenant=tenant.id)
        return tenant

    def _sign_in(self, tenant_id: str, token_sha256: str) -> tuple[Tenant | None, str | None]:
        """Who the credential signs in, or why no one (for the log only)."""
        found = self._app.store.sign_in(tenant_id, token_sha256)
        return found.tenant, found.reason

    # -- POST /apps/api/v1/sms

    def _send(
        self, request: flask.Request, _: re.Match[str], data: bytes, tenant: Tenant
    ) -> flask.Response:
        outbound = self._app.outbound
        key = idempotency.parse_key(request.headers.get("Idempotency-Key"))
        if key is None:
            return _chat_response(outbound.send(tenant, web.parse_json(data)))
        body: Any = None
        failure: errors.BadRequest | None = None
        try:
            body = web.parse_json(data)
            digest = idempotency.fingerprint(body)
        except errors.BadRequest as error:
            digest, failure = idempotency.raw_fingerprint(data), error

        def handle(claim: Claim) -> Any:
            if failure is not None:
                raise failure
            return outbound.send(tenant, body, claim)

        def resume(message: MessageRef, answer: Any) -> Any:
            return outbound.resume(tenant, message, answer)

        answer = self._app.keys.run(tenant.id, key, digest, handle, resume)
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        if answer.replayed:
            logs.note(outcome="replayed")
        if answer.body is not None:
            return web.text_response(answer.status, answer.body, headers)
        if answer.chat is not None:
            return web.json_response(answer.status, render.chat_document(answer.chat), headers)
        return web.json_response(answer.status, {"message": answer.error}, headers)

    # -- /apps/api/v1/chats/{id} and its messages

    def _get_chat(
        self, _: flask.Request, chat: re.Match[str], __: bytes, tenant: Tenant
    ) -> flask.Response:
        return _chat_response(self._app.chats.get(tenant, int(chat["id"])))

    def _end_chat(
        self, _: flask.Request, chat: re.Match[str], data: bytes, tenant: Tenant
    ) -> flask.Response:
        body = web.json_or_none(data)
        return _chat_response(self._app.chats.patch(tenant, int(chat["id"]), body))

    def _transcript(
        self, request: flask.Request, chat: re.Match[str], _: bytes, tenant: Tenant
    ) -> flask.Response:
        args = request.args
        page = self._app.chats.messages(
            tenant, int(chat["id"]), args.get("limit"), args.get("page_token")
        )
        return web.json_response(
            200,
            {
                "messages": [render.message_document(m) for m in page.items],
                "next_page_token": page.next_page_token,
            },
        )

    def _chats(
        self, request: flask.Request, _: re.Match[str], __: bytes, tenant: Tenant
    ) -> flask.Response:
        args = request.args
        page = self._app.chat_list.page(
            tenant,
            args.get("status"),
            args.get("end_user_number"),
            args.get("limit"),
            args.get("page_token"),
        )
        chats = [render.chat_document(chat) for chat in page.items]
        return web.json_response(200, {"chats": chats, "next_page_token": page.next_page_token})

    # -- /apps/api/v1/events

    def _events(
        self, request: flask.Request, _: re.Match[str], __: bytes, tenant: Tenant
    ) -> flask.Response:
        args = request.args
        page = self._app.events.page(
            tenant, args.get("since"), args.get("type"), args.get("limit"), args.get("page_token")
        )
        # Each event exactly as delivered: its recorded text, not a rendering of it.
        events = ", ".join(event.body for event in page.items)
        token = render.to_json(page.next_page_token)
        return web.text_response(200, f'{{"events": [{events}], "next_page_token": {token}}}')


def _chat_response(chat: Any) -> flask.Response:
    return web.json_response(200, render.chat_document(chat))
