"""The targets that are not the API: the sweeper (sms_sweeper, called by Cloud Scheduler).

Like the API, each answers through the wrapper of sms.web (its log line, a deadline, errors
mapped to JSON answers), so a Firestore outage during a sweep is a JSON 503 like any other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flask

from sms import errors, logs, web
from sms.bootstrap import App
from sms.sweeper import Settled

# A sweep stops taking new messages after its budget (sms.sweeper); this bounds the rest.
SWEEP_DEADLINE_SECONDS = 60.0


def sweep_report(settled: list[Settled]) -> dict[str, Any]:
    """What a sweep settled, as the sweeper's answer and the admin command print it."""
    counts = dict.fromkeys(("delivered", "failed", "pending", "taken"), 0)
    for one in settled:
        counts[one.outcome] += 1
    return {"counts": counts, "settled": [dataclasses.asdict(one) for one in settled]}


class Jobs:
    """The sms_sweeper target, on an app built by sms.bootstrap."""

    def __init__(self, app: App) -> None:
        self._app = app
        self.entry = web.Entry(app.settings.project, app.settings.request_deadline_seconds)

    def sweep(self, request: flask.Request) -> flask.Response:
        """POST: one sweep, answered with what it settled."""
        return self.entry.answer(request, lambda: self._sweep(request), SWEEP_DEADLINE_SECONDS)

    def _sweep(self, request: flask.Request) -> flask.Response:
        if request.method != "POST":
            raise errors.MethodNotAllowed(("POST",))
        report = sweep_report(self._app.sweeper.sweep())
        logs.note(outcome="swept", **report["counts"])
        return web.json_response(200, report)
