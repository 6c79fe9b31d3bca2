"""Twilio's webhooks over HTTP: status callbacks (SPEC 10.3) and incoming messages (10.5).

Each is accepted only with Twilio's signature over the URL it was sent to and its form
(403 otherwise, and nothing changes); then the form is read and handed to its use case:
status reports to the delivery, replies to the replies.
"""

from __future__ import annotations

import re
import urllib.parse

import flask

from sms import errors, logs, web
from sms.carriers.twilio import TwilioWebhooks, incoming_sms
from sms.delivery import Delivery
from sms.replies import Replies, Reply

EMPTY_TWIML = "<Response/>"


def _loggable(url: str) -> str:
    """A URL checked for a signature, as it may be logged: the base is the configuration's,
    the query the caller's (bounded, numbers masked, credentials removed)."""
    base, mark, query = url.partition("?")
    return base + mark + logs.clean_path(query) if mark else base


class CarrierHooks:
    """The handlers of Twilio's two webhooks."""

    STATUS = re.compile(re.escape("/apps/api/v1/sms/status"))
    INBOUND = re.compile(re.escape("/apps/api/v1/sms/inbound"))

    def __init__(self, webhooks: TwilioWebhooks, delivery: Delivery, replies: Replies) -> None:
        self._webhooks = webhooks
        self._delivery = delivery
        self._replies = replies

    def status_callback(
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
        return web.no_content()

    def inbound(self, request: flask.Request, _: re.Match[str], data: bytes) -> flask.Response:
        incoming = incoming_sms(self._signed_form(request, data))
        reply = Reply(incoming.carrier_id, incoming.from_number, incoming.to_number, incoming.text)
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
            logs.note(outcome="forbidden", reason="the form is not UTF-8 text")
            raise errors.Forbidden() from exc
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        query = request.query_string.decode("latin-1")
        signature = request.headers.get("X-Twilio-Signature")
        check = self._webhooks.check(request.path, query, params, signature)
        if not check.signed:
            # Why, in the log only (the answer is the same 403 whatever the cause): the
            # URLs the signature was checked against, their query as it may be logged.
            urls = [_loggable(url) for url in check.urls]
            logs.note(outcome="forbidden", reason=check.reason, checked_urls=urls or None)
            raise errors.Forbidden()
        return params
