"""Serve the function with functions-framework, as Cloud Functions does, on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sms.devtools.emulator import wait_until

ROOT = Path(__file__).resolve().parents[2]


def answers(url: str) -> bool:
    """Whether an HTTP server answers at ``url`` (any status will do)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


@contextlib.contextmanager
def serving(port: int, env: dict[str, str], log: IO[bytes] | None = None) -> Iterator[str]:
    """Run `functions-framework --target=sms_api` until the block ends; yields its URL.

    The server runs in its own process group (gunicorn has workers), killed as a whole.
    ``log`` takes its output; by default it shares this process's.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "functions_framework", "--target=sms_api", "--source=main.py",
         "--host=127.0.0.1", f"--port={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(url + "/"), 30, "functions-framework", process)
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
