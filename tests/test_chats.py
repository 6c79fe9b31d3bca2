"""SPEC 10.2 through the HTTP function: reading a chat, and ending it with PATCH.

Stored layout (sms/repository/): tenants/{t}/chats/{id}, tenants/{t}/chats/{id}/messages/*,
tenants/{t}/active_sessions/{E.164}.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from conftest import SEED_BODY, SMS_PATH, MovableClock, Tenant, basic, count_documents
from sms.devtools.seed import DEMO_AGENT

CHATS = "/apps/api/v1/chats"
NOT_FOUND = {"message": "Not Found"}
ALREADY_ENDED = {"message": "Chat is already ended"}
ACTIVE = "Outbound SMS failed. Consumer is already in an active SMS session."
MUST_BE_FINISHED = {"message": 'status must be "finished"'}
FINISH = {"status": "finished"}
SMS_ON = {"sms_enabled": True, "outbound_sms_enabled": True}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def ordered(response: Any) -> list[Any]:
    """The JSON body as nested (key, value) pairs: equality then also compares key order."""
    return json.loads(response.get_data(as_text=True), object_pairs_hook=list)


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reader(client: Any, tenant: Tenant) -> Any:
    def read(chat_id: Any, as_: Any = None) -> Any:
        return client.get(f"{CHATS}/{chat_id}", headers=(as_ or tenant).headers)

    return read


def ender(client: Any, tenant: Tenant) -> Any:
    def end(chat_id: Any, body: Any = FINISH, as_: Any = None) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.patch(f"{CHATS}/{chat_id}", data=data, headers=(as_ or tenant).headers)

    return end


@pytest.fixture
def get(app_client, tenant):
    return reader(app_client, tenant)


@pytest.fixture
def patch(app_client, tenant):
    return ender(app_client, tenant)


@pytest.fixture
def clocked_get(clocked_client, tenant):
    """`get`, from the function on the test's clock (conftest's `clocked_client`)."""
    return reader(clocked_client, tenant)


@pytest.fixture
def clocked_patch(clocked_client, tenant):
    """`patch`, to the function on the test's clock."""
    return ender(clocked_client, tenant)


@pytest.fixture
def quick(make_tenant):
    """A tenant whose sessions expire after one idle second."""
    return make_tenant(settings={**SMS_ON, "session_timeout_seconds": 1})


def assert_error(response: Any, status: int, body: dict[str, str]) -> None:
    assert (response.status_code, response.get_json()) == (status, body)
    assert response.mimetype == "application/json"


# ---- GET --------------------------------------------------------------------------------


def test_get_answers_the_document_the_post_answered(send, get):
    posted = send(agentId=1)
    assert posted.status_code == 200
    read = get(posted.get_json()["id"])
    assert read.status_code == 200
    assert read.mimetype == "application/json"
    assert ordered(read) == ordered(posted)


def test_get_of_a_session_without_agent_matches_the_post(send, get):
    posted = send()
    assert ordered(get(posted.get_json()["id"])) == ordered(posted)


def test_get_accepts_a_trailing_slash(send, app_client, tenant):
    posted = send()
    read = app_client.get(f"{CHATS}/{posted.get_json()['id']}/", headers=tenant.headers)
    assert read.status_code == 200
    assert ordered(read) == ordered(posted)


def test_get_of_an_unknown_id_is_not_found(send, get):
    chat_id = ok(send())["id"]
    assert_error(get(chat_id + 1000), 404, NOT_FOUND)


@pytest.mark.parametrize("chat_id", ["0", "-1", "abc", "1.5", "1e3", "1" * 30])
def test_ids_that_are_not_positive_integers_are_not_found(send, get, patch, chat_id):
    ok(send())  # chat 1 exists: none of these may reach it
    assert_error(get(chat_id), 404, NOT_FOUND)
    assert_error(patch(chat_id), 404, NOT_FOUND)


def test_another_tenants_chat_is_not_found(send, get, patch, make_tenant):
    chat_id = ok(send())["id"]
    stranger = make_tenant()
    assert_error(get(chat_id, as_=stranger), 404, NOT_FOUND)
    assert_error(patch(chat_id, as_=stranger), 404, NOT_FOUND)
    assert ok(get(chat_id))["status"] == "selecting"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_on_a_chat_answer_405_allowing_get_and_patch(
    send, app_client, tenant, method
):
    chat_id = ok(send())["id"]
    response = app_client.open(
        f"{CHATS}/{chat_id}", method=method, json=FINISH, headers=tenant.headers
    )
    assert_error(response, 405, {"message": "Method Not Allowed"})
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "PATCH"} <= allowed
    assert method not in allowed


@pytest.mark.parametrize(
    "headers",
    [{}, basic("nobody", "wrong")],
    ids=["no_credentials", "unknown_tenant"],
)
def test_get_without_valid_credentials_is_unauthorized(send, app_client, headers):
    chat_id = ok(send())["id"]
    response = app_client.get(f"{CHATS}/{chat_id}", headers=headers)
    assert_error(response, 401, {"message": "Unauthorized"})
    assert response.headers["WWW-Authenticate"] == 'Basic realm="sms"'


def test_get_with_another_tenants_token_is_unauthorized(send, app_client, tenant, make_tenant):
    chat_id = ok(send())["id"]
    stranger = make_tenant()
    response = app_client.get(f"{CHATS}/{chat_id}", headers=basic(tenant.id, stranger.token))
    assert_error(response, 401, {"message": "Unauthorized"})


# ---- PATCH: ending a session --------------------------------------------------------------


def test_patch_finished_ends_the_session(clocked_send, clocked_patch, clock: MovableClock):
    created = ok(clocked_send(agentId=1))
    now = clock.advance(1.1)
    ended = ok(clocked_patch(created["id"]))
    assert ended["id"] == created["id"]
    assert ended["status"] == "finished"
    assert TIMESTAMP.fullmatch(ended["ends_at"])
    assert when(ended["ends_at"]) == now
    elapsed = when(ended["ends_at"]) - when(created["created_at"])
    assert ended["chat_duration"] == int(elapsed.total_seconds())
    assert ended["chat_duration"] == 1
    assert [p["ended_at"] for p in ended["participants"]] == [ended["ends_at"]] * 2


def test_patch_changes_only_the_end_of_the_document(send, patch):
    created = ok(send(agentId=1))
    ended = ok(patch(created["id"]))
    assert list(ended) == list(created)
    ending = {"status", "ends_at", "chat_duration", "participants"}
    assert {k: v for k, v in ended.items() if k not in ending} == {
        k: v for k, v in created.items() if k not in ending
    }
    for old, new in zip(created["participants"], ended["participants"], strict=True):
        assert new == {**old, "ended_at": ended["ends_at"]}


def test_patch_frees_the_consumer_for_a_new_session(send, patch):
    old = ok(send())
    ok(patch(old["id"]))
    new = ok(send())
    assert new["id"] != old["id"]
    assert new["end_user"]["id"] == old["end_user"]["id"]
    assert new["status"] == "selecting"


def test_get_after_patch_shows_the_ended_document(send, get, patch):
    created = ok(send(agentId=1))
    ended = patch(created["id"])
    assert ended.status_code == 200
    assert ordered(get(created["id"])) == ordered(ended)


def test_patch_accepts_a_trailing_slash(send, app_client, tenant):
    chat_id = ok(send())["id"]
    response = app_client.patch(f"{CHATS}/{chat_id}/", json=FINISH, headers=tenant.headers)
    assert ok(response)["status"] == "finished"


def test_ending_an_ended_chat_is_refused(send, get, patch):
    chat_id = ok(send())["id"]
    ended = ok(patch(chat_id))
    assert_error(patch(chat_id), 400, ALREADY_ENDED)
    assert ok(get(chat_id)) == ended


def test_patch_of_an_unknown_id_is_not_found(send, patch):
    chat_id = ok(send())["id"]
    assert_error(patch(chat_id + 1000), 404, NOT_FOUND)


@pytest.mark.parametrize(
    "body",
    [
        {"status": "open"},
        {"status": "FINISHED"},
        {},
        [],
        "finished",
        b"not json",
        b"",
        {"status": None},
    ],
    ids=["open", "upper_case", "empty_object", "array", "string", "not_json", "empty", "null"],
)
def test_patch_bodies_other_than_finished_are_refused_and_write_nothing(
    send, patch, db, tenant, body
):
    chat = db.document(f"tenants/{tenant.id}/chats/{ok(send())['id']}")
    stored, before = chat.get().to_dict(), count_documents(db, tenant.id)
    assert_error(patch(chat.id, body), 400, MUST_BE_FINISHED)
    assert count_documents(db, tenant.id) == before
    assert chat.get().to_dict() == stored
    assert send().get_json() == {"message": ACTIVE}  # the consumer is still in the session


def test_a_session_ended_by_patch_cannot_be_sent_on_behalf_anymore(send, patch, db, tenant):
    old = ok(send(agentId=1, message="first"))
    ok(patch(old["id"]))
    new = ok(send(agentId=1, message="second"))
    assert new["id"] != old["id"]
    assert new["status"] == "assigned"
    for chat, text in ((old, "first"), (new, "second")):
        stored = db.collection(f"tenants/{tenant.id}/chats/{chat['id']}/messages").stream()
        assert [m.get("text") for m in stored] == [text]


# ---- sessions finished by idle expiry (6.4), on a clock the test moves ------------------


def test_get_shows_an_expired_session_finished_when_it_expired(
    clocked_send, clocked_get, clock: MovableClock, quick
):
    created = ok(clocked_send(as_=quick))
    clock.advance(1.2)
    read = ok(clocked_get(created["id"], as_=quick))
    expired_at = stamp(when(created["created_at"]) + dt.timedelta(seconds=1))
    assert read["status"] == "finished"
    assert read["ends_at"] == expired_at
    assert read["chat_duration"] == 1
    assert [p["ended_at"] for p in read["participants"]] == [expired_at]


def test_patch_of_an_expired_session_is_already_ended(
    clocked_send, clocked_get, clocked_patch, clock: MovableClock, quick
):
    created = ok(clocked_send(as_=quick))
    clock.advance(1.2)
    assert_error(clocked_patch(created["id"], as_=quick), 400, ALREADY_ENDED)
    assert ok(clocked_get(created["id"], as_=quick))["ends_at"] == stamp(
        when(created["created_at"]) + dt.timedelta(seconds=1)
    )


def test_get_of_a_session_replaced_after_expiry_shows_it_finished(
    clocked_send, clocked_get, clock: MovableClock, quick
):
    old = ok(clocked_send(as_=quick))
    clock.advance(1.2)
    new = ok(clocked_send(as_=quick))
    assert new["id"] != old["id"]
    read = ok(clocked_get(old["id"], as_=quick))
    assert read["status"] == "finished"
    assert read["ends_at"] == stamp(when(old["created_at"]) + dt.timedelta(seconds=1))
    assert ok(clocked_get(new["id"], as_=quick))["status"] == "selecting"


def test_an_active_session_reads_as_active_within_its_timeout(
    clocked_send, clocked_get, clock: MovableClock, make_tenant
):
    patient = make_tenant(
        settings={**SMS_ON, "session_timeout_seconds": 60}, agents={1: DEMO_AGENT}
    )
    created = ok(clocked_send({**SEED_BODY, "agentId": 1}, as_=patient))
    clock.advance(59.9)
    read = ok(clocked_get(created["id"], as_=patient))
    assert (read["status"], read["ends_at"]) == ("assigned", None)


def test_a_chat_ended_while_agents_send_on_it_ends_after_its_last_message(
    server: str, tenant: Tenant
) -> None:
    for round_ in range(3):
        to = f"+1 415-555-02{round_:02d}"
        opened = requests.post(
            server + SMS_PATH,
            json={**SEED_BODY, "end_user_number": to, "agentId": 1},
            headers=tenant.headers,
            timeout=30,
        )
        chat_id = opened.json()["id"]
        start = threading.Barrier(9)

        def act(n: int, to: str = to, chat_id: int = chat_id, start: Any = start) -> int:
            start.wait()
            if n == 4:
                return requests.patch(
                    f"{server}/apps/api/v1/chats/{chat_id}",
                    json={"status": "finished"},
                    headers=tenant.headers,
                    timeout=30,
                ).status_code
            body = {**SEED_BODY, "end_user_number": to, "agentId": 1, "message": f"m{n}"}
            return requests.post(
                server + SMS_PATH, json=body, headers=tenant.headers, timeout=30
            ).status_code

        with ThreadPoolExecutor(9) as pool:
            answers = list(pool.map(act, range(9)))

        assert answers[4] == 200
        chat = requests.get(
            f"{server}/apps/api/v1/chats/{chat_id}", headers=tenant.headers, timeout=30
        ).json()
        messages = requests.get(
            f"{server}/apps/api/v1/chats/{chat_id}/messages", headers=tenant.headers, timeout=30
        ).json()["messages"]
        assert chat["status"] == "finished"
        assert all(m["created_at"] <= chat["ends_at"] for m in messages), (chat, messages)
        assert all(p["ended_at"] == chat["ends_at"] for p in chat["participants"])
