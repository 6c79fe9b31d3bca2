"""SPEC 10.6: each tenant's API requests per second, counted across instances."""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from google.cloud import firestore

from conftest import SEED_BODY, SMS_PATH, Tenant, count_documents
from sms.devtools.emulator import free_port
from sms.devtools.server import serving

TOO_MANY = {"message": "Too many requests"}
LIMIT = 4
_numbers = itertools.count()


def consumer() -> str:
    return f"+1415555{3000 + next(_numbers) % 6000:04d}"


@pytest.fixture(scope="module")
def two_servers(
    emulator_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    """Two instances of the function, as Cloud Run would run side by side."""
    logs = tmp_path_factory.mktemp("rate")
    with (
        open(logs / "a.log", "wb") as log_a,
        open(logs / "b.log", "wb") as log_b,
        serving(free_port(), dict(os.environ), log_a) as a,
        serving(free_port(), dict(os.environ), log_b) as b,
    ):
        yield [a, b]


@pytest.fixture
def limited(make_tenant: Callable[..., Tenant]) -> Tenant:
    settings = {"sms_enabled": True, "outbound_sms_enabled": True, "rate_limit_per_second": LIMIT}
    return make_tenant(settings=settings)


def next_second() -> None:
    """Wait until just after the start of a second, so that a burst falls within one."""
    time.sleep(1.05 - time.time() % 1)


def burst(urls: list[str], tenant: Tenant, count: int, **headers: str) -> list[requests.Response]:
    """``count`` requests released at once, spread over the servers, each for a new consumer."""
    start = threading.Barrier(count)
    bodies = [{**SEED_BODY, "end_user_number": consumer()} for _ in range(count)]

    def post(n: int) -> requests.Response:
        with requests.Session() as session:
            start.wait()
            return session.post(
                urls[n % len(urls)] + SMS_PATH,
                json=bodies[n],
                headers={**tenant.headers, **headers},
                timeout=30,
            )

    next_second()
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(post, range(count)))


def chats_by_second(db: firestore.Client, tenant: Tenant) -> Counter[int]:
    stored = db.collection(f"tenants/{tenant.id}/chats").stream()
    return Counter(int(snap.get("created_at").timestamp()) for snap in stored)


def test_a_burst_across_two_instances_is_held_to_the_limit_per_second(
    two_servers: list[str], limited: Tenant, db: firestore.Client
) -> None:
    answers = burst(two_servers, limited, 16)

    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {200, 429}, statuses
    assert 1 <= statuses[200] <= 2 * LIMIT  # a burst may straddle a second, at most
    per_second = chats_by_second(db, limited)
    assert max(per_second.values()) <= LIMIT, per_second
    assert sum(per_second.values()) == statuses[200]  # a 429 wrote nothing
    for answer in answers:
        if answer.status_code == 429:
            assert answer.json() == TOO_MANY
            assert answer.headers["Retry-After"] == "1"


def test_the_next_second_lets_requests_in_again(two_servers: list[str], limited: Tenant) -> None:
    first = burst(two_servers, limited, 10)
    second = burst(two_servers, limited, 2)

    assert 429 in [a.status_code for a in first]
    assert [a.status_code for a in second] == [200, 200]


def test_429_comes_after_401_and_before_every_other_answer(
    two_servers: list[str], limited: Tenant
) -> None:
    url = two_servers[0]
    next_second()
    for _ in range(LIMIT):
        requests.get(f"{url}/apps/api/v1/chats/1", headers=limited.headers, timeout=30)

    invalid = requests.post(url + SMS_PATH, json={"chat_type": "x"}, headers=limited.headers)
    unknown_chat = requests.get(f"{url}/apps/api/v1/chats/99", headers=limited.headers)
    bad_password = {"Authorization": "Basic " + "eDp5"}  # x:y
    unauthorized = requests.post(url + SMS_PATH, json=SEED_BODY, headers=bad_password)
    not_found = requests.get(url + "/elsewhere", headers=limited.headers)

    assert (invalid.status_code, invalid.json()) == (429, TOO_MANY)
    assert (unknown_chat.status_code, unknown_chat.json()) == (429, TOO_MANY)
    assert unauthorized.status_code == 401
    assert not_found.status_code == 404


def test_a_request_refused_429_leaves_its_idempotency_key_free(
    two_servers: list[str], limited: Tenant, db: firestore.Client
) -> None:
    url = two_servers[0]
    body = {**SEED_BODY, "end_user_number": consumer()}
    next_second()
    for _ in range(LIMIT):
        requests.get(f"{url}/apps/api/v1/chats/1", headers=limited.headers, timeout=30)
    refused = requests.post(
        url + SMS_PATH, json=body, headers={**limited.headers, "Idempotency-Key": "k-429"}
    )
    next_second()
    retried = requests.post(
        url + SMS_PATH, json=body, headers={**limited.headers, "Idempotency-Key": "k-429"}
    )

    assert refused.status_code == 429
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers


def test_without_a_limit_or_with_0_nothing_is_refused(
    two_servers: list[str], make_tenant: Callable[..., Tenant]
) -> None:
    for settings in ({}, {"rate_limit_per_second": 0}):
        tenant = make_tenant(
            settings={"sms_enabled": True, "outbound_sms_enabled": True, **settings}
        )
        answers = burst(two_servers, tenant, 12)
        assert [a.status_code for a in answers] == [200] * 12


def test_carrier_webhooks_are_neither_counted_nor_refused(
    twilio_server: str, make_tenant: Callable[..., Tenant], standin: Any, db: firestore.Client
) -> None:
    """Twilio's posts are not the tenant's requests: a tenant over its limit still hears its
    consumers' replies, and they do not take from its budget."""
    from twilio_standin import sign  # noqa: PLC0415

    number = f"+1917555{uuid.uuid4().int % 10_000:04d}"
    tenant = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "rate_limit_per_second": 2},
        outbound_numbers={number: {"sms_enabled": True}},
        index_numbers=True,
    )
    inbound = twilio_server + SMS_PATH + "/inbound"
    chat = f"{twilio_server}/apps/api/v1/chats/{10**9}"  # no such chat: 404 within budget

    def reply(n: int) -> requests.Response:
        sid = "SM" + uuid.uuid4().hex
        form = {"MessageSid": sid, "From": f"+1415555{7000 + n:04d}", "To": number, "Body": "hi"}
        headers = {"X-Twilio-Signature": sign(inbound, form, standin.auth_token)}
        return requests.post(inbound, data=form, headers=headers, timeout=30)

    for _attempt in range(5):  # until the whole exchange falls within one second
        next_second()
        second = int(time.time())
        spent = [requests.get(chat, headers=tenant.headers, timeout=30) for _ in range(3)]
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(reply, range(4)))
        after = requests.get(chat, headers=tenant.headers, timeout=30)
        if int(time.time()) == second:
            break
    else:
        pytest.fail("no second was long enough for the exchange on this machine")

    assert [a.status_code for a in spent] == [404, 404, 429]  # the budget of 2 is spent
    assert [r.status_code for r in replies] == [200] * 4, [r.text for r in replies]
    assert after.status_code == 429
    counted = db.document(f"request_counts/{tenant.id}@{second}").get().get("count")
    assert counted == 4  # the tenant's four requests; none of the replies
    next_second()  # the next second's budget is whole: the replies took none of it
    fresh = [requests.get(chat, headers=tenant.headers, timeout=30) for _ in range(2)]
    assert [a.status_code for a in fresh] == [404, 404]


def test_a_counted_request_that_is_refused_writes_nothing_under_its_tenant(
    two_servers: list[str], limited: Tenant, db: firestore.Client
) -> None:
    before = count_documents(db, limited.id)
    answer = requests.post(
        two_servers[0] + SMS_PATH, json={"chat_type": "x"}, headers=limited.headers, timeout=30
    )

    assert answer.status_code in (400, 429)
    assert count_documents(db, limited.id) == before
