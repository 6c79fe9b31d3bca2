"""Start and stop the official Firestore and Pub/Sub emulators for local runs and tests.

An emulator runs in its own process group: ``gcloud`` starts a Java process, and stopping
``gcloud`` alone would leave Java running. ``stop`` kills the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_ready(host_port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host_port}/", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_until(
    ready: Callable[[], bool],
    seconds: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``ready`` until it says yes; fail early if ``process`` exits."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        if ready():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready after {seconds:.0f} s")


# How gcloud starts each emulator.
COMMANDS = {
    "firestore": ["gcloud", "emulators", "firestore", "start"],
    "pubsub": ["gcloud", "beta", "emulators", "pubsub", "start"],
}
NAMES = {"firestore": "the Firestore emulator", "pubsub": "the Pub/Sub emulator"}


@dataclass
class Emulator:
    host_port: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(
        cls,
        port: int | None = None,
        log_path: Path | None = None,
        seconds: float = 90,
        kind: str = "firestore",
    ) -> Emulator:
        """Start the emulator (``firestore`` or ``pubsub``) on loopback and wait until it
        answers."""
        host_port = f"127.0.0.1:{port or free_port()}"
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(
            [*COMMANDS[kind], f"--host-port={host_port}", "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        emulator = cls(host_port, process)
        try:
            wait_until(lambda: is_ready(host_port), seconds, NAMES[kind], process)
        except BaseException:
            emulator.stop()
            raise
        return emulator

    def reset(self, project: str) -> None:
        """Delete every document of the project's default database."""
        request = urllib.request.Request(
            f"http://{self.host_port}/emulator/v1/projects/{project}/databases/(default)/documents",
            method="DELETE",
        )
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        """Kill the emulator's whole process group (gcloud and its Java child)."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
