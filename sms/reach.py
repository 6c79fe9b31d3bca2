"""The one module that reaches into libraries' private parts, where they offer no public way.

Everything else in the package uses the libraries' public APIs. Each reach here names the
version it was written against, and ``tests/test_reach.py`` fails loudly, naming that
version, when an upgrade moves what it reaches for:

- google-cloud-firestore: a transaction begins, commits and rolls back through calls that
  take no ``retry=`` or ``timeout=`` (every other call does, and the repository passes
  both). Their generated defaults retry for up to 60 s, longer than any request may wait, so
  ``bound_transaction_calls`` makes them one try, timed out by the request's deadline.
  ``wrap_generated_calls`` is the same door, for the tests that count a request's calls.
- gunicorn: the hardened worker of ``sms.serving`` accepts connections with a socket of its
  own (``accept``), and answers what gunicorn refuses by itself in JSON (``write_error``).
  gunicorn offers worker classes, but no hook at either place. The lingering close of an
  answer given without reading its body (``sms.web.finish``) bounds its waits on the
  connection's socket, which gunicorn hands an application only as an undocumented key of
  the WSGI environment (``gunicorn.socket``).
"""

from __future__ import annotations

import errno
import functools
import socket
from collections.abc import Callable
from typing import Any

from sms import deadline

FIRESTORE_VERSION = "2.34.1"
GUNICORN_VERSION = "27.0.1"
# The generated calls a transaction makes that no public argument can bound.
TRANSACTION_CALLS = ("begin_transaction", "commit", "rollback")


def _generated(client: Any) -> tuple[Any, dict[Any, Any]]:
    """The client's transport and its table of generated (wrapped) methods."""
    transport = client._firestore_api._transport  # noqa: SLF001 no public hook for defaults
    return transport, transport._wrapped_methods  # noqa: SLF001


def wrap_generated_calls(
    client: Any,
    wrap: Callable[[str, Callable[..., Any]], Callable[..., Any]],
    names: tuple[str, ...] | None = None,
) -> None:
    """Replace the client's generated method ``name`` (all, or those named) by
    ``wrap(name, method)``: every call the client makes of it goes through the wrapper."""
    transport, methods = _generated(client)
    for stub, method in list(methods.items()):
        name = _name_of(transport, stub)
        if name is not None and (names is None or name in names):
            methods[stub] = wrap(name, method)


def _name_of(transport: Any, stub: Any) -> str | None:
    for name in dir(type(transport)):
        if not name.startswith("_") and isinstance(getattr(type(transport), name), property):
            try:
                if getattr(transport, name) is stub:
                    return name
            except Exception:  # noqa: S112 a property that cannot be read is not a stub
                continue
    return None


def bound_transaction_calls(client: Any, cap_seconds: float) -> None:
    """Make a transaction's own calls one try each, timed out by what remains of the
    request's deadline (at most ``cap_seconds``)."""

    def bounded(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs["retry"] = None
            kwargs["timeout"] = deadline.call_timeout(cap_seconds)
            return method(*args, **kwargs)

        return call

    wrap_generated_calls(client, bounded, TRANSACTION_CALLS)


def gunicorn_accept(
    worker: Any, listener: socket.socket, adopt: Callable[[socket.socket], socket.socket]
) -> None:
    """gunicorn's ThreadWorker.accept, with the accepted socket replaced by ``adopt(it)``."""
    from gunicorn.workers.gthread import TConn  # noqa: PLC0415 only the worker needs it

    try:
        client, address = listener.accept()
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
            raise
        return
    adopted = adopt(client)
    worker.nr_conns += 1
    adopted.setblocking(True)
    worker.enqueue_req(TConn(worker.cfg, adopted, address, listener.getsockname()))


def gunicorn_answer_errors_with(
    write_error: Callable[[socket.socket, int, str, str], None],
) -> None:
    """Make ``write_error(sock, status, reason, detail)`` what gunicorn answers its own
    refusals with (a malformed request, a header too large...), in this process."""
    from gunicorn import util  # noqa: PLC0415

    util.write_error = write_error


def gunicorn_client_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The socket of the connection a request came on, where gunicorn serves it over
    HTTP/1.x; None under another server, or over HTTP/2 (where one socket carries many
    requests, and no request may change it)."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        return None
    if not str(environ.get("SERVER_PROTOCOL", "")).startswith("HTTP/1."):
        return None
    return sock


def gunicorn_write(sock: socket.socket, data: bytes) -> None:
    """Write an answer as gunicorn writes its own error answers."""
    from gunicorn import util  # noqa: PLC0415

    util.write_nonblock(sock, data)
