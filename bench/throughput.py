"""Throughput, latency and memory of the function, served as in production, on the emulator.

    python bench/throughput.py [--requests 400] [--concurrency 1,4,8,16]

Starts its own Firestore emulator and functions-framework server, configures a tenant, and
for each concurrency sends requests from that many threads:
  - open:     a new session for a new consumer each time (the full write path);
  - busy:     one consumer who already has a session (error 17 after the reads);
  - invalid:  a body refused before Firestore is asked anything (validation only).
It prints requests per second and latency percentiles, and the server's resident memory.
The machine is shared and noisy: compare the rows of one run with each other, not with
another run's.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from base64 import b64encode
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from google.cloud import firestore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sms.devtools.emulator import Emulator, free_port
from sms.devtools.seed import DEMO_AGENT, TenantSeed
from sms.devtools.server import serving

PROJECT = "demo-sms-bench"
BODY = {
    "chat_type": "Messaging (SMS)",
    "end_user_number": "+1 415-555-0100",
    "outbound_number": "+1 628-555-0199",
    "message": "Your order has shipped.",
}
_numbers = itertools.count()


def new_consumer() -> str:
    n = next(_numbers)
    return f"+1415{200 + n // 10000:03d}{n % 10000:04d}"


def run(
    url: str, headers: dict[str, str], body: Callable[[], dict[str, Any]], total: int, threads: int
) -> tuple[float, list[float], dict[int, int]]:
    """Send ``total`` requests from ``threads`` threads; rate, latencies (ms), statuses."""
    local = threading.local()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(_: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        began = time.perf_counter()
        answer = session.post(url + "/apps/api/v1/sms", json=body(), headers=headers, timeout=30)
        elapsed = (time.perf_counter() - began) * 1000
        with lock:
            latencies.append(elapsed)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

    began = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(total)))
    return total / (time.perf_counter() - began), latencies, statuses


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def server_rss_mib() -> float:
    """Resident memory of the server's processes (gunicorn's arbiter and worker), in MiB."""
    total_kib = 0
    for process in Path("/proc").glob("[0-9]*"):
        try:
            if b"--target=sms_api" not in (process / "cmdline").read_bytes():
                continue
            status = (process / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per scenario and concurrency")
    parser.add_argument("--concurrency", default="1,4,8,16")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    work = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    emulator = Emulator.start(log_path=work / "emulator.log")
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
        tenant = TenantSeed(id="bench", agents={1: dict(DEMO_AGENT)})
        tenant.write(firestore.Client(project=PROJECT))
        env = {**os.environ, "GOOGLE_CLOUD_PROJECT": PROJECT}
        headers = {"Authorization": "Basic " + b64encode(f"bench:{tenant.token}".encode()).decode()}
        with open(work / "server.log", "wb") as log, serving(free_port(), env, log) as url:
            busy = {**BODY, "end_user_number": new_consumer()}
            requests.post(url + "/apps/api/v1/sms", json=busy, headers=headers, timeout=30)
            scenarios = {
                "open": lambda: {**BODY, "end_user_number": new_consumer()},
                "busy": lambda: busy,
                "invalid": lambda: {**BODY, "message": " "},
            }
            run(url, headers, scenarios["open"], 50, 4)  # warm up: connections, id blocks
            print(f"{'scenario':<9}{'threads':>8}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
                  f"{'p99 ms':>9}  statuses")  # fmt: skip
            for name, body in scenarios.items():
                for threads in levels:
                    rate, latencies, statuses = run(url, headers, body, args.requests, threads)
                    print(
                        f"{name:<9}{threads:>8}{rate:>9.1f}{statistics.median(latencies):>9.1f}"
                        f"{percentile(latencies, 95):>9.1f}{percentile(latencies, 99):>9.1f}"
                        f"  {dict(sorted(statuses.items()))}",
                        flush=True,
                    )
            print(f"server resident memory: {server_rss_mib():.0f} MiB")
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
