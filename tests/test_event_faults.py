"""Events (SPEC 10.7) when things go wrong: an endpoint that hangs past 15 s or redirects, the
event transport frozen while requests run, and sms_events killed in the middle of an
attempt. Each is real time by nature (the 15 s bound, Pub/Sub's pushes, a dispatcher's
claim), so there is one test of each; the rules of a delivery round that time decides (how
long an attempt is claimed, what a round leaves to the next) are tested in-process on a
clock the test moves, with an egress of the test's own.

Every delivery is verified with the `standardwebhooks` package, and (by the autouse fixture
of tests/eventing.py) validated against openapi.yaml's `webhooks`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from eventing import (
    Delivery,
    EventStack,
    Receiver,
    add_endpoint,
    listed_events,
    receiving,
    serving_events,
    sweep,
)
from google.cloud import firestore
from standardwebhooks.webhooks import Webhook

from conftest import PROJECT, SEED_BODY, SMS_PATH, MovableClock, Tenant
from sms.config import Settings
from sms.devtools.emulator import Emulator
from sms.devtools.seed import DEMO_AGENT
from sms.devtools.server import running
from sms.events.dispatch import ATTEMPT_SECONDS, CLAIM_SECONDS, RECORD_SECONDS, Dispatcher
from sms.events.egress import TIMEOUT_SECONDS, Attempt
from sms.repository import FirestoreStore

_numbers = itertools.count(5000)


def consumer() -> str:
    return f"+1415555{next(_numbers) % 10000:04d}"


def post(stack: EventStack, tenant: Tenant) -> requests.Response:
    body = {**SEED_BODY, "end_user_number": consumer(), "agentId": 1}
    answer = requests.post(stack.api + SMS_PATH, json=body, headers=tenant.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer


def finish(stack: EventStack, tenant: Tenant, chat_id: int) -> requests.Response:
    answer = requests.patch(
        f"{stack.api}/apps/api/v1/chats/{chat_id}",
        json={"status": "finished"},
        headers=tenant.headers,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer


def seconds(answer: requests.Response) -> float:
    return answer.elapsed.total_seconds()


def verified(deliveries: list[Delivery], secret: str) -> list[dict[str, Any]]:
    """Each delivery verified as Standard Webhooks does; their events."""
    for delivery in deliveries:
        assert Webhook(secret).verify(delivery.body, delivery.headers) == delivery.event
        assert delivery.webhook_id == delivery.event["id"]
    return [delivery.event for delivery in deliveries]


def attempt_record(db: firestore.Client, tenant: Tenant, webhook_id: str, endpoint: str) -> Any:
    """What the dispatcher recorded of an event's delivery to one endpoint, once it recorded
    it delivered (it records right after the answer: waiting at most a few seconds)."""
    ends = time.monotonic() + 5
    while True:
        event = db.document(f"tenants/{tenant.id}/events/{webhook_id}").get()
        record = event.get("deliveries").get(endpoint) or {}
        if record.get("state") == "delivered" or time.monotonic() > ends:
            return record
        time.sleep(0.05)


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant(agents={1: dict(DEMO_AGENT)})


# ---- an endpoint that hangs, or redirects ------------------------------------------------


def test_an_attempt_past_15_s_fails_and_its_retry_delivers_the_same_webhook_id(
    event_stack: EventStack, tenant: Tenant, db: firestore.Client, receiver: Receiver
) -> None:
    endpoint, [secret] = add_endpoint(db, tenant.id, receiver.url, events=["chat.created"])
    receiver.answer(("hang", TIMEOUT_SECONDS + 2))  # answers 204 after 17 s: too late
    post(event_stack, tenant)

    first, second = receiver.wait_for(2, seconds=TIMEOUT_SECONDS + 10)
    assert TIMEOUT_SECONDS <= second.at - first.at < TIMEOUT_SECONDS + 5
    assert verified([first, second], secret) == [first.event] * 2  # the same event, same id
    record = attempt_record(db, tenant, first.webhook_id, endpoint)
    assert (record["state"], record["attempts"]) == ("delivered", 2)  # by the retry
    attempt = db.document(
        f"tenants/{tenant.id}/webhook_attempts/{first.webhook_id}.{endpoint}.1"
    ).get()
    assert (attempt.get("outcome"), attempt.get("status")) == ("failing", None)
    assert "timeout" in attempt.get("error")


def test_a_302_is_not_followed_and_the_attempt_is_retried(
    event_stack: EventStack, tenant: Tenant, db: firestore.Client, receiver: Receiver
) -> None:
    endpoint, [secret] = add_endpoint(db, tenant.id, receiver.url, events=["chat.created"])
    with receiving() as elsewhere:
        receiver.answer(("redirect", elsewhere.url))  # then 204
        post(event_stack, tenant)
        first, second = receiver.wait_for(2)
        assert verified([first, second], secret) == [first.event] * 2
        record = attempt_record(db, tenant, first.webhook_id, endpoint)
    assert (record["state"], record["attempts"]) == ("delivered", 2)
    assert elsewhere.deliveries == []  # the Location was never asked
    attempt = db.document(
        f"tenants/{tenant.id}/webhook_attempts/{first.webhook_id}.{endpoint}.1"
    ).get()
    assert (attempt.get("outcome"), attempt.get("status")) == ("failing", 302)
    assert "not followed" in attempt.get("error")


# ---- the event transport frozen ------------------------------------------------------------


@dataclass
class Isolated:
    """A stack on a Pub/Sub emulator and a Firestore database of its own: the emulator may
    be frozen, and a sweep (which goes over every tenant of its database) finds only the
    test's data."""

    stack: EventStack
    pubsub: Emulator
    db: firestore.Client


@pytest.fixture
def isolated(emulator_host: str, tmp_path: Path) -> Iterator[Isolated]:
    emulator = Emulator.start(log_path=tmp_path / "pubsub.log", kind="pubsub")
    database = f"event-faults-{uuid.uuid4().hex[:8]}"
    try:
        log = tmp_path / "servers.log"
        extra = {"FIRESTORE_DATABASE": database}
        with serving_events(emulator_host, emulator.host_port, log, extra_env=extra) as stack:
            yield Isolated(stack, emulator, firestore.Client(project=PROJECT, database=database))
    finally:
        os.killpg(emulator.process.pid, signal.SIGCONT)
        emulator.stop()


def test_with_pubsub_frozen_requests_answer_on_time_and_a_sweep_delivers_each_event_once(
    isolated: Isolated, receiver: Receiver
) -> None:
    stack, emulator = isolated.stack, isolated.pubsub
    tenant = Tenant(id=f"t{uuid.uuid4().hex[:16]}", agents={1: dict(DEMO_AGENT)})
    tenant.write(isolated.db)
    _, [secret] = add_endpoint(isolated.db, tenant.id, receiver.url)
    post(stack, tenant)  # the publisher's client is made on first use
    receiver.wait_for(2)
    # The usual time of each request, on this stack, with the transport up.
    opened = [post(stack, tenant) for _ in range(3)]
    ended = [finish(stack, tenant, a.json()["id"]) for a in opened[:2]]
    usual_post, usual_patch = max(map(seconds, opened)), max(map(seconds, ended))
    receiver.wait_for(2 + 3 * 2 + 2)

    os.killpg(emulator.process.pid, signal.SIGSTOP)
    try:
        frozen_posts = [post(stack, tenant) for _ in range(2)]
        frozen_patch = finish(stack, tenant, opened[2].json()["id"])
    finally:
        os.killpg(emulator.process.pid, signal.SIGCONT)
    for answer in frozen_posts:
        assert seconds(answer) <= usual_post + 1.5, (seconds(answer), usual_post)
    assert seconds(frozen_patch) <= usual_patch + 1.5, (seconds(frozen_patch), usual_patch)

    # The sweeper announces what no dispatcher took 10 s after it was made.
    later = MovableClock()
    later.advance(11)
    sweep(stack, later)
    made = 2 + 3 * 2 + 2 + 2 * 2 + 1
    receiver.wait_for(made, seconds=20)
    receiver.wait_for(made + 1, seconds=2.5)  # nothing more comes
    events = verified(receiver.deliveries, secret)
    per_id = Counter(event["id"] for event in events)
    assert set(per_id.values()) == {1}, per_id
    assert sorted(per_id) == sorted(e["id"] for e in listed_events(stack.api, tenant.headers))
    assert len(per_id) == made


# ---- sms_events killed in the middle of an attempt -----------------------------------------


@pytest.fixture
def own_stack(emulator_host: str, pubsub_host: str, tmp_path: Path) -> Iterator[EventStack]:
    """A stack of the test's own (on the shared Pub/Sub emulator), which it may break."""
    with serving_events(emulator_host, pubsub_host, tmp_path / "servers.log") as stack:
        yield stack


def test_sms_events_killed_mid_attempt_and_restarted_delivers_the_event_once_more(
    own_stack: EventStack, tenant: Tenant, db: firestore.Client, receiver: Receiver
) -> None:
    stack = own_stack
    endpoint, [secret] = add_endpoint(db, tenant.id, receiver.url, events=["chat.created"])
    receiver.answer(("hang", 5))  # the first attempt: in flight when its dispatcher dies
    post(stack, tenant)
    [first] = receiver.wait_for(1)
    stack.events.kill(signal.SIGKILL)
    stack.events.process.wait()
    port = int(stack.events.url.rsplit(":", 1)[1])  # where the push subscription points
    with open(stack.log, "ab") as out, running(port, stack.env, out, target="sms_events"):
        deliveries = receiver.wait_for(2, seconds=CLAIM_SECONDS + 15)
        receiver.wait_for(3, seconds=2.5)
    assert len(receiver.deliveries) == 2, deliveries  # once more, and only once
    second = receiver.deliveries[1]
    assert verified([first, second], secret) == [first.event] * 2
    # The restarted dispatcher left the dead one's attempt alone while it was claimed.
    assert second.at - first.at >= CLAIM_SECONDS - 1
    record = attempt_record(db, tenant, first.webhook_id, endpoint)
    assert (record["state"], record["attempts"]) == ("delivered", 1)


# ---- a delivery round's claims and budget, on a clock the test moves -----------------------


@dataclass
class SlowEgress:
    """An egress that takes ``seconds`` to answer 204; while each attempt is in flight, it
    reads what the store says of the ``watched`` events' deliveries."""

    store: FirestoreStore
    tenant: str
    watched: list[str]
    seconds: float
    posted: list[str] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        self.posted.append(headers["webhook-id"])
        events = self.store.read_events(self.tenant, self.watched)
        self.seen.append({event.id: event.deliveries for event in events})
        time.sleep(self.seconds)
        return Attempt(ok=True, status=204, error=None, gone=False, seconds=self.seconds)


def test_a_round_claims_each_attempt_as_long_as_it_can_take_and_starts_none_past_its_budget(
    app_client: Any, send: Callable[..., Any], tenant: Tenant, db: firestore.Client
) -> None:
    # Two events, chat.created and message.sent, recorded (the test's function publishes none).
    assert send(end_user_number=consumer(), agentId=1).status_code == 200
    answer = app_client.get("/apps/api/v1/events", headers=tenant.headers)
    event_ids = [event["id"] for event in answer.get_json()["events"]]
    assert len(event_ids) == 2
    endpoint, _ = add_endpoint(db, tenant.id, "https://hooks.example.invalid/sms")
    store = FirestoreStore.from_settings(Settings.from_env())
    clock = MovableClock()
    # A round that has time for one attempt and its record, and not for a second one.
    budget = ATTEMPT_SECONDS + RECORD_SECONDS + 1
    egress = SlowEgress(store, tenant.id, event_ids, seconds=1.2)
    dispatcher = Dispatcher(store, egress, clock, deadline_seconds=budget)  # type: ignore[arg-type]

    first = dispatcher.deliver(tenant.id, event_ids)

    assert egress.posted == event_ids[:1]
    assert (first.delivered, first.failed, first.done) == (1, 1, False)  # retried later
    [in_flight] = egress.seen
    claimed = [in_flight[event_id][endpoint].claimed_until for event_id in event_ids]
    # The first attempt for as long as it can take and be recorded; the one queued behind
    # it for the same endpoint for one attempt more (35 s), but never past the round's
    # deadline and the record after it (26 s).
    assert CLAIM_SECONDS == ATTEMPT_SECONDS + RECORD_SECONDS == 20
    assert claimed == [
        clock.now + dt.timedelta(seconds=CLAIM_SECONDS),
        clock.now + dt.timedelta(seconds=budget + RECORD_SECONDS),
    ]
    unclaimed = store.read_events(tenant.id, event_ids)[1].deliveries[endpoint]
    assert (unclaimed.claimed_until, unclaimed.attempts) == (None, 0)  # free for the next

    clock.advance(2)
    second = dispatcher.deliver(tenant.id, event_ids)
    assert egress.posted == event_ids
    assert (second.delivered, second.done) == (1, True)
