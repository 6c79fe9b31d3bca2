"""Serve the function as functions-framework does, with a worker hardened for self-hosting.

    python -m sms.serving [--target sms_api] [--host 0.0.0.0] [--port 8080]

Deployed, requests reach the function through Google's front end, which holds the clients'
connections itself. Served anywhere else (the local run, the tests, a host of your own),
gunicorn faces the clients directly, and functions-framework's gunicorn settings (one worker,
threads = 4 x CPUs, no timeout) let eight connections that send one byte and wait stop every
other request for as long as they stay open. This runs functions-framework's own app with
the same gunicorn settings, with one difference, its worker:

- a client socket gives up on a read or a write that waits longer than CLIENT_TIMEOUT_SECONDS
  (as if the client had gone), so a stalled client holds a thread for seconds, not forever;
- an answer that says `Connection: close` (a 413, or any answer given without reading the
  request's body) closes the connection, rather than reading the body it left unread before
  the connection could be used again (gunicorn drops the header otherwise). It closes as web
  servers do, with a lingering close, in the request's thread: once the answer is written,
  the sending side is shut down (the client sees the end of the answer at once), what the
  client still sends is read and dropped (``sms.web.discard_body``: at most
  ``web.LINGER_BYTES``, and no read waits past ``web.LINGER_SECONDS``), then the connection
  is closed, without gunicorn lingering on it again;
- what gunicorn answers by itself (a malformed request, a header over 8190 bytes, both
  Transfer-Encoding and Content-Length) is JSON like every other answer, not an HTML page.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import functions_framework
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

from sms import logs, reach, web

ROOT = Path(__file__).resolve().parents[1]
CLIENT_TIMEOUT_SECONDS = 3.0


class _PatientSocket(socket.socket):
    """A client socket that waits for the client at most CLIENT_TIMEOUT_SECONDS at a time.

    gunicorn makes its sockets blocking (``setblocking(True)``, no timeout) before it reads a
    request; here that means blocking with a timeout. A client that makes a read or a write
    wait longer is treated as a client that has gone.

    While the connection lingers (``linger``) no read waits past the lingering's end, however
    the client trickles; once it is over (``lingered``), a read fails at once, so gunicorn's
    own graceful close closes the connection rather than lingering on it again.
    """

    _linger_until: float | None = None  # while lingering, and after: when reads stop

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(CLIENT_TIMEOUT_SECONDS)
        else:
            super().setblocking(False)

    def linger(self, seconds: float) -> None:
        """Begin a lingering close: shut down the sending side, and stop reading in
        ``seconds``."""
        self._linger_until = time.monotonic() + seconds
        with contextlib.suppress(OSError):  # a client already gone: nothing to linger for
            self.shutdown(socket.SHUT_WR)

    def lingered(self) -> None:
        """End a lingering close: what is left is not read (the connection is to be closed)."""
        self._linger_until = 0.0

    def _before_read(self) -> None:
        if self._linger_until is None:
            return
        left = self._linger_until - time.monotonic()
        if left <= 0:
            raise ConnectionResetError(errno.ECONNRESET, "lingered long enough")
        timeout = self.gettimeout()
        if timeout is None or timeout > left:
            self.settimeout(left)

    def recv(self, *args: Any) -> bytes:
        self._before_read()
        try:
            return super().recv(*args)
        except TimeoutError as exc:
            raise ConnectionResetError(errno.ECONNRESET, "client too slow") from exc

    def recv_into(self, *args: Any) -> int:
        self._before_read()
        try:
            return super().recv_into(*args)
        except TimeoutError as exc:
            raise ConnectionResetError(errno.ECONNRESET, "client too slow") from exc

    def sendall(self, *args: Any) -> None:
        try:
            super().sendall(*args)
        except TimeoutError as exc:
            raise ConnectionResetError(errno.ECONNRESET, "client too slow") from exc


def _json_error(sock: socket.socket, status: int, reason: str, detail: str) -> None:
    """What gunicorn answers by itself, as the JSON every other answer is."""
    body = json.dumps({"message": reason}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nCache-Control: no-store\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    logs.event(
        "WARNING" if status < 500 else "ERROR",
        f"{status} {reason}, answered by the server before the function: "
        + logs.clean_path(detail),
        httpRequest={"status": status},
        outcome="rejected",
    )
    reach.gunicorn_write(sock, head + body)


def _patient(client: socket.socket) -> socket.socket:
    return _PatientSocket(client.family, client.type, client.proto, client.detach())


class GuardedWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker, as functions-framework runs it, hardened (see above)."""

    def init_process(self) -> None:
        reach.gunicorn_answer_errors_with(_json_error)  # this worker's own error answers
        super().init_process()

    def accept(self, listener: socket.socket) -> None:
        reach.gunicorn_accept(self, listener, _patient)

    wsgi: Any

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = _close_when_asked(self.wsgi)


def _close_when_asked(app: Any) -> Any:
    """An answer with `Connection: close` left the body unread: close the connection (a
    lingering close, see the module's doc) rather than keep it."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        asked = False

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            nonlocal asked
            if any(
                name.lower() == "connection" and value.lower() == "close" for name, value in headers
            ):
                asked = True
                response = getattr(start_response, "__self__", None)  # gunicorn's Response
                if response is not None and hasattr(response, "force_close"):
                    response.force_close()
            return start_response(status, headers, *exc_info)

        answer = app(environ, start)
        sock = reach.gunicorn_client_socket(environ)
        if asked and isinstance(sock, _PatientSocket):
            return _LingeringClose(answer, sock)
        return answer

    return wsgi


class _LingeringClose:
    """An answer's body, whose closing (once gunicorn has written it) closes the connection
    as web servers do: the sending side shut down, what the client still sends read and
    dropped by the app's own closing (``sms.web.discard_body``) for web.LINGER_SECONDS at
    most, and no lingering after that."""

    def __init__(self, answer: Iterable[bytes], sock: _PatientSocket) -> None:
        self._answer = answer
        self._sock = sock

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._answer)

    def close(self) -> None:
        self._sock.linger(web.LINGER_SECONDS)
        try:
            close = getattr(self._answer, "close", None)
            if close is not None:
                close()
        finally:
            self._sock.lingered()


class _Application(BaseApplication):  # type: ignore[misc]
    """gunicorn serving one WSGI app with functions-framework's settings and this worker.

    The settings are those functions-framework's own gunicorn application uses (one worker,
    THREADS threads, 4 per CPU by default, no timeout, any request line length).
    """

    def __init__(self, app: Any, host: str, port: int) -> None:
        self._app = app
        self._options = {
            "bind": f"{host}:{port}",
            "workers": int(os.environ.get("WORKERS", "1")),
            "threads": int(os.environ.get("THREADS", str((os.cpu_count() or 1) * 4))),
            "loglevel": os.environ.get("GUNICORN_LOG_LEVEL", "error"),
            "limit_request_line": 0,
            "timeout": 0,
            "worker_class": "sms.serving.GuardedWorker",
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=os.environ.get("FUNCTION_TARGET", "sms_api"))
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    app = functions_framework.create_app(  # type: ignore[no-untyped-call]
        target=args.target, source=str(ROOT / "main.py")
    )
    _Application(app, args.host, args.port).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
