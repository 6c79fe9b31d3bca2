"""The endpoint's cost against its floor and a reference, measured in one run on the emulator.

    bash bench/run.sh [--rounds 5] [--requests 300] [--memory-requests 10000] [--guarded]

Starts its own Firestore emulator, configures the tenant "bench" (sms.devtools.seed: the
outbound number +16285550199, agent 1, no rate limit), and measures, every request opening a
session for a consumer that no other request names:

  floor      the endpoint's Firestore calls made with the client library in this process,
             one request after the other: bench/trivial.py's open_session, on the tenant;
  endpoint   functions-framework serving sms_api (main.py) with its default settings and
             the log carrier, at 1, 8 and 32 keep-alive connections;
  reference  functions-framework serving bench/trivial.py the same way: the same calls on
             documents no other request touches, at 1, 8 and 32 connections;
  cold start from spawning each server's process to its first 200, to a real request;
  memory     PSS and RSS of the endpoint's processes (gunicorn's arbiter and its worker,
             summed from /proc/<pid>/smaps_rollup) once it has answered --memory-requests;
  events     (SPEC 10.7) on the Pub/Sub emulator and a Firestore database of their own
             (see run_events), with the tenant's webhook endpoint at a receiver on loopback
             (bench/hooks.py) and sms_events served behind a push subscription (retried
             after 1 to 2 s, as in the tests): sms_api served twice,
             publishing events (PUBSUB_EMULATOR_HOST set) and publishing none, at 1
             connection: its CPU time per request, and from each answer of the first to the
             first delivery of its session's events (matched by chat id), against the
             emulator alone pushing to the receiver at the same pace; then the second's
             sessions (two events each, stored and never announced) announced to sms_events
             as fast as the client library publishes, one announcement a session, against
             the same pushed to sms_events directly, 8 at once, and the emulator pushing as
             many to the receiver.

Most of the endpoint's requests are sent first, at 32 connections, to warm the emulator's JIT
(its cost per call falls by half over the first few thousand); then come the cold starts,
then the rounds: each measures the floor and both servers at 1, 8 and 32 connections, in an
order turned around every other round; then the events' rounds (one unmeasured, then as many
as the others). The table shows the median of each measure over the rounds and the ratio of
the medians (but the time to the first delivery: its percentiles are over every round's
requests together), beside the CPU time per request of the server, the emulator and this
process (the load generator), which say where the time went. The machine is shared and
noisy: compare the rows of one run with each other.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import itertools
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from google.cloud import firestore  # noqa: E402
from hooks import (  # noqa: E402
    PUSH_PATH,
    Announcer,
    Receiver,
    add_endpoint,
    push_body,
    stored,
    subscribe,
)
from trivial import open_session  # noqa: E402

from sms import phone  # noqa: E402
from sms.devtools.emulator import Emulator, free_port, wait_until  # noqa: E402
from sms.devtools.seed import DEMO_AGENT, TenantSeed  # noqa: E402
from sms.events.outbox import PUBLISH_SECONDS  # noqa: E402
from sms.events.pubsub import PubSubTransport  # noqa: E402

PROJECT = "demo-sms-bench"
TENANT = "bench"
SMS_PATH = "/apps/api/v1/sms"
ENDPOINT = ("main.py", "sms_api", SMS_PATH)
REFERENCE = ("bench/trivial.py", "trivial", "/")
LEVELS = (1, 8, 32)
# Settings of the function, the carrier and the server left at their defaults.
# PUBSUB_EMULATOR_HOST too: without it, the function publishes no events (sms.config).
UNSET = ("SMS_", "TWILIO_", "THREADS", "WORKERS", "CLOUD_RUN_TIMEOUT", "GUNICORN_", "PUBSUB_")
AREA_CODES = ("415", "628", "212", "650", "646", "718", "917", "510", "408", "213", "310", "312")
FLOOR_CHAT_IDS = 10**12  # the floor's chats: far beyond the ids the endpoint hands out


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


# -- the run


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


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}"


def revision() -> str:
    """The commit measured, and whether the work tree differs from it."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"],  # noqa: S607 git from PATH
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def server_env(emulator: Emulator, work: Path) -> dict[str, str]:
    """The servers' environment: this one, without the function's and the server's settings
    (their defaults apply), on the emulator. Python keeps the bytecode it compiles (in the
    run's folder, not the work tree), as it does by default: every start after the first
    reads it instead of compiling the sources again, whatever PYTHONDONTWRITEBYTECODE says."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(UNSET)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        FIRESTORE_EMULATOR_HOST=emulator.host_port,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
    )
    return env


EVENTS_DATABASE = "bench-events"  # the events' measures' Firestore database
EVENTS_TOPIC = "bench-events"  # pushed to sms_events
PUSH_TOPIC = "bench-push"  # pushed to the receiver itself: the emulator alone
PUBLISH_TOPIC = "bench-publish"  # pushed nowhere: publications made in this process
EVENTS_WAIT_SECONDS = 60.0  # the longest any delivery or push is waited for
# Pushes sent to sms_events at once, directly: as many as its threads (4 per CPU, the default).
DIRECT_CONNECTIONS = 4 * (os.cpu_count() or 1)
# A request's announcement: its tenant and its two events (in this process, ids only).
REQUEST_EVENTS = {TENANT: [f"evt_{'0' * 32}", f"evt_{'1' * 32}"]}


def announcement(event_ids: list[str]) -> dict[str, object]:
    """What sms.events.pubsub publishes for a request's events."""
    return {"tenant": TENANT, "events": event_ids}


@dataclass
class EventStack:
    """What the events' measures run on."""

    db: firestore.Client  # on EVENTS_DATABASE
    pubsub: int  # the Pub/Sub emulator's process id
    receiver: Receiver
    on: Served  # sms_api publishing events
    off: Served  # sms_api publishing none
    dispatcher: Served  # sms_events
    announcer: Announcer
    transport: PubSubTransport  # sms.events.pubsub, publishing to PUBLISH_TOPIC


@dataclass
class Bench:
    args: argparse.Namespace
    env: dict[str, str]
    headers: dict[str, str]
    db: firestore.Client
    work: Path
    emulator: int  # its process id
    consumers: Consumers = field(default_factory=Consumers)
    rounds: Rounds = field(default_factory=Rounds)
    floor_chat_id: int = FLOOR_CHAT_IDS
    memory: dict[str, float] = field(default_factory=dict)
    first_delivery_ms: list[float] = field(default_factory=list)  # every measured request's
    push_ms: list[float] = field(default_factory=list)  # the emulator alone: publish to push
    undelivered: int = 0  # requests whose events did not arrive within EVENTS_WAIT_SECONDS
    seed: TenantSeed | None = None  # the tenant, to write into the events' database too
    missed_deliveries: int = 0  # announced events not delivered within twice that

    def bodies(self, count: int) -> list[bytes]:
        return [body(consumer) for consumer in self.consumers.take(count)]

    def cold_starts(self) -> None:
        """One start of each unmeasured (the page cache), then one of each per round."""
        for n in range(self.args.rounds + 1):
            order = (ENDPOINT, REFERENCE) if n % 2 else (REFERENCE, ENDPOINT)
            for kind in order:
                name = "endpoint" if kind is ENDPOINT else "reference"
                [data] = self.bodies(1)
                log_path = self.work / f"cold-{name}.log"
                listening, first_200 = cold_start(
                    kind, data, self.headers, self.env, log_path, guarded=self.args.guarded
                )
                if n:
                    self.rounds.add(f"{name} listening", listening * 1000)
                    self.rounds.add(f"{name} first request", (first_200 - listening) * 1000)
                    self.rounds.add(f"{name} first 200", first_200 * 1000)
            if n:
                log(
                    f"cold start {n}: endpoint "
                    f"{self.rounds.values['endpoint first 200'][-1]:.0f} ms, reference "
                    f"{self.rounds.values['reference first 200'][-1]:.0f} ms"
                )

    def floor(self, count: int) -> Load:
        first_chat_id, self.floor_chat_id = self.floor_chat_id, self.floor_chat_id + count
        return floor(self.db, self.consumers.take(count), first_chat_id, self.emulator)

    def load(self, server: Served, path: str, count: int, connections: int) -> Load:
        return drive(
            server, path, self.bodies(count), self.headers, connections, emulator=self.emulator
        )

    def warm_up(self, endpoint: Served, reference: Served) -> None:
        """Warm the emulator's JIT and both servers: the bulk of the endpoint's requests
        before its memory is read are sent here, so that the rounds run on a warm emulator."""
        a = self.args
        in_rounds = a.rounds * a.requests * len(LEVELS)
        count = max(a.warm_up, a.memory_requests - in_rounds)
        for name, server, path, n in (
            ("endpoint", endpoint, SMS_PATH, count),
            ("reference", reference, REFERENCE[2], a.warm_up),
        ):
            load = self.load(server, path, n, a.memory_connections)
            self.rounds.errors["warm-up"] = self.rounds.errors.get("warm-up", 0) + load.errors
            log(f"warm-up: {n} requests to the {name} in {load.seconds:.0f} s, {load.statuses}")
        self.floor(a.warm_up // 10)

    def one_round(self, n: int, endpoint: Served, reference: Served) -> None:
        """The floor and both servers at 1 connection, then both servers at 8 and at 32
        connections, the order turned around every other round."""
        count = self.args.requests
        r = self.rounds
        single = [
            ("floor", lambda: self.floor(count)),
            ("endpoint 1", lambda: self.load(endpoint, SMS_PATH, count, 1)),
            ("reference 1", lambda: self.load(reference, REFERENCE[2], count, 1)),
        ]
        for name, measure in single if n % 2 else single[::-1]:
            r.add_load(name, measure())
        pairs = [("endpoint", endpoint, SMS_PATH), ("reference", reference, REFERENCE[2])]
        for level in LEVELS[1:]:
            for name, server, path in pairs if n % 2 else pairs[::-1]:
                r.add_load(f"{name} {level}", self.load(server, path, count, level))
        last = {name: values[-1] for name, values in r.values.items()}
        log(
            f"round {n}: p50 at 1: floor {last['floor p50']:.1f} ms, endpoint "
            f"{last['endpoint 1 p50']:.1f} ms, reference {last['reference 1 p50']:.1f} ms; "
            f"req/s at 8: endpoint {last['endpoint 8 rate']:.0f},"
            f" reference {last['reference 8 rate']:.0f}; at 32: {last['endpoint 32 rate']:.0f}, "
            f"{last['reference 32 rate']:.0f} (load average {load_average()})"
        )

    def top_up(self, endpoint: Served) -> None:
        """Requests until the endpoint has answered --memory-requests."""
        left = self.args.memory_requests - endpoint.answered
        if left > 0:
            load = self.load(endpoint, SMS_PATH, left, self.args.memory_connections)
            self.rounds.errors["warm-up"] += load.errors
            log(f"{left} more requests to the endpoint in {load.seconds:.0f} s, {load.statuses}")

    def read_memory(self, endpoint: Served, reference: Served) -> None:
        pss, rss, processes = endpoint.memory_kib()
        self.memory.update(pss=pss, rss=rss, processes=processes, answered=endpoint.answered)
        pss, rss, _ = reference.memory_kib()
        self.memory.update(reference_pss=pss, reference_rss=rss)
        self.memory["reference answered"] = reference.answered

    def run(self) -> None:
        with (
            open(self.work / "endpoint.log", "wb") as endpoint_log,
            open(self.work / "reference.log", "wb") as reference_log,
        ):
            guarded = self.args.guarded
            endpoint = Served(ENDPOINT[0], ENDPOINT[1], self.env, endpoint_log, guarded)
            reference = Served(REFERENCE[0], REFERENCE[1], self.env, reference_log, guarded)
            try:
                endpoint.wait_ready()
                reference.wait_ready()
                self.warm_up(endpoint, reference)
                pss, _, _ = endpoint.memory_kib()
                self.memory.update(warm_pss=pss, warm_answered=endpoint.answered)
                self.cold_starts()
                for n in range(1, self.args.rounds + 1):
                    self.one_round(n, endpoint, reference)
                self.top_up(endpoint)
                self.read_memory(endpoint, reference)
            finally:
                endpoint.stop()
                reference.stop()
        self.run_events()

    # -- events (SPEC 10.7)

    def run_events(self) -> None:
        """The Pub/Sub emulator, a receiver, and the tenant's endpoint at it, in a database
        of their own; sms_events, and sms_api twice: publishing events (PUBSUB_EMULATOR_HOST
        set) and publishing none. One round unmeasured, then the rounds.

        The emulator answers a query by reading every document of the database, those
        deleted included (production Firestore reads an index), and sms_events queries the
        tenant's endpoints for each announcement: in the database the other measures filled,
        that query alone would cost it several times its CPU."""
        assert self.seed is not None
        db = firestore.Client(project=PROJECT, database=EVENTS_DATABASE)
        self.seed.write(db)
        pubsub = Emulator.start(log_path=self.work / "pubsub.log", kind="pubsub")
        receiver = Receiver.start()
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub.host_port  # the benchmark's own clients
        try:
            add_endpoint(db, TENANT, receiver.url + "/hooks")
            silent = {
                **self.env,
                "FIRESTORE_DATABASE": EVENTS_DATABASE,
                "SMS_EVENTS_TOPIC": EVENTS_TOPIC,
                "SMS_WEBHOOKS_ALLOW_HOSTS": "127.0.0.1",
            }
            publishing = {**silent, "PUBSUB_EMULATOR_HOST": pubsub.host_port}
            with contextlib.ExitStack() as stack:
                served = []
                for name, target, env in (
                    ("sms_events", "sms_events", publishing),
                    ("endpoint-events", "sms_api", publishing),
                    ("endpoint-no-events", "sms_api", silent),
                ):
                    out = stack.enter_context(open(self.work / f"{name}.log", "wb"))
                    server = Served("main.py", target, env, out, self.args.guarded)
                    stack.callback(server.stop)
                    served.append(server)
                for server in served:
                    server.wait_ready()
                dispatcher, on, off = served
                subscribe(PROJECT, EVENTS_TOPIC, f"http://127.0.0.1:{dispatcher.port}/")
                subscribe(PROJECT, PUSH_TOPIC, receiver.url + PUSH_PATH)
                announcer = Announcer(PROJECT)
                announcer.create_topic(PUBLISH_TOPIC)
                transport = PubSubTransport(PROJECT, PUBLISH_TOPIC)
                events = EventStack(
                    db, pubsub.process.pid, receiver, on, off, dispatcher, announcer, transport
                )
                for n in range(self.args.rounds + 1):
                    self.events_round(n, events)
        finally:
            del os.environ["PUBSUB_EMULATOR_HOST"]
            receiver.stop()
            pubsub.stop()

    def events_round(self, n: int, events: EventStack) -> None:
        """The endpoint publishing events and publishing none, at 1 connection, in an order
        turned around every other round; the emulator pushing to the receiver itself at the
        pace of the endpoint's answers; publications made here; then the second load's
        sessions announced to sms_events. Round 0, unmeasured, has half as many requests."""
        count = self.args.requests if n else max(self.args.requests // 2, 2)
        r = self.rounds if n else Rounds()
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
        silent: set[int] = set()
        pace = 0.0
        for publishing in (True, False) if n % 2 else (False, True):
            if publishing:
                pace = self.publishing_load(n, events, count, r)
            else:
                load, answers = self.events_load(events, events.off, count)
                r.add_load("no events", load)
                silent = set(answers)
        self.paced_pushes(n, events, max(count // 2, 1), pace)
        before = time.process_time()
        for _ in range(count):
            events.transport.publish(REQUEST_EVENTS, PUBLISH_SECONDS)
        r.add("publication cpu", (time.process_time() - before) * 1000 / count)
        self.deliveries(n, events, list(stored(events.db, TENANT, since, silent).values()), r)
        if not n:
            log(f"events warm-up: {count} requests publishing events, {count} not")
            return
        last = {name: values[-1] for name, values in r.values.items()}
        log(
            f"events round {n}: server CPU/request {last['events cpu server']:.2f} ms "
            f"publishing, {last['no events cpu server']:.2f} ms not; deliveries/s "
            f"{last['deliveries rate']:.0f} through the emulator, {last['direct rate']:.0f} "
            f"pushed directly; the emulator's pushes/s {last['pushes rate']:.0f} "
            f"(load average {load_average()})"
        )

    def events_load(
        self, events: EventStack, server: Served, count: int
    ) -> tuple[Load, dict[int, float]]:
        """``count`` requests at 1 connection; when each chat's answer came."""
        answers: dict[int, float] = {}

        def answered(text: bytes, at: float) -> None:
            answers[json.loads(text)["id"]] = at

        load = drive(
            server,
            SMS_PATH,
            self.bodies(count),
            self.headers,
            1,
            emulator=self.emulator,
            others={"sms_events": events.dispatcher.process.pid, "pubsub": events.pubsub},
            answered=answered,
        )
        return load, answers

    def publishing_load(self, n: int, events: EventStack, count: int, r: Rounds) -> float:
        """The endpoint publishing events, and every event delivered; the seconds between
        its answers."""
        mark, _ = events.receiver.marks()
        meter = Meter(self.emulator, events.dispatcher.process.pid, pubsub=events.pubsub)
        load, answers = self.events_load(events, events.on, count)
        r.add_load("events", load)
        # Each session's two events: chat.created and message.sent.
        events.receiver.wait_distinct(False, mark, 2 * len(answers), EVENTS_WAIT_SECONDS)
        for process, ms in meter.per_request_ms(count).items():
            r.add(f"events delivered cpu {process}", ms)
        first = events.receiver.first_by_chat(mark)
        if n:
            self.first_delivery_ms += [
                (first[chat] - at) * 1000 for chat, at in answers.items() if chat in first
            ]
            self.undelivered += sum(chat not in first for chat in answers)
        return load.seconds / count

    def paced_pushes(self, n: int, events: EventStack, count: int, pace: float) -> None:
        """The emulator alone: messages published one at a time, one every ``pace`` seconds,
        to the topic pushed to the receiver; from the end of each publication (a request
        answers once its own is done) to its push."""
        _, mark = events.receiver.marks()
        published: dict[str, float] = {}
        next_at = time.perf_counter()
        for _ in range(count):
            message_id = events.announcer.publish_one(PUSH_TOPIC, REQUEST_EVENTS)
            published[message_id] = time.perf_counter()
            next_at += pace
            time.sleep(max(0.0, next_at - time.perf_counter()))
        pushed = events.receiver.wait_distinct(True, mark, set(published), EVENTS_WAIT_SECONDS)
        if n:
            self.push_ms += [
                (pushed[key] - at) * 1000 for key, at in published.items() if key in pushed
            ]

    def deliveries(self, n: int, events: EventStack, sessions: list[list[str]], r: Rounds) -> None:
        """Every other session's events announced to sms_events's topic (one announcement
        a session, as its request would have made), as fast as the client library
        publishes, until the receiver has them all; the other sessions' pushed to sms_events
        directly, DIRECT_CONNECTIONS at once; and as many announcements published to the
        topic pushed to the receiver itself."""
        through, direct = sessions[::2], sessions[1::2]
        wanted = {event_id for ids in through for event_id in ids}
        mark, push_mark = events.receiver.marks()
        meter = Meter(self.emulator, events.dispatcher.process.pid, pubsub=events.pubsub)
        began = time.perf_counter()
        events.announcer.publish(EVENTS_TOPIC, [announcement(ids) for ids in through])
        got = events.receiver.wait_distinct(False, mark, wanted, EVENTS_WAIT_SECONDS)
        delivered = [at for key, at in got.items() if key in wanted]
        seconds = max(delivered, default=began) - began
        r.add("deliveries rate", len(delivered) / seconds if seconds else 0.0)
        r.add("deliveries announcements rate", len(through) / seconds if seconds else 0.0)
        for process, ms in meter.per_request_ms(max(len(delivered), 1)).items():
            r.add(f"deliveries cpu {process}", ms)
        if n:
            self.missed_deliveries += len(wanted) - len(delivered)

        bodies = [
            push_body(PROJECT, EVENTS_TOPIC, f"direct-{n}-{i}", announcement(ids))
            for i, ids in enumerate(direct)
        ]
        mark, _ = events.receiver.marks()
        load = drive(
            events.dispatcher,
            "/",
            bodies,
            {},
            DIRECT_CONNECTIONS,
            emulator=self.emulator,
            others={"pubsub": events.pubsub},
        )
        wanted = {event_id for ids in direct for event_id in ids}
        got = events.receiver.wait_distinct(False, mark, wanted, EVENTS_WAIT_SECONDS)
        delivered_directly = len(wanted & got.keys())
        r.add("direct rate", delivered_directly / load.seconds)
        r.add("direct announcements rate", load.rate)
        r.add("direct cpu server", load.cpu_ms["server"] * len(direct) / max(len(wanted), 1))
        r.errors["direct"] = r.errors.get("direct", 0) + load.errors
        if n:
            self.missed_deliveries += len(wanted) - delivered_directly

        began = time.perf_counter()
        events.announcer.publish(PUSH_TOPIC, [announcement(ids) for ids in through])
        pushed = events.receiver.wait_distinct(True, push_mark, len(through), EVENTS_WAIT_SECONDS)
        seconds = max(pushed.values(), default=began) - began
        r.add("pushes rate", len(pushed) / seconds if seconds else 0.0)


# -- the table


def mb(kib: float) -> float:
    """KiB to MB (10^6 bytes)."""
    return kib * 1024 / 1e6


def events_rows(bench: Bench, row: Callable[..., None], rows: list[tuple[str, ...]]) -> None:
    """The events' rows: the time to a request's first delivery against the emulator's own
    publish-to-push; the endpoint publishing events against publishing none; deliveries
    through the emulator against sms_events pushed directly, and the emulator's own pushes."""
    # fmt: off
    r, med = bench.rounds, bench.rounds.median
    delays, pushes, undelivered = bench.first_delivery_ms, bench.push_ms, bench.undelivered
    requests = len(delays) + undelivered
    if not delays or not pushes:  # nothing arrived: the log says why
        delays, pushes = delays or [math.inf], pushes or [math.inf]
    for p, name, limit in ((50, "1st delivery after the answer: p50 (vs push)", 200),
                           (95, f"  p95, of {requests} requests (SPEC 10.7: 2 s)", 2000)):
        value = percentile(delays, p)
        row(name, value, percentile(pushes, p), "ms", check=value,
            target=(f"<= {limit} ms", lambda x, u=undelivered, t=limit: x <= t and u == 0))
    row("  max", max(delays), max(pushes), "ms")
    rows.append(
        (f"  not delivered within {EVENTS_WAIT_SECONDS:.0f} s", str(undelivered), "", "", "0",
         "PASS" if undelivered == 0 else "MISS")
    )
    on, off = med("events cpu server"), med("no events cpu server")
    row("server CPU/request at 1: events (vs none)", on, off, "ms", digits=2)
    row("  the events' share (the difference)", on - off, None, "ms",
        target=("<= 1 ms", lambda x: x <= 1), check=on - off, digits=2)
    row("  a publication alone, in this process", med("publication cpu"), None, "ms", digits=2)
    row("  p50 at 1", med("events p50"), med("no events p50"), "ms")
    row("  p99 at 1", med("events p99"), med("no events p99"), "ms")
    row("  req/s at 1", med("events rate"), med("no events rate"), "/s")
    errors, silent_errors = r.errors["events"], r.errors["no events"]
    rows.append(
        ("  errors at 1 (all rounds)", str(errors), str(silent_errors), "", "0",
         "PASS" if errors == 0 else "MISS")
    )
    row("  CPU/req.: Firestore emulator, deliveries too", med("events cpu emulator"),
        med("no events cpu emulator"), "ms", digits=2)
    row("  CPU/req. to its deliveries: sms_events", med("events delivered cpu server"), None,
        "ms", digits=2)
    row("  the same: Pub/Sub emulator", med("events delivered cpu pubsub"), None, "ms", digits=2)
    row("deliveries/s, 1 sms_events (vs direct)", med("deliveries rate"), med("direct rate"),
        "/s")
    row("  announcements/s (vs the emulator's pushes)", med("deliveries announcements rate"),
        med("pushes rate"), "/s")
    row(f"  announcements/s pushed directly, {DIRECT_CONNECTIONS} at once",
        med("direct announcements rate"), None, "/s")
    row("  CPU/delivery: sms_events (vs direct)", med("deliveries cpu server"),
        med("direct cpu server"), "ms", digits=2)
    row("  CPU/delivery: Firestore emulator", med("deliveries cpu emulator"), None, "ms",
        digits=2)
    row("  CPU/delivery: Pub/Sub emulator", med("deliveries cpu pubsub"), None, "ms", digits=2)
    missed, direct_errors = bench.missed_deliveries, r.errors.get("direct", 0)
    rows.append(
        ("  not delivered; errors (all rounds)", f"{missed}; {direct_errors}", "", "", "0; 0",
         "PASS" if missed == direct_errors == 0 else "MISS")
    )
    # fmt: on


def table(bench: Bench) -> str:
    r, m = bench.rounds, bench.memory
    med = r.median
    rows: list[tuple[str, str, str, str, str, str]] = []

    def row(
        name: str,
        value: float,
        reference: float | None,
        unit: str,
        *,
        target: tuple[str, Callable[[float], bool]] | None = None,
        check: float | None = None,
        digits: int = 1,
    ) -> None:
        ratio = value / reference if reference else None
        verdict = ""
        if target is not None:
            judged = check if check is not None else ratio
            verdict = "PASS" if judged is not None and target[1](judged) else "MISS"
        rows.append(
            (
                name,
                f"{value:.{digits}f} {unit}",
                f"{reference:.{digits}f} {unit}" if reference is not None else "",
                f"{ratio:.2f}x" if ratio is not None else "",
                target[0] if target else "",
                verdict,
            )
        )

    def errors_row(level: int) -> None:
        endpoint, reference = r.errors[f"endpoint {level}"], r.errors[f"reference {level}"]
        rows.append(
            (f"  errors at {level} (all rounds)", str(endpoint), str(reference), "", "0",
             "PASS" if endpoint == 0 else "MISS")
        )  # fmt: skip

    row("p50 at 1 connection (vs floor)", med("endpoint 1 p50"), med("floor p50"), "ms",
        target=("<= 1.25x", lambda x: x <= 1.25))  # fmt: skip
    row("  p99 at 1", med("endpoint 1 p99"), med("floor p99"), "ms")
    row("  req/s at 1", med("endpoint 1 rate"), med("floor rate"), "/s")
    row("  CPU/request: server (floor: client)", med("endpoint 1 cpu server"),
        med("floor cpu client"), "ms")  # fmt: skip
    row("  CPU/request: emulator", med("endpoint 1 cpu emulator"), med("floor cpu emulator"), "ms")
    row("  the reference's p50 at 1 (vs floor)", med("reference 1 p50"), med("floor p50"), "ms")
    row("  the reference's CPU/request: server", med("reference 1 cpu server"),
        med("floor cpu client"), "ms")  # fmt: skip
    if r.errors["endpoint 1"] or r.errors["reference 1"]:
        errors_row(1)
    for level in LEVELS[1:]:
        errors = r.errors[f"endpoint {level}"]
        row(f"req/s at {level} connections (vs ref.)", med(f"endpoint {level} rate"),
            med(f"reference {level} rate"), "/s",
            target=(">= 0.90x, 0 errors", lambda x, e=errors: x >= 0.9 and e == 0))  # fmt: skip
        row(f"  p50 at {level}", med(f"endpoint {level} p50"), med(f"reference {level} p50"), "ms")
        row(f"  p99 at {level}", med(f"endpoint {level} p99"), med(f"reference {level} p99"), "ms")
        errors_row(level)
        for process in ("server", "emulator", "client"):
            row(f"  CPU/request: {process}", med(f"endpoint {level} cpu {process}"),
                med(f"reference {level} cpu {process}"), "ms")  # fmt: skip
    row("first 200 after spawn (vs ref.)", med("endpoint first 200"),
        med("reference first 200"), "ms", target=("<= 1.25x", lambda x: x <= 1.25),
        digits=0)  # fmt: skip
    row("  spawn to socket listening", med("endpoint listening"),
        med("reference listening"), "ms", digits=0)  # fmt: skip
    row("  then the first request", med("endpoint first request"),
        med("reference first request"), "ms", digits=0)  # fmt: skip
    answered, reference_answered = int(m["answered"]), int(m["reference answered"])
    row(f"PSS after {answered} requests (ref.: {reference_answered})", mb(m["pss"]),
        mb(m["reference_pss"]), "MB", target=("<= 100 MB", lambda x: x <= 100),
        check=mb(m["pss"]))  # fmt: skip
    row("  the same in MiB", m["pss"] / 1024, m["reference_pss"] / 1024, "MiB")
    row(f"RSS after {answered} requests", mb(m["rss"]), mb(m["reference_rss"]), "MB")
    row(f"  PSS after {int(m['warm_answered'])} requests", mb(m["warm_pss"]), None, "MB")
    rows.append(
        ("  errors, warm-up and top-up", str(r.errors["warm-up"]), "", "", "0",
         "PASS" if r.errors["warm-up"] == 0 else "MISS")
    )  # fmt: skip
    events_rows(bench, row, rows)

    header = ("measure", "endpoint", "reference", "ratio", "target", "result")
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                  for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip()
        for line in [header, *rows]
    ]  # fmt: skip
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every measure (5)")
    parser.add_argument(
        "--requests", type=int, default=300, help="requests per load and round, and per floor (300)"
    )
    parser.add_argument(
        "--memory-requests",
        type=int,
        default=10000,
        help="requests the endpoint has answered when its memory is read (10000)",
    )
    parser.add_argument(
        "--memory-connections", type=int, default=32, help="connections of the warm-up (32)"
    )
    parser.add_argument(
        "--warm-up", type=int, default=1000, help="requests to warm up each server, at least"
    )
    parser.add_argument(
        "--guarded",
        action="store_true",
        help="serve both functions with sms.serving's hardened worker, as the local run does",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    log(f"logs in {work}")
    emulator = Emulator.start(log_path=work / "emulator.log")
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
        db = firestore.Client(project=PROJECT)
        tenant = TenantSeed(id=TENANT, agents={1: dict(DEMO_AGENT)})
        tenant.write(db)
        basic = b64encode(f"{TENANT}:{tenant.token}".encode()).decode()
        headers = {"Authorization": f"Basic {basic}"}
        bench = Bench(args, server_env(emulator, work), headers, db, work, emulator.process.pid)
        bench.seed = tenant
        load_before = load_average()
        bench.run()
    finally:
        emulator.stop()
    print(
        f"\n{dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, revision {revision()}, "
        f"{machine()}, Python {platform.python_version()}, "
        f"{'sms.serving worker' if args.guarded else 'functions-framework'}; "
        f"load average {load_before} before, {load_average()} "
        f"after; {args.rounds} rounds of {args.requests} requests, medians; "
        f"{time.perf_counter() - started:.0f} s\n"
    )
    print(table(bench))
    return 0


if __name__ == "__main__":
    sys.exit(main())
