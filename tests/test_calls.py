"""The Firestore calls each kind of request makes, counted exactly, against each kind's target.

Every gRPC method of the Firestore client the function uses is wrapped with a counter; real
requests of each kind are then served, on a warm instance, and the calls they made are
averaged by kind. In production each call is a network round trip: the count is a request's
latency floor and most of its cost. These are counts, not timings: exact on any machine.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import flask
import pytest
from google.cloud import firestore
from google.cloud.pubsub_v1 import PublisherClient

from conftest import PROJECT, SEED_BODY, SMS_PATH, Tenant
from sms import admission, bootstrap, errors, reach
from sms.api import Api
from sms.cache import TtlCache
from sms.carriers.log import LogCarrier
from sms.config import Settings
from sms.devtools.seed import DEMO_AGENT
from sms.events.pubsub import PubSubTransport
from sms.repository import FirestoreStore

REQUESTS = 20  # of each kind


@dataclass
class Counted:
    """The function in-process on a store whose client counts its gRPC calls by method."""

    api: Api
    calls: Counter[str]
    tenant: Tenant
    app: flask.Flask
    publications: Counter[str]

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> flask.Response:
        with self.app.test_request_context(
            path, method=method, json=body, headers={**self.tenant.headers, **(headers or {})}
        ):
            return self.api.handle(flask.request)

    def per_request(self, kind: Kind) -> Counter[str]:
        """Serve REQUESTS requests of a kind; the calls they made by method, per request."""
        serve = kind.prepare(self)
        self.calls.clear()
        self.publications.clear()
        for n in range(REQUESTS):
            answer = serve(n)
            assert answer.status_code == kind.status, answer.get_json()
            if kind.message is not None:  # refused for the reason the kind is about
                assert answer.get_json() == {"message": kind.message}
        return Counter({name: count / REQUESTS for name, count in self.calls.items()})


COUNTING = threading.Event()  # set as the rate limit's count is issued
PAIRING = threading.Event()  # set while reads wait for counts
PAIRED: list[bool] = []  # with a rate limit: per read, whether the count was on its way too


def count_calls(client: firestore.Client) -> Counter[str]:
    """Wrap every gRPC method of the client with a counter; the counts, by the method's name
    in Firestore's API (BatchGetDocuments, Commit...)."""
    calls: Counter[str] = Counter()

    def counting(name: str, method: Any) -> Any:
        rpc = "".join(part.title() for part in name.split("_"))

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls[rpc] += 1
            if rpc == "BatchGetDocuments" and PAIRING.is_set():
                # The read waits for the count to start: had the request counted only
                # after its read, this would wait in vain.
                PAIRED.append(COUNTING.wait(5))
            return method(*args, **kwargs)

        return counted

    reach.wrap_generated_calls(client, counting)
    return calls


class CountedTransport:
    """Pub/Sub on the emulator, each publication counted (SPEC 10.7: one per request that
    commits events, however many it commits)."""

    name = "pubsub"

    def __init__(self, project: str, topic: str) -> None:
        self._transport = PubSubTransport(project, topic)
        self.publications: Counter[str] = Counter()

    def publish(self, refs: dict[str, list[str]], timeout: float) -> bool:
        self.publications["Publish"] += 1
        return self._transport.publish(refs, timeout)


@pytest.fixture
def counted(
    emulator_host: str,
    pubsub_host: str,
    db: firestore.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> Counted:
    settings = Settings(project=PROJECT, config_cache_seconds=5)
    client = firestore.Client(project=PROJECT)
    store = FirestoreStore(client, settings)
    calls = count_calls(client)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
    topic = f"calls-{uuid.uuid4().hex[:10]}"
    PublisherClient().create_topic(request={"name": f"projects/{PROJECT}/topics/{topic}"})
    transport = CountedTransport(PROJECT, topic)
    api = Api(bootstrap.build(settings, store=store, carrier=LogCarrier(), transport=transport))
    api.signed_in = frozen_cache()
    tenant = Tenant(id=f"t{uuid.uuid4().hex[:16]}", agents={1: dict(DEMO_AGENT)})
    tenant.write(db)
    counted = Counted(api, calls, tenant, flask.Flask(__name__), transport.publications)
    # A warm instance: it has signed the tenant in and holds blocks of ids.
    for n in range(3):
        warm = {**SEED_BODY, "end_user_number": f"+1415555{9000 + n}", "agentId": 1}
        assert counted.request("POST", SMS_PATH, warm).status_code == 200
    return counted


def frozen_cache() -> TtlCache[tuple[str, str], Any]:
    """Sign-ins kept for the whole test, however long the machine takes to serve it."""
    return TtlCache(5, clock=lambda: 0.0)


def open_session(n: int, **extra: Any) -> dict[str, Any]:
    return {**SEED_BODY, "end_user_number": f"+1415555{1000 + n:04d}", "agentId": 1, **extra}


def total(calls: Counter[str]) -> float:
    return round(sum(calls.values()), 6)


@dataclass(frozen=True)
class Kind:
    """A kind of request: what to serve (after what preparation), its answer, its target."""

    prepare: Callable[[Counted], Callable[[int], flask.Response]]
    status: int
    target: int  # calls per request, the carrier's status write included
    message: str | None = None
    publishes: int = 0  # Pub/Sub publications per request: one where it commits events


def opening(counted: Counted) -> Callable[[int], flask.Response]:
    return lambda n: counted.request("POST", SMS_PATH, open_session(n))


def opening_with_a_key(counted: Counted) -> Callable[[int], flask.Response]:
    def serve(n: int) -> flask.Response:
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
        return counted.request("POST", SMS_PATH, open_session(n), key)

    return serve


def with_sessions(counted: Counted) -> None:
    for n in range(REQUESTS):
        assert counted.request("POST", SMS_PATH, open_session(n)).status_code == 200


def on_behalf(counted: Counted) -> Callable[[int], flask.Response]:
    with_sessions(counted)
    return lambda n: counted.request("POST", SMS_PATH, open_session(n, message="again"))


def busy(counted: Counted) -> Callable[[int], flask.Response]:
    with_sessions(counted)
    return lambda n: counted.request("POST", SMS_PATH, open_session(n, agentId=None))


def invalid(counted: Counted) -> Callable[[int], flask.Response]:
    body = {**SEED_BODY, "end_user_number": "12345"}
    return lambda n: counted.request("POST", SMS_PATH, body)


def held(counted: Counted) -> Callable[[int], flask.Response]:
    """Sessions opened in the tenant's quiet hours (policy hold): stored, their message held
    for the sweeper, no carrier called. The window: from an hour ago to two hours on where
    the consumers (+1 415) are."""
    here = dt.datetime.now(ZoneInfo("America/Los_Angeles"))
    hours = {
        "start": f"{here - dt.timedelta(hours=1):%H:%M}",
        "end": f"{here + dt.timedelta(hours=2):%H:%M}",
        "policy": "hold",
    }
    db = firestore.Client(project=PROJECT)
    db.document(f"tenants/{counted.tenant.id}").update({"quiet_hours": hours})
    counted.api.signed_in = frozen_cache()  # sign in afresh, with the quiet hours
    warm = counted.request("POST", SMS_PATH, open_session(REQUESTS + 2))
    assert warm.status_code == 200, warm.get_json()
    return lambda n: counted.request("POST", SMS_PATH, open_session(n))


def a_chat(counted: Counted) -> int:
    answer = counted.request("POST", SMS_PATH, open_session(REQUESTS + 1))
    assert answer.status_code == 200, answer.get_json()
    return int(answer.get_json()["id"])


def reading_a_chat(counted: Counted) -> Callable[[int], flask.Response]:
    path = f"/apps/api/v1/chats/{a_chat(counted)}"
    return lambda n: counted.request("GET", path)


def reading_a_transcript(counted: Counted) -> Callable[[int], flask.Response]:
    path = f"/apps/api/v1/chats/{a_chat(counted)}/messages"
    return lambda n: counted.request("GET", path)


# Each kind and its target: the calls it may make at most.
KINDS = {
    "open a session (agent by id)": Kind(opening, 200, 4, publishes=1),
    "open a session with Idempotency-Key": Kind(opening_with_a_key, 200, 6, publishes=1),
    # The session's read and commit, and no carrier: no status write after it.
    "open a session that is held": Kind(held, 200, 3, publishes=1),
    "send on an agent's behalf": Kind(on_behalf, 200, 4, publishes=1),
    "refused: consumer busy": Kind(busy, 400, 1, errors.ACTIVE_SESSION),
    "refused by validation": Kind(invalid, 400, 0, errors.END_USER_NUMBER_INVALID),
    "GET a chat": Kind(reading_a_chat, 200, 1),
    "GET its transcript's first page": Kind(reading_a_transcript, 200, 2),
}


@pytest.mark.parametrize("name", KINDS)
def test_each_kind_of_request_makes_at_most_its_target_of_calls(
    counted: Counted, name: str
) -> None:
    calls = counted.per_request(KINDS[name])

    assert total(calls) <= KINDS[name].target, calls


@pytest.mark.parametrize("name", KINDS)
def test_a_request_that_commits_events_publishes_once_and_others_never(
    counted: Counted, name: str
) -> None:
    """Opening a session commits chat.created, then message.sent with the carrier's answer:
    two events, two commits, one publication. A refusal or a read publishes nothing."""
    kind = KINDS[name]
    counted.per_request(kind)

    assert counted.publications["Publish"] / REQUESTS == kind.publishes, counted.publications


def test_opening_a_session_commits_twice(counted: Counted) -> None:
    calls = counted.per_request(KINDS["open a session (agent by id)"])

    assert calls["Commit"] == 2, calls  # the session's commit and the carrier's status write


def test_opening_a_held_session_commits_once(counted: Counted) -> None:
    calls = counted.per_request(KINDS["open a session that is held"])

    assert calls["Commit"] == 1, calls  # the session's commit: the message waits, unsent


def test_the_counter_counts_every_call_a_request_makes(counted: Counted) -> None:
    """Without its cache, authentication reads the tenant and its credentials: the counter
    sees those calls, so the counts above are not low for want of counting."""
    counted.api.signed_in = TtlCache(0)
    unknown = Kind(lambda c: lambda n: c.request("GET", f"/apps/api/v1/chats/{10**9}"), 404, 0)
    calls = counted.per_request(unknown)

    assert calls == {"BatchGetDocuments": 2, "RunQuery": 1}


@pytest.fixture
def rate_limited(counted: Counted, db: firestore.Client) -> Iterator[Counted]:
    """The tenant has a rate limit it stays under; every read waits for the count to start."""
    db.document(f"tenants/{counted.tenant.id}").update({"rate_limit_per_second": 1000})
    counted.api.signed_in = frozen_cache()  # sign in afresh, with the limit
    assert counted.request("POST", SMS_PATH, open_session(999)).status_code == 200
    count_request = counted.api.counter.count

    def count_while_reading(tenant_id: str) -> int:
        COUNTING.set()
        return count_request(tenant_id)

    counted.api.counter = admission.Counter(count_while_reading)
    PAIRED.clear()
    PAIRING.set()
    try:
        yield counted
    finally:
        PAIRING.clear()


@pytest.mark.parametrize("name", KINDS)
def test_a_rate_limit_costs_one_call_more_issued_alongside_the_first_read(
    rate_limited: Counted, name: str
) -> None:
    kind = KINDS[name]
    serve = kind.prepare(rate_limited)
    PAIRED.clear()

    def each(n: int) -> flask.Response:
        COUNTING.clear()
        return serve(n)

    calls = rate_limited.per_request(Kind(lambda c: each, kind.status, kind.target, kind.message))

    assert total(calls) <= kind.target + 1, calls
    assert calls["Commit"] >= 1, calls  # the count is a commit of its own
    # Every request that reads issued its count while its first read was under way: each read
    # found the count started (the count is never left until after the read).
    assert PAIRED.count(False) == 0, PAIRED
    if kind.target > 0:
        assert len(PAIRED) >= REQUESTS, PAIRED
