"""Cloud Function entry point: `functions-framework --target=sms_api`."""

import flask
import functions_framework
from werkzeug.exceptions import HTTPException

from sms import api


@functions_framework.http
def sms_api(request: flask.Request) -> flask.Response:
    """POST /apps/api/v1/sms: send an outbound SMS and open a session."""
    return api.handle(request)


@functions_framework.errorhandler(HTTPException)  # type: ignore[untyped-decorator]
def framework_error(error: HTTPException) -> flask.Response:
    """Answers the framework gives by itself (such as /favicon.ico) are JSON too."""
    return api.json_response(error.code or 500, {"message": error.name})
