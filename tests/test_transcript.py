"""SPEC 10.5: GET /apps/api/v1/chats/{id}/messages, the transcript of a session, paged."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from conftest import SEED_BODY, SMS_PATH, Tenant

MESSAGE_KEYS = [
    "id", "chat_id", "direction", "from", "to", "text", "agent_id", "encoding", "segments",
    "status", "carrier_id", "error_code", "created_at", "status_history", "scheduled_for",
]  # fmt: skip
LIMIT_INVALID = {"message": "limit is invalid"}
TOKEN_INVALID = {"message": "page_token is invalid"}


@pytest.fixture
def chat_with(send: Callable[..., Any]) -> Callable[[int], int]:
    """A session of ``count`` messages (the first opens it, the rest are sent by agent 1)."""

    def make(count: int) -> int:
        first = send(agentId=1, message="message 0")
        assert first.status_code == 200, first.get_json()
        for n in range(1, count):
            assert send(agentId=1, message=f"message {n}").status_code == 200
        return int(first.get_json()["id"])

    return make


def read(
    app_client: Any, tenant: Tenant, chat_id: int | str, query: str = "", **headers: str
) -> Any:
    path = f"/apps/api/v1/chats/{chat_id}/messages" + (f"?{query}" if query else "")
    return app_client.get(path, headers={**tenant.headers, **headers})


def test_the_transcript_lists_each_message_with_its_keys_in_order(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    chat_id = chat_with(2)
    answer = read(app_client, tenant, chat_id)

    assert answer.status_code == 200
    page = answer.get_json()
    assert list(page) == ["messages", "next_page_token"]
    assert page["next_page_token"] is None
    first, second = page["messages"]
    assert list(first) == MESSAGE_KEYS
    assert [first["text"], second["text"]] == ["message 0", "message 1"]
    assert first["chat_id"] == chat_id
    assert (first["direction"], first["from"], first["to"]) == (
        "outbound",
        "+16285550199",
        "+14155550100",
    )
    assert (first["agent_id"], first["encoding"], first["segments"]) == (1, "GSM-7", 1)
    assert first["status"] == "sent"
    assert re.fullmatch(r"(LM|SM)[0-9a-f]{32}", first["carrier_id"])  # the log carrier or Twilio
    assert first["error_code"] is None
    assert [c["status"] for c in first["status_history"]] == ["queued", "sending", "sent"]
    assert first["status_history"][0]["at"] == first["created_at"]
    assert first["created_at"].endswith("Z")
    assert first["id"] != second["id"]


def test_pages_follow_one_another_oldest_first_until_the_token_is_null(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    chat_id = chat_with(5)
    texts, token, pages = [], None, 0
    while True:
        query = "limit=2" + (f"&page_token={token}" if token else "")
        page = read(app_client, tenant, chat_id, query).get_json()
        texts += [m["text"] for m in page["messages"]]
        pages += 1
        token = page["next_page_token"]
        if token is None:
            break

    assert texts == [f"message {n}" for n in range(5)]
    assert pages == 3


def test_a_page_exactly_as_long_as_what_is_left_has_no_next_token(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    chat_id = chat_with(3)

    assert read(app_client, tenant, chat_id, "limit=3").get_json()["next_page_token"] is None
    two = read(app_client, tenant, chat_id, "limit=2").get_json()
    rest = read(app_client, tenant, chat_id, f"limit=2&page_token={two['next_page_token']}")
    assert [m["text"] for m in rest.get_json()["messages"]] == ["message 2"]
    assert rest.get_json()["next_page_token"] is None


def test_the_default_page_is_100_and_200_is_the_most_a_page_holds(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    chat_id = chat_with(1)

    assert len(read(app_client, tenant, chat_id).get_json()["messages"]) == 1
    assert read(app_client, tenant, chat_id, "limit=200").status_code == 200
    assert read(app_client, tenant, chat_id, "limit=1").status_code == 200


@pytest.mark.parametrize(
    "limit", ["0", "201", "-1", "1.5", "abc", "", "1e2", " 5", "0x10", "99999999999999999999"]
)
def test_a_bad_limit_is_400(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int], limit: str
) -> None:
    chat_id = chat_with(1)
    answer = read(app_client, tenant, chat_id, f"limit={limit}")

    assert (answer.status_code, answer.get_json()) == (400, LIMIT_INVALID)


@pytest.mark.parametrize(
    "token", ["", "x", "!!!!", "bm90IGEgdG9rZW4", "MTIzNDU", "MTIzLmFiYw==", "MTIzLi4u", "%00"]
)
def test_a_page_token_this_service_did_not_issue_is_400(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int], token: str
) -> None:
    chat_id = chat_with(1)
    answer = read(app_client, tenant, chat_id, f"page_token={token}")

    assert (answer.status_code, answer.get_json()) == (400, TOKEN_INVALID)


def test_limit_is_judged_before_the_page_token(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    answer = read(app_client, tenant, chat_with(1), "limit=0&page_token=x")

    assert answer.get_json() == LIMIT_INVALID


def test_an_unknown_chat_or_another_tenants_is_404(
    app_client: Any,
    tenant: Tenant,
    make_tenant: Callable[..., Tenant],
    chat_with: Callable[[int], int],
) -> None:
    chat_id = chat_with(1)
    other = make_tenant()

    assert read(app_client, other, chat_id).status_code == 404
    assert read(app_client, tenant, chat_id + 1000).get_json() == {"message": "Not Found"}


def test_the_transcript_needs_the_tenants_credentials_and_only_get(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    chat_id = chat_with(1)
    path = f"/apps/api/v1/chats/{chat_id}/messages"

    unauthorized = app_client.get(path)
    assert (unauthorized.status_code, unauthorized.get_json()) == (401, {"message": "Unauthorized"})
    refused = app_client.post(path, headers=tenant.headers)
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "GET"


def test_a_ucs_2_message_shows_its_encoding_and_segments(
    app_client: Any, tenant: Tenant, send: Callable[..., Any]
) -> None:
    text = "Ваш заказ отправлен! " * 4  # 84 UTF-16 code units
    chat_id = send(message=text).get_json()["id"]
    [message] = read(app_client, tenant, chat_id).get_json()["messages"]

    assert (message["text"], message["encoding"], message["segments"]) == (text.strip(), "UCS-2", 2)


def test_a_finished_chat_keeps_its_transcript(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    chat_id = chat_with(2)
    ended = app_client.patch(
        f"/apps/api/v1/chats/{chat_id}", json={"status": "finished"}, headers=tenant.headers
    )
    assert ended.status_code == 200

    assert len(read(app_client, tenant, chat_id).get_json()["messages"]) == 2


def test_a_new_session_has_only_its_own_messages(
    app_client: Any, tenant: Tenant, chat_with: Callable[[int], int]
) -> None:
    old = chat_with(2)
    app_client.patch(
        f"/apps/api/v1/chats/{old}", json={"status": "finished"}, headers=tenant.headers
    )
    new = app_client.post(SMS_PATH, json={**SEED_BODY, "message": "fresh"}, headers=tenant.headers)

    [message] = read(app_client, tenant, new.get_json()["id"]).get_json()["messages"]
    assert message["text"] == "fresh"
