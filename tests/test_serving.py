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

# The worker gives a stalled client 3 s; eight take every thread once (THREADS, below).
ANSWER_WITHIN_SECONDS = 5
THREADS = 8

# A body left unread: refused for its size (413), or answered without being read at all.
UNREAD_BODIES = pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", SMS_PATH, 413),
        ("POST", "/apps/api/v1/nowhere", 404),
        ("PUT", SMS_PATH, 405),
        ("POST", "/favicon.ico", 404),  # answered by functions-framework itself
    ],
)


@pytest.fixture(scope="module")
def served(emulator_host: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("serving") / "server.log"
    env = {**os.environ, "THREADS": str(THREADS)}  # as many threads as the stalled clients
    with open(log, "wb") as out, running(free_port(), env, out) as server:
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


@UNREAD_BODIES
def test_a_stalled_body_is_answered_at_once_and_the_connection_closed(
    served: Server, method: str, path: str, status: int
) -> None:
    began = time.monotonic()
    answer = raw(
        served,
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{{".encode(),
    )
    took = time.monotonic() - began

    assert status_and_json(answer)[0] == status
    assert b"connection: close" in answer.lower()
    assert took < 2, f"the {status} came after {took:.1f} s"  # not after the body, nor a timeout


@UNREAD_BODIES
def test_a_huge_upload_is_answered_without_being_read(
    served: Server, method: str, path: str, status: int
) -> None:
    chunk = b"x" * 65536
    with socket.create_connection(address(served), timeout=10) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n\r\n".encode()
        )
        sent = 0
        try:
            while sent < 400_000_000:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: it does not take the rest
        answer = sock.recv(4096)

    assert sent < 50_000_000, f"the server took {sent} bytes of a body it did not need"
    assert answer.startswith(f"HTTP/1.1 {status}".encode())


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


def test_what_gunicorn_answers_by_itself_is_logged_without_numbers_or_credentials(
    served: Server,
) -> None:
    line = b"GET /apps/api/v1/sms/+14155550100/Basic dXNlcjpzM2NyZXQtdG9rZW4tMTIzNDU2Nzg5 HTTP/1.1"
    assert status_and_json(raw(served, line + b"\r\nHost: x\r\n\r\n"))[0] == 400
    time.sleep(0.5)  # the log line is written as the answer goes
    log = Path(served.log_path).read_text(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]

    assert "answered by the server before the function" in log
    assert "4155550100" not in log
    assert "dXNlcjpzM2NyZXQtdG9rZW4tMTIzNDU2Nzg5" not in log


def test_the_server_log_has_no_html(served: Server) -> None:
    log = Path(served.log_path).read_text(encoding="utf-8", errors="replace")  # type: ignore[attr-defined]

    assert "<html>" not in log
