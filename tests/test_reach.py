"""The private parts of libraries that sms/reach.py reaches for are still where it looks.

Each test names the library and the version the reach was written against, so that an
upgrade that moves one fails here, loudly, rather than somewhere deep in a request.
"""

from __future__ import annotations

import hashlib
import inspect
import socket
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import pytest
from google.cloud import firestore

from conftest import PROJECT
from sms import deadline, reach

# gunicorn's ThreadWorker.accept, as sms.reach.gunicorn_accept re-implements it.
ACCEPT_SOURCE_SHA256 = "f8dcead3dce5c8517c1d66740d7d1f4bd6d1f52af406483205121ac6c95e9458"


def moved(library: str, written_for: str, what: str) -> str:
    return (
        f"{library} {version(library)} (sms/reach.py was written for {written_for}): {what}; "
        "read the new version's source and update sms/reach.py"
    )


def test_the_installed_versions_are_the_ones_the_reaches_were_written_for() -> None:
    assert version("google-cloud-firestore") == reach.FIRESTORE_VERSION, moved(
        "google-cloud-firestore", reach.FIRESTORE_VERSION, "another version is installed"
    )
    assert version("gunicorn") == reach.GUNICORN_VERSION, moved(
        "gunicorn", reach.GUNICORN_VERSION, "another version is installed"
    )


def test_the_firestore_clients_generated_methods_are_found_by_name(emulator_host: str) -> None:
    client = firestore.Client(project=PROJECT)
    seen: list[str] = []

    def note(name: str, method: Any) -> Any:
        seen.append(name)
        return method

    reach.wrap_generated_calls(client, note)

    wanted = {"batch_get_documents", "run_query", *reach.TRANSACTION_CALLS}
    assert wanted <= set(seen), moved(
        "google-cloud-firestore",
        reach.FIRESTORE_VERSION,
        f"client._firestore_api._transport._wrapped_methods lacks {wanted - set(seen)}",
    )


def test_a_transactions_calls_are_bounded_by_the_requests_deadline(emulator_host: str) -> None:
    client = firestore.Client(project=PROJECT)
    timeouts: list[tuple[str, Any, Any]] = []

    def spy(name: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            timeouts.append((name, kwargs.get("timeout"), kwargs.get("retry", "default")))
            return method(*args, **kwargs)

        return call

    reach.wrap_generated_calls(client, spy, reach.TRANSACTION_CALLS)
    reach.bound_transaction_calls(client, cap_seconds=5.0)
    ref = client.collection("reach").document("transaction")

    with deadline.bounded(2.0):
        firestore.transactional(lambda t: t.set(ref, {"n": 1}))(client.transaction())

    names = [name for name, _, _ in timeouts]
    assert names == ["begin_transaction", "commit"], timeouts
    for name, timeout, retry in timeouts:
        assert retry is None, (name, retry)
        assert 0 < timeout <= 2.0, (name, timeout)


def test_gunicorns_accept_is_the_one_the_worker_re_implements() -> None:
    from gunicorn.workers.gthread import ThreadWorker  # noqa: PLC0415

    source = inspect.getsource(ThreadWorker.accept)
    assert hashlib.sha256(source.encode()).hexdigest() == ACCEPT_SOURCE_SHA256, moved(
        "gunicorn", reach.GUNICORN_VERSION, "ThreadWorker.accept changed:\n" + source
    )


@pytest.mark.parametrize(
    ("module", "name", "parameters"),
    [
        ("gunicorn.util", "write_error", ["sock", "status_int", "reason", "mesg"]),
        ("gunicorn.util", "write_nonblock", ["sock", "data", "chunked"]),
        ("gunicorn.workers.gthread", "TConn", ["self", "cfg", "sock", "client", "server"]),
    ],
)
def test_gunicorns_helpers_keep_their_signatures(
    module: str, name: str, parameters: list[str]
) -> None:
    found = getattr(__import__(module, fromlist=[name]), name, None)
    assert found is not None, moved("gunicorn", reach.GUNICORN_VERSION, f"{module}.{name} is gone")
    target = found.__init__ if inspect.isclass(found) else found
    assert list(inspect.signature(target).parameters) == parameters, moved(
        "gunicorn", reach.GUNICORN_VERSION, f"{module}.{name} takes other arguments"
    )


def test_gunicorns_wsgi_environment_carries_the_clients_socket() -> None:
    from gunicorn.config import Config  # noqa: PLC0415
    from gunicorn.http import wsgi  # noqa: PLC0415

    request = SimpleNamespace(body=None, method="POST", query="", uri="/", version=(1, 1))
    client, other = socket.socketpair()
    with client, other:
        environ = wsgi.default_environ(request, client, Config())

        assert reach.gunicorn_client_socket(environ) is client, moved(
            "gunicorn",
            reach.GUNICORN_VERSION,
            "the WSGI environment no longer carries the client's socket as gunicorn.socket",
        )
        over_http2 = {**environ, "SERVER_PROTOCOL": "HTTP/2"}
        assert reach.gunicorn_client_socket(over_http2) is None
    assert reach.gunicorn_client_socket({"wsgi.input": None}) is None  # another server
