"""The events' measures (SPEC 10.7): the Pub/Sub emulator, a receiver on loopback
(hooks.py) with the tenant's webhook endpoint at it, sms_events behind a push subscription,
and sms_api served publishing events and publishing none; and the table's rows for them."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import firestore
from hooks import (
    PUSH_PATH,
    Announcer,
    Receiver,
    add_endpoint,
    push_body,
    stored,
    subscribe,
)
from measure import (
    PROJECT,
    SMS_PATH,
    TENANT,
    Load,
    Meter,
    Rounds,
    Served,
    drive,
    load_average,
    log,
    percentile,
)

from sms.devtools.emulator import Emulator
from sms.devtools.seed import TenantSeed
from sms.events.outbox import PUBLISH_SECONDS
from sms.events.pubsub import PubSubTransport

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
class EventMeasures:
    """The events' rounds, on the benchmark's settings, and what they found."""

    args: argparse.Namespace
    env: dict[str, str]
    headers: dict[str, str]
    work: Path
    emulator: int  # the Firestore emulator's process id
    seed: TenantSeed  # the tenant, written into the events' database too
    bodies: Callable[[int], list[bytes]]  # requests' bodies, each for a consumer of its own
    rounds: Rounds
    first_delivery_ms: list[float] = field(default_factory=list)  # every measured request's
    push_ms: list[float] = field(default_factory=list)  # the emulator alone: publish to push
    undelivered: int = 0  # requests whose events did not arrive within EVENTS_WAIT_SECONDS
    missed_deliveries: int = 0  # announced events not delivered within twice that

    def run(self) -> None:
        """The Pub/Sub emulator, a receiver, and the tenant's endpoint at it, in a database
        of their own; sms_events, and sms_api twice: publishing events (PUBSUB_EMULATOR_HOST
        set) and publishing none. One round unmeasured, then the rounds.

        The emulator answers a query by reading every document of the database, those
        deleted included (production Firestore reads an index), and sms_events queries the
        tenant's endpoints for each announcement: in the database the other measures filled,
        that query alone would cost it several times its CPU."""
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
                    self.one_round(n, events)
        finally:
            del os.environ["PUBSUB_EMULATOR_HOST"]
            receiver.stop()
            pubsub.stop()

    def one_round(self, n: int, events: EventStack) -> None:
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


def events_rows(
    measures: EventMeasures,
    row: Callable[..., None],
    rows: list[tuple[str, str, str, str, str, str]],
) -> None:
    """The events' rows: the time to a request's first delivery against the emulator's own
    publish-to-push; the endpoint publishing events against publishing none; deliveries
    through the emulator against sms_events pushed directly, and the emulator's own pushes."""
    # fmt: off
    r, med = measures.rounds, measures.rounds.median
    delays, pushes, undelivered = measures.first_delivery_ms, measures.push_ms, measures.undelivered
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
    missed, direct_errors = measures.missed_deliveries, r.errors.get("direct", 0)
    rows.append(
        ("  not delivered; errors (all rounds)", f"{missed}; {direct_errors}", "", "", "0; 0",
         "PASS" if missed == direct_errors == 0 else "MISS")
    )
    # fmt: on
