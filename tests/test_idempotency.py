"""SPEC 10.1: Idempotency-Key, through the HTTP function and against the real Firestore.

Stored layout (sms/repository/): tenants/{t}/chats/{id}, tenants/{t}/chats/{id}/messages/*,
tenants/{t}/idempotency_keys/{sha256 of key} (a StoredKey; expires_at is its TTL field).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from google.cloud import firestore

from conftest import PROJECT, SEED_BODY, SMS_PATH
from sms import bootstrap, credentials, idempotency, render
from sms.carriers.log import LogCarrier
from sms.clock import utc_now
from sms.config import Settings
from sms.domain import Chat, Claim, MessageRef
from sms.repository import FirestoreStore, documents

REPLAYED = "Idempotent-Replayed"
INVALID = {"message": "Idempotency-Key is invalid"}
REUSED = {"message": "Idempotency-Key is already used for a different request"}
IN_PROGRESS = {"message": "A request with this Idempotency-Key is in progress"}
NO_MESSAGE = {**SEED_BODY, "message": "   "}
PARALLEL = 20


@pytest.fixture
def post(app_client, tenant):
    """POST a body (a dict, or raw bytes) with an Idempotency-Key, as `tenant` or `as_`."""

    def send(body: Any = SEED_BODY, key: str | None = "key-1", as_: Any = None) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = dict((as_ or tenant).headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        return app_client.post(SMS_PATH, data=data, headers=headers)

    return send


def chats_and_messages(db: firestore.Client, tenant_id: str) -> tuple[int, int]:
    """How many chats, and how many messages in them, the tenant has stored."""
    chats = list(db.collection(f"tenants/{tenant_id}/chats").list_documents())
    messages = sum(len(list(chat.collection("messages").stream())) for chat in chats)
    return sum(1 for chat in chats if chat.get().exists), messages


def key_document(db: firestore.Client, tenant_id: str, key: str) -> Any:
    digest = hashlib.sha256(key.encode("ascii")).hexdigest()
    return db.document(f"tenants/{tenant_id}/idempotency_keys/{digest}")


def assert_replay_of(response: Any, first: Any) -> None:
    assert response.status_code == first.status_code
    assert response.get_data() == first.get_data()
    assert response.headers.get(REPLAYED) == "true"


# ---- replaying the first answer ---------------------------------------------------------


def test_same_key_and_body_replays_the_first_answer(post):
    first = post()
    assert first.status_code == 200, first.get_data(as_text=True)
    assert REPLAYED not in first.headers
    assert_replay_of(post(), first)
    assert_replay_of(post(), first)


def test_a_replay_stores_no_second_chat_and_no_second_message(post, db, tenant):
    assert post().status_code == 200
    assert chats_and_messages(db, tenant.id) == (1, 1)
    post()
    post()
    assert chats_and_messages(db, tenant.id) == (1, 1)


def test_the_body_is_compared_as_parsed_json(post, db, tenant):
    first = post(json.dumps(SEED_BODY).encode())
    reordered = dict(reversed(list(SEED_BODY.items())))
    again = post(json.dumps(reordered, indent=4, separators=(" , ", " :  ")).encode())
    assert_replay_of(again, first)
    assert chats_and_messages(db, tenant.id) == (1, 1)


def test_without_a_key_the_same_body_is_a_new_request(post):
    assert post().status_code == 200
    second = post(key=None)
    assert second.status_code == 400
    assert REPLAYED not in second.headers


# ---- the same key for another request ---------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [{"message": "something else"}, {"agentId": 1}, {"end_user_number": "+1 415-555-0101"}],
)
def test_same_key_with_a_different_body_is_422_and_writes_nothing(post, db, tenant, change):
    assert post().status_code == 200
    response = post({**SEED_BODY, **change})
    assert (response.status_code, response.get_json()) == (422, REUSED)
    assert REPLAYED not in response.headers
    assert chats_and_messages(db, tenant.id) == (1, 1)


def test_keys_are_scoped_to_the_tenant(post, db, tenant, make_tenant):
    other = make_tenant()
    mine = post()
    theirs = post({**SEED_BODY, "message": "another body"}, as_=other)
    assert (mine.status_code, theirs.status_code) == (200, 200)
    assert REPLAYED not in theirs.headers
    assert chats_and_messages(db, tenant.id) == (1, 1)
    assert chats_and_messages(db, other.id) == (1, 1)


# ---- which keys are valid ---------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "two words", "ключ", "tab\there"],
    ids=["empty", "256_characters", "space", "non_ascii", "tab"],
)
def test_a_malformed_key_is_400_and_writes_nothing(post, db, tenant, key):
    response = post(key=key)
    assert (response.status_code, response.get_json()) == (400, INVALID)
    assert chats_and_messages(db, tenant.id) == (0, 0)
    assert list(db.collection(f"tenants/{tenant.id}/idempotency_keys").stream()) == []


VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))


@pytest.mark.parametrize(
    "key",
    ["x", "~", (VISIBLE_ASCII * 3)[:255]],
    ids=["1_letter", "1_punctuation", "255_visible_characters"],
)
def test_keys_of_1_to_255_visible_ascii_characters_are_accepted(post, key):
    first = post(key=key)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert_replay_of(post(key=key), first)


# ---- error answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (NO_MESSAGE, "message is required"),
        (b"not json", "request body must be a JSON object"),
        ({**SEED_BODY, "agentId": 99}, "agent is not found"),
    ],
    ids=["validation", "not_json", "unknown_agent"],
)
def test_an_error_answer_is_replayed_too(post, db, tenant, body, message):
    first = post(body)
    assert (first.status_code, first.get_json()) == (400, {"message": message})
    assert REPLAYED not in first.headers
    assert_replay_of(post(body), first)
    assert chats_and_messages(db, tenant.id) == (0, 0)


def test_a_recorded_error_does_not_block_a_retry_with_another_key(post):
    assert post(NO_MESSAGE, key="first").status_code == 400
    fixed = post(key="second")
    assert fixed.status_code == 200, fixed.get_data(as_text=True)
    assert REPLAYED not in fixed.headers


def test_a_recorded_error_answers_422_for_a_different_body_under_its_key(post):
    assert post(NO_MESSAGE).status_code == 400
    response = post()
    assert (response.status_code, response.get_json()) == (422, REUSED)


# ---- a key whose first request is still running -----------------------------------------


def test_a_key_whose_first_request_is_running_answers_409(post, db, tenant):
    store = FirestoreStore(firestore.Client(project=PROJECT), Settings())
    app = bootstrap.build(Settings(project=PROJECT), store=store, carrier=LogCarrier())
    keys = idempotency.Idempotency(
        store, clock=utc_now, deadline_seconds=8, lease=dt.timedelta(seconds=60)
    )
    running, release = threading.Event(), threading.Event()
    domain_tenant = store.authenticate(tenant.id, credentials.hash_token(tenant.token))

    def handle(claim: Claim) -> Chat:
        running.set()
        assert release.wait(30)
        return app.outbound.send(domain_tenant, dict(SEED_BODY), claim)

    def resume(message: MessageRef, answer: Chat) -> Chat:
        raise AssertionError("nothing was recorded to resume")

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            keys.run, tenant.id, "key-1", idempotency.fingerprint(SEED_BODY), handle, resume
        )
        try:
            assert running.wait(30)
            response = post()
            assert (response.status_code, response.get_json()) == (409, IN_PROGRESS)
            assert 50 <= int(response.headers["Retry-After"]) <= 60  # what is left of the lease
            assert chats_and_messages(db, tenant.id) == (0, 0)
        finally:
            release.set()
        answer = first.result(30)

    assert (answer.status, answer.replayed) == (200, False)
    replay = post()
    assert answer.chat is not None
    assert (replay.status_code, replay.get_data(as_text=True)) == (
        200,
        render.to_json(render.chat_document(answer.chat)),
    )
    assert replay.headers.get(REPLAYED) == "true"
    assert chats_and_messages(db, tenant.id) == (1, 1)


# ---- the stored record ------------------------------------------------------------------


def stored_key(fingerprint: str, *, lease_ends: dt.timedelta, expires: dt.timedelta, **more):
    now = dt.datetime.now(dt.timezone.utc)
    return {
        "fingerprint": fingerprint,
        "holder": "a-request-that-died",
        "status": None,
        "body": None,
        "lease_expires_at": now + lease_ends,
        "expires_at": now + expires,
        **more,
    }


def test_a_stale_claim_whose_lease_ran_out_is_taken_over(post, db, tenant):
    record = stored_key(
        idempotency.fingerprint(SEED_BODY),
        lease_ends=-dt.timedelta(minutes=1),
        expires=dt.timedelta(hours=23),
    )
    key_document(db, tenant.id, "key-1").set(record)
    first = post()
    assert first.status_code == 200, first.get_data(as_text=True)
    assert REPLAYED not in first.headers
    assert_replay_of(post(), first)
    assert chats_and_messages(db, tenant.id) == (1, 1)


def test_a_claim_whose_lease_has_not_run_out_answers_409(post, db, tenant):
    record = stored_key(
        idempotency.fingerprint(SEED_BODY),
        lease_ends=dt.timedelta(minutes=1),
        expires=dt.timedelta(hours=23),
    )
    key_document(db, tenant.id, "key-1").set(record)
    response = post()
    assert (response.status_code, response.get_json()) == (409, IN_PROGRESS)
    assert chats_and_messages(db, tenant.id) == (0, 0)


@pytest.mark.parametrize("same_body", [True, False], ids=["same_body", "other_body"])
def test_a_record_past_its_expiry_is_treated_as_absent(post, db, tenant, same_body):
    body = SEED_BODY if same_body else {**SEED_BODY, "message": "a day ago"}
    record = stored_key(
        idempotency.fingerprint(body),
        lease_ends=-dt.timedelta(hours=25),
        expires=-dt.timedelta(minutes=1),
        status=200,
        body='{"answered": "a day ago"}',
    )
    key_document(db, tenant.id, "key-1").set(record)
    response = post()
    assert response.status_code == 200, response.get_data(as_text=True)
    assert REPLAYED not in response.headers
    assert response.get_json()["status"] == "selecting"
    assert chats_and_messages(db, tenant.id) == (1, 1)


def test_the_record_expires_24_hours_after_it_was_written(post, db, tenant):
    before = dt.datetime.now(dt.timezone.utc)
    first = post()
    after = dt.datetime.now(dt.timezone.utc)
    record = key_document(db, tenant.id, "key-1").get().to_dict()
    slack = dt.timedelta(seconds=1)
    day = dt.timedelta(hours=24)
    assert before + day - slack <= record["expires_at"] <= after + day + slack
    assert record["status"] == 200
    recorded = render.to_json(render.chat_document(documents.chat_from(record["chat"])))
    assert recorded == first.get_data(as_text=True)


# ---- a retry storm against the served function ------------------------------------------


def test_a_retry_storm_opens_one_session_and_replays_it(server, tenant, db):
    headers = {**tenant.headers, "Idempotency-Key": "storm"}
    start = threading.Barrier(PARALLEL)

    def fire(_: int) -> requests.Response:
        with requests.Session() as session:
            start.wait()
            return session.post(server + SMS_PATH, json=SEED_BODY, headers=headers, timeout=30)

    with ThreadPoolExecutor(PARALLEL) as pool:
        answers = list(pool.map(fire, range(PARALLEL)))

    assert {a.status_code for a in answers} <= {200, 409}, [a.text for a in answers]
    assert all(a.json() == IN_PROGRESS for a in answers if a.status_code == 409)
    bodies = {a.content for a in answers if a.status_code == 200}
    assert len(bodies) == 1, bodies
    [body] = bodies

    for _ in range(PARALLEL):
        again = requests.post(server + SMS_PATH, json=SEED_BODY, headers=headers, timeout=30)
        assert (again.status_code, again.content) == (200, body)
        assert again.headers.get(REPLAYED) == "true"

    assert chats_and_messages(db, tenant.id) == (1, 1)
