"""The self-hosted serving path (python -m sms.serving) under hostile clients.

These talk to a real server over raw sockets: slow clients, huge and stalled bodies, and
requests so malformed that gunicorn answers them before the function runs.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import SEED_BODY, SMS_PATH, Tenant
from sms.devtools.emulator import free_port
from sms.devtools.server import Server, running

# The worker gives a stalled client 3 s; eight take every thread (threads = 4 x 2 CPUs) once.
ANSWER_WITHIN_SECONDS = 5


@pytest.fixture(scope="module")
def served(emulator_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serving") / "server.log"
    with open(log, "wb") as out, running(free_port(), dict(os.environ), out) as server:
        server.log_path = log  # type: ignore[attr-defined]
        yield server


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def raw(server: Server, data: bytes, wait: float = 10) -> bytes:
    """Send bytes as they are; what comes back before the server closes (or ``wait``)."""
    with socket.create_connection(address(server), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
        return answer


def status_and_json(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


def test_eight_stalled_connections_leave_a_normal_request_answered_within_seconds(
    served: Server, tenant: Tenant
) -> None:
    stalled = [socket.create_connection(address(served)) for _ in range(8)]
    try:
        for sock in stalled:
            sock.sendall(b"G")
        time.sleep(0.5)  # every thread of the worker is now waiting on one of them
        began = time.monotonic()
        answer = requests.post(
            served.url + SMS_PATH, json=SEED_BODY, headers=tenant.headers, timeout=30
        )
        took = time.monotonic() - began
    finally:
        for sock in stalled:
            sock.close()

    assert answer.status_code == 200, answer.text
    assert took < ANSWER_WITHIN_SECONDS, f"answered after {took:.1f} s"


def test_a_body_declared_too_large_is_refused_at_once_and_the_connection_closed(
    served: Server,
) -> None:
    began = time.monotonic()
    answer = raw(
        served,
        b"POST /apps/api/v1/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{",
    )
    took = time.monotonic() - began

    assert status_and_json(answer) == (413, {"message": "request body is too large"})
    assert b"connection: close" in answer.lower()
    assert took < 2, f"the 413 came after {took:.1f} s"  # not after the body, nor a timeout


def test_a_huge_upload_is_refused_without_being_read(served: Server) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(address(served), timeout=10) as sock:
        sock.sendall(
            b"POST /apps/api/v1/sms HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n\r\n"
        )
        sent = 0
        try:
            while sent < 400_000_000:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: it does not take the rest
        answer = sock.recv(4096)

    assert sent < 50_000_000, f"the server took {sent} bytes of a refused body"
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"GET /apps/api/v1/chats/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
        ),
        (
            b"POST /apps/api/v1/sms HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 5\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET /apps/api/v1/chats/1 HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ],
)
def test_what_gunicorn_answers_by_itself_is_json_too(
    served: Server, request_bytes: bytes, status: int
) -> None:
    answered, body = status_and_json(raw(served, request_bytes))

    assert answered == status
    assert set(body) == {"message"}


def test_a_request_after_the_hostile_ones_is_served(served: Server, tenant: Tenant) -> None:
    answer = requests.get(f"{served.url}/apps/api/v1/chats/1", headers=tenant.headers, timeout=30)

    assert answer.status_code == 404
    assert answer.json() == {"message": "Not Found"}


def test_the_server_log_has_no_html(served: Server) -> None:
    log = Path(served.log_path).read_text(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]

    assert "<html>" not in log
