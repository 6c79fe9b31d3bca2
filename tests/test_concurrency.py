"""Rule 6.2 under real parallel requests, against functions-framework serving the function."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flask
import requests
from google.cloud import firestore

from conftest import PROJECT, SEED_BODY, SMS_PATH, MovableClock, Tenant
from sms import bootstrap, errors, tenants
from sms.api import Api
from sms.config import Settings
from sms.devtools.seed import DEMO_AGENT
from sms.repository import FirestoreStore

ACTIVE = "Outbound SMS failed. Consumer is already in an active SMS session."
PARALLEL = 20


def fire_together(
    url: str, headers: dict[str, str], bodies: list[dict[str, Any]]
) -> tuple[list[requests.Response], float]:
    """POST every body at once (a thread each, released together); the answers, the time taken."""
    start = threading.Barrier(len(bodies))

    def post(body: dict[str, Any]) -> requests.Response:
        with requests.Session() as session:
            start.wait()
            return session.post(url + SMS_PATH, json=body, headers=headers, timeout=30)

    began = time.monotonic()
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(post, bodies))
    return answers, time.monotonic() - began


def consumer(n: int) -> str:
    return f"+1 415-555-01{n:02d}"


def test_parallel_requests_for_one_consumer_open_exactly_one_session(
    server: str, tenant: Tenant
) -> None:
    answers, seconds = fire_together(
        server, tenant.headers, [dict(SEED_BODY) for _ in range(PARALLEL)]
    )

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 400: PARALLEL - 1}, statuses
    assert [a.json() for a in answers if a.status_code == 400] == [{"message": ACTIVE}] * (
        PARALLEL - 1
    )
    assert seconds < 10, f"{PARALLEL} requests took {seconds:.1f} s"


def test_parallel_requests_for_different_consumers_all_succeed_with_distinct_ids(
    server: str, tenant: Tenant
) -> None:
    bodies = [{**SEED_BODY, "end_user_number": consumer(n), "agentId": 1} for n in range(PARALLEL)]
    answers, seconds = fire_together(server, tenant.headers, bodies)

    assert [a.status_code for a in answers] == [200] * PARALLEL, [
        a.text for a in answers if a.status_code != 200
    ]
    docs = [a.json() for a in answers]
    chat_ids = {d["id"] for d in docs}
    participant_ids = {p["id"] for d in docs for p in d["participants"]}
    end_user_ids = {d["end_user"]["id"] for d in docs}
    assert len(chat_ids) == PARALLEL
    assert len(participant_ids) == 2 * PARALLEL
    assert len(end_user_ids) == PARALLEL
    assert seconds < 10, f"{PARALLEL} requests took {seconds:.1f} s"


def test_parallel_sends_on_an_agents_behalf_all_land_in_the_one_session(
    server: str, tenant: Tenant, db: firestore.Client
) -> None:
    first = requests.post(
        server + SMS_PATH, json={**SEED_BODY, "agentId": 1}, headers=tenant.headers, timeout=30
    )
    assert first.status_code == 200, first.text
    chat_id = first.json()["id"]

    bodies = [{**SEED_BODY, "agentId": 1, "message": f"follow-up {n}"} for n in range(10)]
    answers, _ = fire_together(server, tenant.headers, bodies)

    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    assert {a.json()["id"] for a in answers} == {chat_id}
    messages = db.collection(f"tenants/{tenant.id}/chats/{chat_id}/messages").stream()
    assert sorted(m.get("text") for m in messages) == sorted(
        ["lorem ipsum"] + [b["message"] for b in bodies]
    )


def test_parallel_requests_meeting_an_expired_session_replace_it_once(
    clocked_server: str,
    clock: MovableClock,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
) -> None:
    """Served in-process (by threads, on the test's clock), so that the session expires when
    the clock is moved, not after a wait."""
    tenant = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "session_timeout_seconds": 1},
        agents={1: dict(DEMO_AGENT)},
    )
    first = requests.post(
        clocked_server + SMS_PATH, json=SEED_BODY, headers=tenant.headers, timeout=30
    )
    assert first.status_code == 200, first.text
    clock.advance(1.2)

    bodies = [dict(SEED_BODY) for _ in range(PARALLEL)]
    answers, _ = fire_together(clocked_server, tenant.headers, bodies)

    winners = [a.json() for a in answers if a.status_code == 200]
    assert len(winners) == 1, [a.text for a in answers]
    assert Counter(a.status_code for a in answers) == {200: 1, 400: PARALLEL - 1}
    assert winners[0]["id"] != first.json()["id"]
    assert winners[0]["end_user"]["id"] == first.json()["end_user"]["id"]
    old = db.document(f"tenants/{tenant.id}/chats/{first.json()['id']}").get()
    assert old.get("status") == "finished"


def test_instances_reserving_ids_at_the_same_moment_do_not_fail_each_other(
    make_tenant: Callable[..., Tenant],
) -> None:
    """Twelve instances (each with its own store and id blocks) open sessions at once."""
    instances = 12
    tenant = make_tenant()
    settings = Settings(project=PROJECT)
    apis = [Api(bootstrap.build(settings)) for _ in range(instances)]
    app = flask.Flask(__name__)
    start = threading.Barrier(instances)

    def one(index: int) -> tuple[int, Any]:
        body = {**SEED_BODY, "end_user_number": consumer(index)}
        with app.test_request_context(SMS_PATH, method="POST", json=body, headers=tenant.headers):
            start.wait()
            answer = apis[index].handle(flask.request)
            return answer.status_code, answer.get_json()

    with ThreadPoolExecutor(instances) as pool:
        answers = list(pool.map(one, range(instances)))

    assert [status for status, _ in answers] == [200] * instances, answers
    assert len({doc["id"] for _, doc in answers}) == instances
    assert len({p["id"] for _, doc in answers for p in doc["participants"]}) == instances


def test_parallel_requests_ending_one_chat_end_it_exactly_once(server: str, tenant: Tenant) -> None:
    opened = requests.post(server + SMS_PATH, json=SEED_BODY, headers=tenant.headers, timeout=30)
    url = f"{server}/apps/api/v1/chats/{opened.json()['id']}"
    start = threading.Barrier(PARALLEL)

    def end(_: int) -> requests.Response:
        with requests.Session() as session:
            start.wait()
            return session.patch(
                url, json={"status": "finished"}, headers=tenant.headers, timeout=30
            )

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(end, range(PARALLEL)))

    assert Counter(a.status_code for a in answers) == {200: 1, 400: PARALLEL - 1}
    refused = [a.json() for a in answers if a.status_code == 400]
    assert refused == [{"message": "Chat is already ended"}] * (PARALLEL - 1)


def test_requests_ending_one_chat_in_the_same_millisecond_end_it_exactly_once(
    send: Callable[..., Any], tenant: Tenant
) -> None:
    """With one clock reading for all, only the commit that won may answer 200."""
    opened = send()
    store = FirestoreStore.from_settings(Settings(project=PROJECT))
    moment = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    app = bootstrap.build(Settings(project=PROJECT), store=store, clock=lambda: moment)
    chats = app.chats
    parsed = tenants.judge(tenant.id, tenant.settings)
    start = threading.Barrier(10)

    def end(_: int) -> str:
        start.wait()
        try:
            chats.end(parsed, opened.get_json()["id"], {"status": "finished"})
        except errors.BadRequest as refused:
            return refused.message
        return "ended"

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(end, range(10)))

    assert Counter(outcomes) == {
        "ended": 1,
        "Chat is already ended": 9,
    }
