"""The targets that are not the API: the sweeper (sms_sweeper, called by Cloud Scheduler) and
the event dispatcher (sms_events, a CloudEvent function fed by Pub/Sub).

Like the API, each answers through the wrapper of sms.web (its log line, a deadline, errors
mapped to JSON answers), so a Firestore outage during a sweep is a JSON 503 like any other.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

import flask

from sms import bootstrap, errors, logs, web
from sms.bootstrap import App
from sms.domain import SUBDOMAIN
from sms.events import model
from sms.sweeper import OUTCOMES, Swept

# A sweep stops taking new messages after its budget (sms.sweeper); this bounds the rest.
SWEEP_DEADLINE_SECONDS = 60.0
# The most events one announcement may name (a request's are a handful).
MAX_EVENTS = 500


def sweep_report(swept: Swept) -> dict[str, Any]:
    """What a sweep did, as the sweeper's answer and the admin command print it: ``counts``
    has every outcome (sms.sweeper.Settled: the status a message was settled at, or why it
    was not), each with how many messages had it."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for one in swept.settled:
        counts[one.outcome] += 1
    return {
        "counts": counts,
        "settled": [dataclasses.asdict(one) for one in swept.settled],
        "sessions_ended": [
            {"tenant": tenant, "chat_id": chat_id} for tenant, chat_id in swept.sessions_ended
        ],
        "events_announced": swept.events_announced,
    }


class Jobs:
    """The sms_sweeper and sms_events targets, on an app built by sms.bootstrap."""

    def __init__(self, app: App, sweep_deadline_seconds: float = SWEEP_DEADLINE_SECONDS) -> None:
        self._app = app
        self._sweep_deadline_seconds = sweep_deadline_seconds
        settings = app.settings
        self.entry = web.Entry(settings.project, settings.request_deadline_seconds, app.outbox)

    def sweep(self, request: flask.Request) -> flask.Response:
        """POST: one sweep, answered with what it settled."""
        return self.entry.answer(
            request, lambda: self._sweep(request), self._sweep_deadline_seconds
        )

    def _sweep(self, request: flask.Request) -> flask.Response:
        if request.method != "POST":
            raise errors.MethodNotAllowed(("POST",))
        report = sweep_report(self._app.sweeper.run())
        logs.note(
            outcome="swept",
            **report["counts"],
            sessions_ended=len(report["sessions_ended"]),
            events=report["events_announced"],
        )
        return web.json_response(200, report)

    def deliver(self, request: flask.Request, data: Any) -> flask.Response:
        """One delivery round of the events a Pub/Sub message names: 200 when nothing is left
        to retry, 503 (the transport delivers the message again later) otherwise."""
        return self.entry.answer(
            request, lambda: self._deliver(data), bootstrap.DISPATCH_DEADLINE_SECONDS
        )

    def _deliver(self, data: Any) -> flask.Response:
        announced = _announcement(data)
        if isinstance(announced, str):
            # Not something this service published: retrying it would not help.
            logs.event("ERROR", f"sms_events: ignored a message that names no events: {announced}")
            logs.note(outcome="ignored", error=announced)
            return web.json_response(200, {"ignored": announced})
        tenant, event_ids = announced
        done = self._app.dispatcher.deliver(tenant, event_ids)
        summary = dataclasses.asdict(done)
        if done.done:
            logs.note(outcome="delivered")
            return web.json_response(200, summary)
        logs.note(outcome="retry_later")
        return web.json_response(
            503, {"message": "Some deliveries failed: retried later", **summary}
        )


def _announcement(data: Any) -> tuple[str, list[str]] | str:
    """The tenant and event ids a Pub/Sub message (as a CloudEvent's data) names, or why it
    names none. Only names of the forms this service makes get through to Firestore."""
    message = data.get("message") if isinstance(data, dict) else None
    encoded = message.get("data") if isinstance(message, dict) else None
    if not isinstance(encoded, str):
        return "no Pub/Sub message data"
    try:
        announced = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return "message data is not base64 JSON"
    tenant = announced.get("tenant") if isinstance(announced, dict) else None
    ids = announced.get("events") if isinstance(announced, dict) else None
    if not isinstance(tenant, str) or not SUBDOMAIN.fullmatch(tenant):
        return "no tenant"
    if (
        not isinstance(ids, list)
        or not 0 < len(ids) <= MAX_EVENTS
        or not all(isinstance(i, str) and model.EVENT_ID.fullmatch(i) for i in ids)
    ):
        return "no event ids"
    return tenant, ids
