"""What every HTTP entry point shares: one wrapper around its work, bodies, JSON in and out.

``Entry.answer`` is the wrapper: the request's log line (SPEC 10.4), a deadline for its
work, and the mapping of the package's errors to answers, the same for the API, Twilio's
webhooks, the sweeper and the event dispatcher. An ``ApiError`` is answered as it says; a
``Transient`` failure that reached it is a JSON 503 with Retry-After; anything else is a bug,
answered 500 and logged with its traceback.

A body is read only by a handler that needs it, and at most MAX_BODY_BYTES of it. A body left
unread (a 413, a 404, a 405, an answer of the framework's own) is never read into memory:
the answer is handed over as a stream, which functions-framework does not wait on (it reads
the whole body into memory before other answers), and asks for the connection to be closed,
since its unread bytes cannot be taken for a next request. Once the server has sent the
answer, what the client still sends of that body is read and discarded, at most LINGER_BYTES
for at most LINGER_SECONDS (a lingering close, as web servers close): a client that is still
sending when its answer is ready gets to finish and read the answer, rather than a reset
that often comes before it has read it.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

import flask

from sms import deadline, errors, logs, reach, render
from sms.domain import MAX_ID
from sms.errors import ApiError
from sms.events.outbox import Outbox

MAX_BODY_BYTES = 64 * 1024
_MAX_INT_DIGITS = 4000  # under Python's limit on converting digits to int
# A JSON escape of a UTF-16 surrogate: only then can a parsed string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Set in a request's WSGI environment once its whole body has been read.
_BODY_READ = "sms.body_read"
# The bounds of a lingering close (see the module's doc). In 2 s (gunicorn's own bound for
# its graceful close) a client finishes a body of a few times MAX_BODY_BYTES even over a slow
# link (some 240 KiB at 1 Mbit/s); 1 MiB cuts off within milliseconds a fast client that
# sends far more (a 400 MB upload). Nothing is kept: each part read is dropped at once.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
_LINGER_READ_BYTES = 16 * 1024


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
    return json_response(error.status, {"message": error.message}, error.headers())


def read_body(request: flask.Request) -> bytes:
    """The body, of at most MAX_BODY_BYTES; 413 as soon as it is known to be longer.

    A body declared too long is not read at all.
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    data = request.stream.read(MAX_BODY_BYTES + 1)
    if len(data) > MAX_BODY_BYTES:
        raise errors.PayloadTooLarge()
    request.environ[_BODY_READ] = True
    return data


def finish(request: flask.Request, response: flask.Response) -> None:
    """Hand an answer over so that a body nobody read is never read into memory, and is read
    and dropped, within bounds, once the answer is sent (see the module's doc)."""
    if request.environ.get(_BODY_READ):
        return
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if not has_body:
        return
    response.headers["Connection"] = "close"
    data = response.get_data()
    response.response = iter((data,))  # a stream: functions-framework leaves the body be
    response.headers["Content-Length"] = str(len(data))
    stream, environ = request.stream, request.environ
    # Run by the server once it has written the answer (it closes the answer's iterable).
    response.call_on_close(lambda: discard_body(stream, environ))


def discard_body(stream: IO[bytes], environ: dict[str, Any]) -> None:
    """Read what the client still sends of a body nobody read, and drop it: at most
    LINGER_BYTES, for at most LINGER_SECONDS. Served by gunicorn, whose client sockets wait
    forever, each wait on the connection is cut to what is left of LINGER_SECONDS (only a
    client that trickles its body keeps it reading; the hardened worker of sms.serving
    bounds the whole of it).

    However the body ends (complete, cut off, a broken chunk, a client gone), what follows
    is the server's: it closes the connection or, where the body was read to its end, may
    keep it.
    """
    sock = reach.gunicorn_client_socket(environ)
    timeout = sock.gettimeout() if sock is not None else None
    ends = time.monotonic() + LINGER_SECONDS
    left = LINGER_BYTES
    try:
        while left > 0:
            wait = ends - time.monotonic()
            if wait <= 0:
                return
            if sock is not None:
                sock.settimeout(wait)
            data = stream.read(min(_LINGER_READ_BYTES, left))
            if not data:
                return
            left -= len(data)
    except Exception:  # noqa: S110 whatever the client did to its body, it is dropped
        pass
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)


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


def json_or_none(data: bytes) -> Any:
    """The body as JSON, or None where it is not (the caller then refuses it its own way)."""
    try:
        return parse_json(data)
    except errors.BadRequest:
        return None


class Entry:
    """The wrapper every entry point answers through (see the module's doc)."""

    def __init__(self, project: str | None, deadline_seconds: float, outbox: Outbox) -> None:
        self._project = project
        self._deadline_seconds = deadline_seconds
        self._outbox = outbox

    def answer(
        self,
        request: flask.Request,
        work: Callable[[], flask.Response],
        deadline_seconds: float | None = None,
    ) -> flask.Response:
        """Run ``work`` under the request's log line and deadline; its answer, or the answer
        its failure calls for."""
        headers = request.headers
        trace = logs.trace_fields(
            self._project, headers.get("X-Cloud-Trace-Context"), headers.get("traceparent")
        )
        stack_trace = None
        # What the work commits is announced once, when it is done (sms.events.outbox), and
        # before the line is written, so that the line tells whether it was.
        with (
            logs.RequestLine(request.method, request.path, trace) as line,
            self._outbox.collecting(),
        ):
            try:
                with deadline.bounded(deadline_seconds or self._deadline_seconds):
                    response = work()
            except ApiError as error:
                logs.note(error=error.message, outcome=error.outcome)
                response = error_response(error)
            except errors.Transient as exc:
                logs.note(outcome="unavailable", error=str(exc))
                response = error_response(errors.ServiceUnavailable())
            except Exception:
                stack_trace = traceback.format_exc()
                logs.note(outcome="error")
                response = json_response(500, {"message": "Internal Server Error"})
        finish(request, response)
        line.write(response.status_code, stack_trace)
        return response


def framework_answer(status: int, name: str) -> flask.Response:
    """An answer functions-framework gives by itself (/favicon.ico, /robots.txt, a path it
    cannot route): JSON like every other, and logged like every other."""
    request = flask.request
    with logs.RequestLine(request.method, request.path, {}) as line:
        logs.note(outcome="rejected", error=name)
        response = json_response(status, {"message": name})
    finish(request, response)
    line.write(response.status_code)
    return response
