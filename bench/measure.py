"""What the benchmark measures with: consumers no request has named, servers in process
groups of their own, loads from keep-alive connections, the CPU time of processes, and the
rounds' values. bench.py runs them."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from google.cloud import firestore
from trivial import open_session

from sms import phone
from sms.devtools.emulator import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "demo-sms-bench"
TENANT = "bench"
SMS_PATH = "/apps/api/v1/sms"
AREA_CODES = ("415", "628", "212", "650", "646", "718", "917", "510", "408", "213", "310", "312")


# -- consumers


class Consumers:
    """Phone numbers no request has named yet: +1 (area) 555-XXXX, each judged valid."""

    def __init__(self) -> None:
        self._numbers = (
            number
            for area, line in itertools.product(AREA_CODES, range(10000))
            if (number := phone.judge(f"+1{area}555{line:04d}", {"US"}).e164) is not None
        )
        self._lock = threading.Lock()

    def take(self, count: int) -> list[str]:
        with self._lock:
            taken = list(itertools.islice(self._numbers, count))
        if len(taken) < count:
            raise RuntimeError("out of distinct phone numbers: add area codes")
        return taken


def body(consumer: str) -> bytes:
    return json.dumps(
        {
            "chat_type": "Messaging (SMS)",
            "end_user_number": consumer,
            "outbound_number": "+1 628-555-0199",
            "message": "Your order has shipped.",
            "agentId": 1,
        }
    ).encode()


# -- serving


class Served:
    """A function served in a process group of its own: `python -m functions_framework`, as
    Cloud Functions serves it, or with --guarded `python bench/serve.py`, as sms.serving
    serves the endpoint in the local run and the tests (its hardened gunicorn worker)."""

    def __init__(
        self, source: str, target: str, env: dict[str, str], log: IO[bytes], guarded: bool
    ) -> None:
        self.port = free_port()
        server = ["bench/serve.py"] if guarded else ["-m", "functions_framework"]
        self.process = subprocess.Popen(  # noqa: S603 the venv's python, our arguments
            [sys.executable, *server, f"--target={target}",
             f"--source={source}", "--host=127.0.0.1", f"--port={self.port}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.answered = 0  # requests sent to it (answered or failed)

    def wait_ready(self) -> None:
        def listening() -> bool:
            try:
                http.client.HTTPConnection("127.0.0.1", self.port, timeout=1).connect()
            except OSError:
                return False
            return True

        wait_until(listening, 60, f"functions-framework on port {self.port}", self.process)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                continue
            return

    def memory_kib(self) -> tuple[int, int, int]:
        """PSS and RSS (KiB) summed over the server's process tree, and how many processes."""
        pss = rss = 0
        pids = [self.process.pid, *descendants(self.process.pid)]
        for pid in pids:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name == "Pss":
                    pss += int(rest.split()[0])
                elif name == "Rss":
                    rss += int(rest.split()[0])
        return pss, rss, len(pids)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system, every thread) of a process and all its descendants."""
    total = 0
    for one in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total / TICKS


class Meter:
    """CPU time used by the server, the emulator and this process (the client) during a load,
    and by any other process named."""

    def __init__(self, emulator: int, server: int | None, **others: int) -> None:
        self._pids = {"emulator": emulator, "server": server, **others}
        self._before = self._read()

    def _read(self) -> dict[str, float]:
        read = {name: cpu_seconds(pid) for name, pid in self._pids.items() if pid is not None}
        read["client"] = time.process_time()
        return read

    def per_request_ms(self, count: int) -> dict[str, float]:
        after = self._read()
        return {name: (after[name] - self._before[name]) * 1000 / count for name in after}


# -- load


@dataclass
class Load:
    """What one run of requests measured."""

    seconds: float
    latencies_ms: list[float]
    errors: int
    statuses: dict[int | str, int] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per request, by process

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def drive(
    server: Served,
    path: str,
    bodies: list[bytes],
    headers: dict[str, str],
    connections: int,
    *,
    emulator: int,
    others: dict[str, int] | None = None,
    answered: Callable[[bytes, float], None] | None = None,
) -> Load:
    """POST every body, from ``connections`` threads with a keep-alive connection each; all
    start at once, and the run lasts until the last answer. ``answered`` is handed each 200's
    body and the time.perf_counter() at which it was read; ``others`` are more processes
    whose CPU time is measured (by name)."""
    headers = {**headers, "Content-Type": "application/json"}
    todo = iter(bodies)
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    start = threading.Barrier(connections + 1)

    def count(status: int | str, elapsed: float) -> None:
        with lock:
            latencies.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        with contextlib.suppress(OSError):  # else the first request connects, or fails
            connection.connect()
        start.wait()
        while True:
            with lock:
                data = next(todo, None)
            if data is None:
                break
            began = time.perf_counter()
            try:
                connection.request("POST", path, data, headers)
                answer = connection.getresponse()
                text = answer.read()
                status: int | str = answer.status
            except (OSError, http.client.HTTPException) as exc:
                text, status = b"", type(exc).__name__
                connection.close()
            ended = time.perf_counter()
            if answered is not None and status == 200:
                answered(text, ended)
            count(status, (ended - began) * 1000)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    meter = Meter(emulator, server.process.pid, **(others or {}))
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    cpu = meter.per_request_ms(len(bodies))
    server.answered += len(bodies)
    errors = sum(n for status, n in statuses.items() if status != 200)
    return Load(seconds, latencies, errors, statuses, cpu)


def floor(db: firestore.Client, consumers: list[str], first_chat_id: int, emulator: int) -> Load:
    """The endpoint's calls for each consumer, made here, one after the other."""
    tenant = db.collection("tenants").document(TENANT)
    carrier_ids = db.collection("carrier_ids")
    latencies = []
    meter = Meter(emulator, None)
    began = time.perf_counter()
    for n, consumer in enumerate(consumers):
        before = time.perf_counter()
        open_session(db, tenant, carrier_ids, consumer, first_chat_id + n)
        latencies.append((time.perf_counter() - before) * 1000)
    seconds = time.perf_counter() - began
    return Load(seconds, latencies, 0, {200: len(consumers)}, meter.per_request_ms(len(consumers)))


def cold_start(
    kind: tuple[str, str, str],
    data: bytes,
    headers: dict[str, str],
    env: dict[str, str],
    log: Path,
    *,
    guarded: bool,
) -> tuple[float, float]:
    """Seconds from spawning the server to its socket taking connections, and to the first
    200 answered to a real request (sent as soon as the socket takes a connection)."""
    source, target, path = kind
    headers = {**headers, "Content-Type": "application/json"}
    with open(log, "ab") as out:
        began = time.perf_counter()
        server = Served(source, target, env, out, guarded)
        try:
            while True:
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                try:
                    connection.connect()
                except OSError:
                    if server.process.poll() is not None:
                        raise RuntimeError(f"{target} exited: see {log}") from None
                    time.sleep(0.002)
                    continue
                listening = time.perf_counter() - began
                connection.request("POST", path, data, headers)
                answer = connection.getresponse()
                text = answer.read()
                first_200 = time.perf_counter() - began
                connection.close()
                if answer.status != 200:
                    raise RuntimeError(f"{target} answered {answer.status} first: {text!r}")
                return listening, first_200
        finally:
            server.stop()


@dataclass
class Rounds:
    """Every measure, one value per round."""

    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def add_load(self, name: str, load: Load) -> None:
        self.add(f"{name} rate", load.rate)
        self.add(f"{name} p50", load.percentile(50))
        self.add(f"{name} p99", load.percentile(99))
        for process, ms in load.cpu_ms.items():
            self.add(f"{name} cpu {process}", ms)
        self.errors[name] = self.errors.get(name, 0) + load.errors

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
