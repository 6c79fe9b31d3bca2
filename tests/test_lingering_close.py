"""A body too large gets a 413 the client can read, from either way of serving the function.

The 413 comes as soon as the headers declare too large a body, while the client is still
sending it. A connection closed on a client that is still sending is reset, and the reset
often reaches it before it has read its answer ("Connection reset by peer"). The connection
is closed as web servers close it instead, with a lingering close (sms.web.discard_body, and
sms.serving's worker): these clients send such bodies slowly, in parts, and must all read
their 413, under plain functions-framework as under `python -m sms.serving`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest

from conftest import PROJECT, SMS_PATH
from sms.devtools.emulator import free_port, wait_until
from sms.devtools.server import listening, running

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 64 * 1024
TOO_LARGE = {"message": "request body is too large"}
ATTEMPTS = 50
PARTS = 8
PAUSE_SECONDS = 0.005  # between the headers and each part of the body
AT_ONCE = 5  # clients sending at the same time
READ_ANSWER = (413, json.dumps(TOO_LARGE))


@contextlib.contextmanager
def plain_functions_framework(port: int, env: dict[str, str], log: IO[bytes]) -> Iterator[str]:
    """`functions-framework --target=sms_api --source=main.py`, as it comes (its own worker)."""
    command = shutil.which("functions-framework", path=str(Path(sys.executable).parent))
    assert command is not None, "functions-framework is not installed next to this Python"
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [command, "--target=sms_api", "--source=main.py", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # gunicorn forks: the whole group is stopped afterwards
    )  # fmt: skip
    try:
        wait_until(lambda: listening(url), 30, "functions-framework", process)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module", params=["functions-framework", "sms.serving"])
def serving_url(
    request: pytest.FixtureRequest, emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The function on a loopback port, served one way or the other."""
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator_host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    log_path = tmp_path_factory.mktemp("lingering") / f"{request.param}.log"
    with open(log_path, "wb") as log:
        if request.param == "functions-framework":
            with plain_functions_framework(free_port(), env, log) as url:
                yield url
        else:
            with running(free_port(), env, log) as server:
                yield server.url


def read_answer(sock: socket.socket) -> tuple[int, str]:
    """The status and JSON body (as JSON text) of one answer, of the length it declares."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection ended before the answer's head: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in lines[1:])
    length = int({name.lower(): value for name, value in fields.items()}["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the connection ended in the answer's body: {data!r}"
        body += chunk
    return int(lines[0].split(" ")[1]), json.dumps(json.loads(body[:length]))


def send_slowly(url: str, size: int) -> tuple[int, str] | str:
    """One client: headers declaring ``size`` bytes, the body in PARTS parts with pauses, then
    its answer; what it read, or the reset (or broken pipe) it met instead."""
    host, port = url.removeprefix("http://").split(":")
    body = b" " * size
    step = -(-size // PARTS)
    head = (
        f"POST {SMS_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(head)
            for start in range(0, size, step):
                time.sleep(PAUSE_SECONDS)
                sock.sendall(body[start : start + step])
            return read_answer(sock)
    except (ConnectionResetError, BrokenPipeError) as exc:
        return type(exc).__name__


@pytest.mark.parametrize("size", [LIMIT + 1, 4 * LIMIT], ids=["64KiB+1", "256KiB"])
def test_a_body_too_large_sent_slowly_gets_its_413_read_every_time(
    serving_url: str, size: int
) -> None:
    with ThreadPoolExecutor(AT_ONCE) as clients:
        outcomes = Counter(clients.map(lambda _: send_slowly(serving_url, size), range(ATTEMPTS)))

    assert outcomes == Counter({READ_ANSWER: ATTEMPTS}), outcomes
