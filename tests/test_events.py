"""Events (SPEC 10.7) end to end: the function records them in the commit of their change,
publishes them to Pub/Sub (the official emulator), and sms_events delivers them, signed as
Standard Webhooks does, to receivers the tests run on loopback."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from eventing import EventStack, Receiver, add_endpoint, basic, listed_events, receiving
from google.cloud import firestore
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import SEED_BODY, SMS_PATH, Tenant
from sms.clock import utc_now
from sms.devtools.seed import DEMO_AGENT
from sms.events import signing

_numbers = iter(range(10_000))


def consumer() -> str:
    return f"+1415555{next(_numbers) % 10000:04d}"


def post(stack: EventStack, tenant: Tenant, **changes: Any) -> requests.Response:
    body = {**SEED_BODY, "end_user_number": consumer(), "agentId": 1, **changes}
    return requests.post(stack.api + SMS_PATH, json=body, headers=tenant.headers, timeout=30)


@pytest.fixture
def hooked(
    make_tenant: Callable[..., Tenant], db: firestore.Client, receiver: Receiver
) -> tuple[Tenant, list[str]]:
    """A tenant with agent 1 and one endpoint, the receiver, taking every event type."""
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    _, secrets = add_endpoint(db, tenant.id, receiver.url)
    return tenant, secrets


def test_a_new_session_is_delivered_as_chat_created_then_message_sent_signed_and_listed(
    event_stack: EventStack, hooked: tuple[Tenant, list[str]], receiver: Receiver
) -> None:
    tenant, [secret] = hooked
    answer = post(event_stack, tenant)
    assert answer.status_code == 200

    deliveries = receiver.wait_for(2)
    assert [d.event["type"] for d in deliveries] == ["chat.created", "message.sent"]
    for delivery in deliveries:
        verified = Webhook(secret).verify(delivery.body, delivery.headers)
        assert verified == delivery.event
        assert delivery.webhook_id == delivery.event["id"]
        assert delivery.headers["content-type"] == "application/json"
        assert list(delivery.event) == ["id", "type", "timestamp", "tenant", "data"]
        assert delivery.event["tenant"] == tenant.id
    created, sent = (d.event["data"] for d in deliveries)
    assert created == answer.json()
    assert (sent["chat_id"], sent["status"]) == (answer.json()["id"], "sent")
    listed = listed_events(event_stack.api, basic(tenant.id, tenant.token))
    assert [event["id"] for event in listed] == [d.webhook_id for d in deliveries]
    assert listed == [d.event for d in deliveries]


def test_a_failing_endpoint_is_retried_alone_and_a_healthy_one_gets_each_event_once(
    event_stack: EventStack,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
    receiver: Receiver,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    add_endpoint(db, tenant.id, receiver.url)
    with receiving() as failing:
        failing.answer(503, 500)  # then 204
        add_endpoint(db, tenant.id, failing.url)
        assert post(event_stack, tenant).status_code == 200

        failing.wait_for(4, seconds=30)  # 2 events: 2 failures, then success each
        receiver.wait_for(3, seconds=3)  # time enough for an attempt too many, to either
        attempts = list(failing.deliveries)
    healthy = receiver.wait_for(2)

    assert sorted(d.webhook_id for d in healthy) == sorted({d.webhook_id for d in healthy})
    assert len(healthy) == 2
    assert healthy[1].at - healthy[0].at < 2  # never held back by the failing one
    per_event = Counter(d.webhook_id for d in attempts)
    assert set(per_event) == {d.webhook_id for d in healthy}
    assert sum(per_event.values()) == 4  # two failed attempts in all, then one success each
    assert len(receiver.deliveries) == 2  # the retries never reached the healthy one again


def test_every_unexpired_secret_signs_each_delivery_and_an_expired_one_no_longer_does(
    event_stack: EventStack,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
    receiver: Receiver,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    new, old = signing.new_secret(), signing.new_secret()
    endpoint_id, _ = add_endpoint(db, tenant.id, receiver.url)
    endpoint = db.document(f"tenants/{tenant.id}/webhook_endpoints/{endpoint_id}")

    def secrets(old_expires_at: dt.datetime) -> None:
        """The endpoint as `webhooks rotate-secret` leaves it: the new secret, and the old
        one until it expires."""
        endpoint.update(
            {
                "secrets": [
                    {"secret": new, "expires_at": None},
                    {"secret": old, "expires_at": old_expires_at},
                ]
            }
        )

    secrets(utc_now() + dt.timedelta(hours=24))
    answer = post(event_stack, tenant)
    assert answer.status_code == 200
    for delivery in receiver.wait_for(2):
        assert len(delivery.headers["webhook-signature"].split(" ")) == 2
        for secret in (new, old):  # a receiver that has either one verifies every delivery
            assert Webhook(secret).verify(delivery.body, delivery.headers) == delivery.event

    secrets(utc_now() - dt.timedelta(seconds=1))  # the old one's 24 hours are over
    ended = requests.patch(
        f"{event_stack.api}/apps/api/v1/chats/{answer.json()['id']}",
        json={"status": "finished"},
        headers=tenant.headers,
        timeout=30,
    )
    assert ended.status_code == 200
    [delivery] = receiver.wait_for(3)[2:]
    assert delivery.event["type"] == "chat.ended"
    sent_at = dt.datetime.fromtimestamp(int(delivery.headers["webhook-timestamp"]), dt.timezone.utc)
    signed_by_new = Webhook(new).sign(delivery.webhook_id, sent_at, delivery.body)
    assert delivery.headers["webhook-signature"] == signed_by_new  # that entry, and no other
    assert Webhook(new).verify(delivery.body, delivery.headers) == delivery.event
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(delivery.body, delivery.headers)


def test_410_disables_the_endpoint(
    event_stack: EventStack,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
    receiver: Receiver,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    endpoint_id, _ = add_endpoint(db, tenant.id, receiver.url)
    receiver.default = 410
    assert post(event_stack, tenant).status_code == 200

    receiver.wait_for(1)
    receiver.wait_for(2, seconds=4)
    endpoint = db.document(f"tenants/{tenant.id}/webhook_endpoints/{endpoint_id}").get()
    assert endpoint.get("enabled") is False
    # Gone: not tried again, nor given the session's next event.
    assert receiver.types() == ["chat.created"]


def test_an_endpoint_gets_only_the_types_it_takes(
    event_stack: EventStack,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
    receiver: Receiver,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    add_endpoint(db, tenant.id, receiver.url, events=["message.sent"])
    with receiving() as everything:
        add_endpoint(db, tenant.id, everything.url)
        assert post(event_stack, tenant).status_code == 200
        everything.wait_for(2)
    receiver.wait_for(2, seconds=3)
    assert receiver.types() == ["message.sent"]


def test_a_tenant_hears_only_of_its_own_changes(
    event_stack: EventStack,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
    receiver: Receiver,
) -> None:
    mine = make_tenant(agents={1: dict(DEMO_AGENT)})
    theirs = make_tenant(agents={1: dict(DEMO_AGENT)})
    add_endpoint(db, mine.id, receiver.url)
    assert post(event_stack, theirs).status_code == 200
    assert post(event_stack, mine).status_code == 200

    receiver.wait_for(4, seconds=4)
    assert {event["tenant"] for event in receiver.events()} == {mine.id}
    assert len(receiver.deliveries) == 2
    assert {e["tenant"] for e in listed_events(event_stack.api, theirs.headers)} == {theirs.id}


def test_a_replayed_idempotency_key_makes_no_event(
    event_stack: EventStack, hooked: tuple[Tenant, list[str]], receiver: Receiver
) -> None:
    tenant, _ = hooked
    headers = {**tenant.headers, "Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    body = {**SEED_BODY, "end_user_number": consumer(), "agentId": 1}
    for _ in range(3):
        answer = requests.post(event_stack.api + SMS_PATH, json=body, headers=headers, timeout=30)
        assert answer.status_code == 200
    receiver.wait_for(3, seconds=4)
    assert receiver.types() == ["chat.created", "message.sent"]
    assert len(listed_events(event_stack.api, tenant.headers)) == 2


def test_twenty_parallel_requests_for_one_consumer_make_one_chat_created(
    event_stack: EventStack, hooked: tuple[Tenant, list[str]], receiver: Receiver
) -> None:
    tenant, _ = hooked
    body = {**SEED_BODY, "end_user_number": consumer()}
    start = threading.Barrier(20)

    def fire(_: int) -> int:
        with requests.Session() as session:
            start.wait()
            return session.post(
                event_stack.api + SMS_PATH, json=body, headers=tenant.headers, timeout=30
            ).status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = Counter(pool.map(fire, range(20)))

    assert statuses == {200: 1, 400: 19}
    receiver.wait_for(3, seconds=5)
    assert receiver.types() == ["chat.created", "message.sent"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"since": "yesterday"}, "since is invalid"),
        ({"type": "chat.opened"}, "type is invalid"),
        ({"limit": "0"}, "limit is invalid"),
        ({"page_token": "MC5fX3hfXw"}, "page_token is invalid"),
        ({"since": "yesterday", "type": "x", "limit": "0"}, "since is invalid"),
        ({"type": "x", "limit": "0"}, "type is invalid"),
    ],
)
def test_bad_values_of_the_events_list_are_refused_in_order(
    app_client: Any, tenant: Tenant, query: dict[str, str], message: str
) -> None:
    answer = app_client.get("/apps/api/v1/events", query_string=query, headers=tenant.headers)
    assert (answer.status_code, answer.get_json()) == (400, {"message": message})


def test_the_events_list_pages_and_filters_by_type_and_time(
    app_client: Any, tenant: Tenant, send: Callable[..., Any]
) -> None:
    for _ in range(3):
        assert send(end_user_number=consumer(), agentId=1).status_code == 200
    headers = tenant.headers
    everything = app_client.get("/apps/api/v1/events", headers=headers).get_json()["events"]
    assert [e["type"] for e in everything] == ["chat.created", "message.sent"] * 3

    pages, token = [], None
    while True:
        query = {"limit": "4", **({"page_token": token} if token else {})}
        page = app_client.get("/apps/api/v1/events", query_string=query, headers=headers)
        pages.append(page.get_json()["events"])
        token = page.get_json()["next_page_token"]
        if token is None:
            break
    assert [len(p) for p in pages] == [4, 2]
    assert [e for p in pages for e in p] == everything

    sent = app_client.get(
        "/apps/api/v1/events", query_string={"type": "message.sent"}, headers=headers
    ).get_json()["events"]
    assert sent == [e for e in everything if e["type"] == "message.sent"]
    since = everything[2]["timestamp"]
    later = app_client.get(
        "/apps/api/v1/events", query_string={"since": since}, headers=headers
    ).get_json()["events"]
    assert later == [e for e in everything if e["timestamp"] >= since]
