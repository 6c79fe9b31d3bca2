"""Cloud Function entry points: `functions-framework --target=sms_api` (the API and Twilio's
webhooks), `--target=sms_sweeper` (settles unsettled sends; called by Cloud Scheduler) and
`--target=sms_events` (delivers events to webhooks; fed by Pub/Sub)."""

import functools
import gc

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import HTTPException

from sms import bootstrap, web
from sms.api import Api
from sms.jobs import Jobs

# A setting the function cannot serve with stops it here, before it serves anything.
bootstrap.settings_or_exit()


@functools.cache
def _api() -> Api:
    return Api(bootstrap.app())


@functools.cache
def _jobs() -> Jobs:
    return Jobs(bootstrap.app())


@functions_framework.http
def sms_api(request: flask.Request) -> flask.Response:
    """POST /apps/api/v1/sms: send an outbound SMS and open a session; and the rest."""
    return _api().handle(request)


@functions_framework.http
def sms_sweeper(request: flask.Request) -> flask.Response:
    """POST: settle the messages crashed or timed-out senders left unsettled."""
    return _jobs().sweep(request)


@functions_framework.cloud_event
def sms_events(event: CloudEvent) -> None:
    """A Pub/Sub message naming events: deliver them; a failure answers 5xx, to be retried."""
    response = _jobs().deliver(flask.request, event.data)
    if response.status_code >= 300:
        flask.abort(response)


@functions_framework.errorhandler(HTTPException)  # type: ignore[untyped-decorator]
def framework_error(error: HTTPException) -> flask.Response:
    """Answers the framework gives by itself (such as /favicon.ico) are JSON too, and logged."""
    return web.framework_answer(error.code or 500, error.name)


# gunicorn forks its worker from the process that imported this module. What is imported by
# now lives as long as the process: keeping it out of the garbage collector's reach keeps the
# worker from touching (and so copying) those shared pages.
gc.freeze()
