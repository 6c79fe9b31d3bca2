"""Serve the function on a loopback port: functions-framework's app and gunicorn settings,
with the hardened worker of sms.serving (as a self-hosted function should run)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sms.devtools.emulator import wait_until

ROOT = Path(__file__).resolve().parents[2]


def listening(url: str) -> bool:
    """Whether something accepts connections at ``url`` (an http://host:port).

    A connection, not a request: a probe request would be a line in the log a newcomer
    reads (GET / 404). The server binds its port once the function is loaded.
    """
    host, _, port = url.removeprefix("http://").partition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


class Server:
    """`python -m sms.serving --target=...` in a process group of its own (gunicorn forks)."""

    def __init__(
        self, port: int, env: dict[str, str], log: IO[bytes] | None = None, target: str = "sms_api"
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sms.serving", f"--target={target}",
             "--host=127.0.0.1", f"--port={port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            start_new_session=True,
        )  # fmt: skip

    def wait_ready(self) -> None:
        wait_until(lambda: listening(self.url), 30, "the function's server", self.process)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole group, as a crash or an instance shut down would end it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def running(
    port: int, env: dict[str, str], log: IO[bytes] | None = None, target: str = "sms_api"
) -> Iterator[Server]:
    """A served function until the block ends. ``log`` takes its output (default: this
    process's)."""
    server = Server(port, env, log, target)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serving(port: int, env: dict[str, str], log: IO[bytes] | None = None) -> Iterator[str]:
    """Serve the function (target sms_api) until the block ends; yields its URL."""
    with running(port, env, log) as server:
        yield server.url
