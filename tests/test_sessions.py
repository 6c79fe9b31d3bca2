"""SPEC section 6 through the HTTP function, with a look at what Firestore holds.

Stored layout (sms/repository/): tenants/{t}/chats/{id}, tenants/{t}/chats/{id}/messages/*,
tenants/{t}/active_sessions/{E.164}, tenants/{t}/end_users/{E.164}.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest

from conftest import SEED_BODY, MovableClock, count_documents
from sms.devtools.seed import DEMO_AGENT

ACTIVE = "Outbound SMS failed. Consumer is already in an active SMS session."
CONSUMER = "+14155550100"
OUTBOUND = "+16285550199"
OTHER_OUTBOUND = "+16285550198"
SMS_ON = {"sms_enabled": True, "outbound_sms_enabled": True}
JANE = {**DEMO_AGENT, "email": "jane.roe@foo.com", "name": "Jane Roe", "first_name": "Jane"}


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True))


def assert_active_session_error(response: Any) -> None:
    assert response.status_code == 400
    assert response.get_json() == {"message": ACTIVE}


def when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def stored(db: Any, tenant: Any, path: str) -> dict[str, Any] | None:
    return db.document(f"tenants/{tenant.id}/{path}").get().to_dict()


def messages(db: Any, tenant: Any, chat_id: int) -> list[dict[str, Any]]:
    docs = db.collection(f"tenants/{tenant.id}/chats/{chat_id}/messages").stream()
    return sorted((d.to_dict() for d in docs), key=lambda m: m["created_at"])


@pytest.fixture
def two_numbers(make_tenant):
    """A tenant with two outbound numbers and two agents (1 and 2)."""
    return make_tenant(
        outbound_numbers={OUTBOUND: {"sms_enabled": True}, OTHER_OUTBOUND: {"sms_enabled": True}},
        agents={1: dict(DEMO_AGENT), 2: dict(JANE)},
    )


# ---- 6.2 one active session per consumer per tenant --------------------------------------


def test_second_request_for_the_same_consumer_is_refused_and_writes_nothing(send, db, tenant):
    ok(send())
    before = count_documents(db, tenant.id)
    assert_active_session_error(send())
    assert count_documents(db, tenant.id) == before


@pytest.mark.parametrize("written_as", ["(415) 555-0100", "4155550100", "+1 415 555 0100"])
def test_same_consumer_through_another_outbound_number_in_another_format_is_refused(
    send, db, two_numbers, written_as
):
    ok(send(as_=two_numbers))
    before = count_documents(db, two_numbers.id)
    response = send(as_=two_numbers, end_user_number=written_as, outbound_number="(628) 555-0198")
    assert_active_session_error(response)
    assert count_documents(db, two_numbers.id) == before


def test_a_different_consumer_is_not_blocked(send):
    first = ok(send())
    second = ok(send(end_user_number="+1 415-555-0101"))
    assert second["id"] != first["id"]
    assert second["end_user"]["id"] != first["end_user"]["id"]


def test_the_same_consumer_in_another_tenant_is_not_blocked(send, make_tenant):
    ok(send())
    other = make_tenant(agents={1: dict(DEMO_AGENT)})
    doc = ok(send(as_=other))
    assert doc["outbound_number"] == OUTBOUND


def test_session_marks_the_consumer_and_points_at_the_chat(send, db, tenant):
    doc = ok(send(end_user_number="(415) 555-0100"))
    mark = stored(db, tenant, f"active_sessions/{CONSUMER}")
    assert mark["chat_id"] == doc["id"]
    assert stored(db, tenant, f"end_users/{CONSUMER}")["id"] == doc["end_user"]["id"]
    chat = stored(db, tenant, f"chats/{doc['id']}")
    assert (chat["id"], chat["status"], chat["outbound_number"]) == (
        doc["id"],
        "selecting",
        OUTBOUND,
    )


# ---- 6.3 sending on an agent's behalf ----------------------------------------------------


@pytest.mark.parametrize(
    "second_agent",
    [
        {"agentId": 1},
        {"agent_id": "1"},
        {"agentEmail": "john.doe@foo.com"},
        {"agent_email": "JOHN.DOE@foo.com"},
    ],
)
def test_the_sessions_agent_sends_again_into_the_same_session(send, db, tenant, second_agent):
    first = ok(send(agentId=1, message="first"))
    second = ok(send({**SEED_BODY, **second_agent, "message": "second"}))
    assert second["id"] == first["id"]
    assert second == first
    assert [m["text"] for m in messages(db, tenant, first["id"])] == ["first", "second"]


def test_agent_named_by_email_first_can_send_again_by_id(send, db, tenant):
    first = ok(send(agentEmail="john.doe@foo.com", message="first"))
    second = ok(send(agentId=1, message="second"))
    assert second == first
    assert len(messages(db, tenant, first["id"])) == 2


def test_sending_on_behalf_does_not_open_a_new_chat(send, db, tenant):
    first = ok(send(agentId=1))
    ok(send(agentId=1, message="again"))
    chats = list(db.collection(f"tenants/{tenant.id}/chats").stream())
    assert [c.id for c in chats] == [str(first["id"])]
    assert stored(db, tenant, f"active_sessions/{CONSUMER}")["chat_id"] == first["id"]


@pytest.mark.parametrize(
    "second",
    [
        {"agentId": 2},
        {"agentEmail": "jane.roe@foo.com"},
        {},
        {"agentId": 1, "outbound_number": OTHER_OUTBOUND},
    ],
    ids=["another_agent_by_id", "another_agent_by_email", "no_agent", "another_outbound_number"],
)
def test_sending_on_behalf_needs_the_sessions_agent_and_number(send, db, two_numbers, second):
    ok(send(as_=two_numbers, agentId=1))
    before = count_documents(db, two_numbers.id)
    assert_active_session_error(send({**SEED_BODY, **second}, as_=two_numbers))
    assert count_documents(db, two_numbers.id) == before


def test_an_agent_cannot_send_into_a_session_opened_without_one(send, db, tenant):
    ok(send())
    before = count_documents(db, tenant.id)
    assert_active_session_error(send(agentId=1))
    assert count_documents(db, tenant.id) == before


# ---- 6.4 idle expiry: the function runs on a clock the test moves ------------------------


@pytest.fixture
def quick(make_tenant):
    """A tenant whose sessions expire after one idle second."""
    return make_tenant(
        settings={**SMS_ON, "session_timeout_seconds": 1}, agents={1: dict(DEMO_AGENT)}
    )


def test_an_expired_session_is_finished_and_a_new_one_opens(
    clocked_send, clock: MovableClock, db, quick
):
    old = ok(clocked_send(as_=quick))
    clock.advance(1.3)
    new = ok(clocked_send(as_=quick))
    assert new["id"] != old["id"]
    assert new["end_user"]["id"] == old["end_user"]["id"]
    assert new["status"] == "selecting"
    finished = stored(db, quick, f"chats/{old['id']}")
    assert finished["status"] == "finished"
    assert finished["ends_at"] is not None
    assert when(old["created_at"]) < finished["ends_at"] <= when(new["created_at"])
    assert stored(db, quick, f"active_sessions/{CONSUMER}")["chat_id"] == new["id"]


def test_a_session_within_its_timeout_still_blocks(clocked_send, clock: MovableClock, make_tenant):
    patient = make_tenant(settings={**SMS_ON, "session_timeout_seconds": 60})
    ok(clocked_send(as_=patient))
    clock.advance(59.9)
    assert_active_session_error(clocked_send(as_=patient))


def test_after_expiry_the_new_session_is_the_one_that_blocks(
    clocked_send, clock: MovableClock, quick
):
    ok(clocked_send(as_=quick))
    clock.advance(1.3)
    ok(clocked_send(as_=quick))
    assert_active_session_error(clocked_send(as_=quick))


def test_sending_on_behalf_keeps_the_session_alive(clocked_send, clock: MovableClock, make_tenant):
    """The timeout counts idle time: a message sent in the session restarts it."""
    tenant = make_tenant(
        settings={**SMS_ON, "session_timeout_seconds": 2}, agents={1: dict(DEMO_AGENT)}
    )
    first = ok(clocked_send(as_=tenant, agentId=1))
    clock.advance(1.2)
    assert ok(clocked_send(as_=tenant, agentId=1, message="still here"))["id"] == first["id"]
    clock.advance(1.2)  # 2.4 s after creation, 1.2 s after the last message
    assert_active_session_error(clocked_send(as_=tenant))


# ---- 6.6 the message is stored with its session ------------------------------------------


def test_the_message_is_stored_with_its_session(send, db, tenant):
    doc = ok(
        send(
            end_user_number="(415) 555-0100", outbound_number="628-555-0199", message="hello there"
        )
    )
    [message] = messages(db, tenant, doc["id"])
    assert message["text"] == "hello there"
    assert (message["from"], message["to"]) == (OUTBOUND, CONSUMER)
    assert message["created_at"] == when(doc["created_at"])
    # Stored queued and handed to the (log) carrier, which took it before the answer came.
    assert message["status"] == "sent"
    assert [change["status"] for change in message["status_history"]] == [
        "queued",
        "sending",
        "sent",
    ]
    assert re.fullmatch(r"(LM|SM)[0-9a-f]{32}", message["carrier_id"])  # the log carrier or Twilio
    assert (message["encoding"], message["segments"]) == ("GSM-7", 1)


def test_a_message_sent_on_behalf_is_stored_in_the_existing_chat(send, db, tenant):
    first = ok(send(agentId=1, message="one"))
    ok(send(agentEmail="john.doe@foo.com", message="two"))
    stored_messages = messages(db, tenant, first["id"])
    assert [m["text"] for m in stored_messages] == ["one", "two"]
    assert all(
        (m["from"], m["to"], m["status"]) == (OUTBOUND, CONSUMER, "sent") for m in stored_messages
    )


# ---- 6.5 ids ----------------------------------------------------------------------------


def test_ids_are_distinct_positive_integers_across_requests(send, quick):
    docs = [
        ok(send(as_=quick, end_user_number="+1 415-555-0101")),
        ok(send(as_=quick, end_user_number="+1 415-555-0102", agentId=1)),
        ok(send(as_=quick, end_user_number="+1 415-555-0103")),
        ok(send(as_=quick, end_user_number="+1 415-555-0104", agentId=1)),
    ]
    chat_ids = [d["id"] for d in docs]
    end_user_ids = [d["end_user"]["id"] for d in docs]
    participant_ids = [p["id"] for d in docs for p in d["participants"]]
    for ids in (chat_ids, end_user_ids, participant_ids):
        assert all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids)
        assert len(set(ids)) == len(ids)
    assert len(participant_ids) == 6


def test_a_new_session_after_expiry_gets_new_chat_and_participant_ids(
    clocked_send, clock: MovableClock, quick
):
    old = ok(clocked_send(as_=quick, agentId=1))
    clock.advance(1.3)
    new = ok(clocked_send(as_=quick, agentId=1))
    assert new["id"] != old["id"]
    old_ids = {p["id"] for p in old["participants"]}
    assert old_ids.isdisjoint(p["id"] for p in new["participants"])


# ---- 6.1 / 6.6 a failed request writes nothing -------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"agentId": 99},
        {"message": "   "},
        {"outbound_number": "+1 628-555-0177"},
        {"ticket_id": "x" * 256},
        {"agentId": 1, "agentEmail": "jane.roe@foo.com"},
    ],
    ids=[
        "agent_not_found",
        "message_blank",
        "outbound_not_found",
        "ticket_too_long",
        "agents_disagree",
    ],
)
def test_a_request_that_fails_validation_writes_nothing(send, db, two_numbers, change):
    before = count_documents(db, two_numbers.id)
    response = send({**SEED_BODY, **change}, as_=two_numbers)
    assert response.status_code == 400
    assert count_documents(db, two_numbers.id) == before
