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
             (bench/event_measures.py), with the tenant's webhook endpoint at a receiver
             on loopback (bench/hooks.py) and sms_events served behind a push subscription
             (retried after 1 to 2 s, as in the tests): sms_api served twice,
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
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from event_measures import EventMeasures  # noqa: E402
from google.cloud import firestore  # noqa: E402
from measure import (  # noqa: E402
    PROJECT,
    SMS_PATH,
    TENANT,
    Consumers,
    Load,
    Rounds,
    Served,
    body,
    cold_start,
    drive,
    floor,
    load_average,
    log,
)
from table import LEVELS, table  # noqa: E402

from sms.devtools.emulator import Emulator  # noqa: E402
from sms.devtools.seed import DEMO_AGENT, TenantSeed  # noqa: E402

ENDPOINT = ("main.py", "sms_api", SMS_PATH)
REFERENCE = ("bench/trivial.py", "trivial", "/")
# Settings of the function, the carrier and the server left at their defaults.
# PUBSUB_EMULATOR_HOST too: without it, the function publishes no events (sms.config).
UNSET = ("SMS_", "TWILIO_", "THREADS", "WORKERS", "CLOUD_RUN_TIMEOUT", "GUNICORN_", "PUBSUB_")
FLOOR_CHAT_IDS = 10**12  # the floor's chats: far beyond the ids the endpoint hands out


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
    seed: TenantSeed | None = None  # the tenant, to write into the events' database too
    events: EventMeasures | None = None  # the events' measures, once they have run

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
        assert self.seed is not None
        self.events = EventMeasures(
            self.args, self.env, self.headers, self.work, self.emulator, self.seed, self.bodies,
            self.rounds,
        )  # fmt: skip
        self.events.run()


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
    assert bench.events is not None
    print(table(bench.rounds, bench.memory, bench.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
