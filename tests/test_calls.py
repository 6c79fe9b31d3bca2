"""The Firestore calls each kind of request makes, counted exactly (issue: fewer round trips).

Every gRPC method of the Firestore client the function uses is wrapped with a counter; real
requests of each kind are then served, on a warm instance, and the calls they made are
averaged by kind. In production each call is a network round trip: the count is a request's
latency floor and most of its cost. These are counts, not timings: exact on any machine.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import flask
import pytest
from google.cloud import firestore

from conftest import PROJECT, SEED_BODY, SMS_PATH, Tenant
from sms.api import Api
from sms.config import Settings
from sms.devtools.seed import DEMO_AGENT
from sms.repository import FirestoreStore

REQUESTS = 20  # of each kind, as the issue counted them
# Targets: calls per request, the carrier's status write included.
OPEN_SESSION = 4
OPEN_WITH_KEY = 6
ON_BEHALF = 4
CONSUMER_BUSY = 1
INVALID = 0
GET_CHAT = 1
TRANSCRIPT = 2


@dataclass
class Counted:
    """The function in-process on a store whose client counts its gRPC calls by method."""

    api: Api
    calls: Counter[str]
    tenant: Tenant
    app: flask.Flask

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> flask.Response:
        with self.app.test_request_context(
            path, method=method, json=body, headers={**self.tenant.headers, **(headers or {})}
        ):
            return self.api.handle(flask.request)

    def per_request(self, serve: Callable[[int], flask.Response], status: int) -> Counter[str]:
        """Serve REQUESTS requests; the calls they made by method, per request."""
        self.calls.clear()
        for n in range(REQUESTS):
            answer = serve(n)
            assert answer.status_code == status, answer.get_json()
        return Counter({name: count / REQUESTS for name, count in self.calls.items()})


READS = threading.Event()  # set as a BatchGetDocuments call is issued


def count_calls(client: firestore.Client) -> Counter[str]:
    """Wrap every gRPC method of the client with a counter; the counts, by method name."""
    calls: Counter[str] = Counter()
    methods = client._firestore_api._transport._wrapped_methods
    for stub, method in list(methods.items()):
        name = str(stub._method).rsplit("/", 1)[-1].strip("'")

        def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            if _name == "BatchGetDocuments":
                READS.set()
            return _method(*args, **kwargs)

        methods[stub] = counted
    return calls


@pytest.fixture
def counted(emulator_host: str, db: firestore.Client) -> Iterator[Counted]:
    settings = Settings(project=PROJECT)
    client = firestore.Client(project=PROJECT)
    store = FirestoreStore.on_client(client, settings)
    calls = count_calls(client)
    api = Api(store, settings.request_deadline_seconds, config_cache_seconds=5)
    tenant = Tenant(id=f"t{uuid.uuid4().hex[:16]}", agents={1: dict(DEMO_AGENT)})
    tenant.write(db)
    counted = Counted(api, calls, tenant, flask.Flask(__name__))
    # A warm instance: it has signed the tenant in and holds blocks of ids.
    for n in range(3):
        warm = {**SEED_BODY, "end_user_number": f"+1415555{9000 + n}", "agentId": 1}
        assert counted.request("POST", SMS_PATH, warm).status_code == 200
    return counted


def open_session(n: int, **extra: Any) -> dict[str, Any]:
    return {**SEED_BODY, "end_user_number": f"+1415555{1000 + n:04d}", "agentId": 1, **extra}


def total(calls: Counter[str]) -> float:
    return round(sum(calls.values()), 6)


def test_opening_a_session_with_an_agent_by_id_makes_at_most_4_calls(counted: Counted) -> None:
    calls = counted.per_request(lambda n: counted.request("POST", SMS_PATH, open_session(n)), 200)

    assert total(calls) <= OPEN_SESSION, calls
    assert calls["Commit"] >= 2  # the session's commit and the carrier's status write


def test_opening_a_session_with_an_idempotency_key_makes_at_most_6_calls(
    counted: Counted,
) -> None:
    def serve(n: int) -> flask.Response:
        key = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
        return counted.request("POST", SMS_PATH, open_session(n), key)

    calls = counted.per_request(serve, 200)

    assert total(calls) <= OPEN_WITH_KEY, calls


def test_sending_on_an_agents_behalf_makes_at_most_4_calls(counted: Counted) -> None:
    for n in range(REQUESTS):
        assert counted.request("POST", SMS_PATH, open_session(n)).status_code == 200

    calls = counted.per_request(
        lambda n: counted.request("POST", SMS_PATH, open_session(n, message="again")), 200
    )

    assert total(calls) <= ON_BEHALF, calls


def test_refusing_a_busy_consumer_makes_at_most_1_call(counted: Counted) -> None:
    for n in range(REQUESTS):
        assert counted.request("POST", SMS_PATH, open_session(n)).status_code == 200

    calls = counted.per_request(
        lambda n: counted.request("POST", SMS_PATH, open_session(n, agentId=None)), 400
    )

    assert total(calls) <= CONSUMER_BUSY, calls


def test_refusing_an_invalid_number_makes_no_call(counted: Counted) -> None:
    body = {**SEED_BODY, "end_user_number": "12345"}
    calls = counted.per_request(lambda n: counted.request("POST", SMS_PATH, body), 400)

    assert total(calls) <= INVALID, calls


def test_reading_a_chat_makes_at_most_1_call(counted: Counted) -> None:
    chat = counted.request("POST", SMS_PATH, open_session(0)).get_json()["id"]
    calls = counted.per_request(lambda n: counted.request("GET", f"/apps/api/v1/chats/{chat}"), 200)

    assert total(calls) <= GET_CHAT, calls


def test_reading_a_transcripts_first_page_makes_at_most_2_calls(counted: Counted) -> None:
    chat = counted.request("POST", SMS_PATH, open_session(0)).get_json()["id"]
    calls = counted.per_request(
        lambda n: counted.request("GET", f"/apps/api/v1/chats/{chat}/messages"), 200
    )

    assert total(calls) <= TRANSCRIPT, calls


def test_the_counter_counts_every_call_a_request_makes(counted: Counted) -> None:
    """Without its cache, authentication reads the tenant and its credentials: the counter
    sees those calls, so the counts above are not low for want of counting."""
    counted.api._signed_in = type(counted.api._signed_in)(0)
    calls = counted.per_request(
        lambda n: counted.request("GET", f"/apps/api/v1/chats/{10**9}"), 404
    )

    assert calls == {"BatchGetDocuments": 2, "RunQuery": 1}


def test_a_rate_limit_costs_one_call_more_issued_alongside_the_first_read(
    counted: Counted, db: firestore.Client
) -> None:
    db.document(f"tenants/{counted.tenant.id}").update({"rate_limit_per_second": 1000})
    counted.api._signed_in = type(counted.api._signed_in)(5)  # sign in afresh, with the limit
    assert counted.request("POST", SMS_PATH, open_session(999)).status_code == 200
    count_request = counted.api._counter._count
    overlapped: list[bool] = []

    def count_while_reading(tenant_id: str) -> int:
        # Held until the request's first read is on its way: had the request waited for
        # its count before reading, this would wait in vain.
        overlapped.append(READS.wait(5))
        return count_request(tenant_id)

    counted.api._counter._count = count_while_reading

    def serve(n: int) -> flask.Response:
        READS.clear()
        return counted.request("POST", SMS_PATH, open_session(n))

    calls = counted.per_request(serve, 200)

    assert total(calls) <= OPEN_SESSION + 1, calls
    assert calls["Commit"] == 3  # the count, the session's commit, the carrier's answer
    assert overlapped == [True] * REQUESTS
