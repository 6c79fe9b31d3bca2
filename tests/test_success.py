"""A successful request through the HTTP function: the chat document of SPEC section 5.

The seed's four success examples are compared whole, except for what is generated (ids and
times, checked by type, format and their relations) and the deliberate differences of SPEC
section 9 (agentEmail fills agent_info; ticket_id comes back in out_ticket_id).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest

from conftest import CHAT_KEYS, SEED_BODY
from sms.devtools.seed import DEMO_AGENT

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

END_USER_PARTICIPANT = {
    "id": 205,
    "type": "end_user",
    "status": "connected",
    "chat_id": 114,
    "user_id": None,
    "end_user_id": 87,
    "chat_duration": None,
    "connected_at": "2021-10-04T17:20:51.000Z",
    "ended_at": None,
    "fail_reason": "nothing",
}
AGENT_PARTICIPANT = {
    "id": 206,
    "type": "agent",
    "status": "connected",
    "chat_id": 114,
    "user_id": 1,
    "end_user_id": None,
    "chat_duration": None,
    "connected_at": "2021-10-04T17:20:53.000Z",
    "ended_at": None,
    "fail_reason": "nothing",
}
# The seed's answer without an agent ("ticket id" and "without ticket" examples).
SEED_SELECTING: dict[str, Any] = {
    "id": 114,
    "lang": "en",
    "chat_type": "Messaging (SMS)",
    "status": "selecting",
    "created_at": "2021-10-04T17:20:51.000Z",
    "queued_at": None,
    "assigned_at": None,
    "ends_at": None,
    "wait_duration": 0,
    "chat_duration": 0,
    "rating": None,
    "has_feedback": False,
    "out_ticket_id": None,
    "out_ticket_url": None,
    "verified": False,
    "disconnected_by": "disconnected_by_unknown",
    "fail_reason": None,
    "selected_menu": None,
    "menu_path": None,
    "agent_info": None,
    "end_user": {"id": 87, "identifier": None, "out_contact_id": None},
    "photos": [],
    "videos": [],
    "transfers": [],
    "participants": [END_USER_PARTICIPANT],
    "offer_type": None,
    "offer_events": [],
    "answer_type": "manual",
    "outbound_number": "+16285550199",
}
# The seed's answer of the agentId example.
SEED_ASSIGNED: dict[str, Any] = {
    **SEED_SELECTING,
    "status": "assigned",
    "assigned_at": "2021-10-04T17:20:53.000Z",
    "agent_info": {
        "id": 1,
        "agent_number": 9,
        "email": "john.doe@foo.com",
        "name": "John Doe",
        "first_name": "John",
        "last_name": "Doe",
        "avatar_url": "https://foobar.com/johndoe",
    },
    "participants": [END_USER_PARTICIPANT, AGENT_PARTICIPANT],
}
WITHOUT_TICKET = {k: v for k, v in SEED_BODY.items() if k != "ticket_id"}


def parse(response: Any) -> dict[str, Any]:
    """The body as sent, keys in the order they came."""
    return json.loads(response.get_data(as_text=True))


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/json")
    return parse(response)


def when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def expected_from_seed(seed: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """The seed's answer with the generated ids and times of `actual` put in.

    Only the chat id, the end user id, the participant ids and the chat's times are taken
    from `actual`; everything that refers to them is derived here, so equality checks the
    relations: chat_id = id, end_user_id = end_user.id, connected_at = created_at for the
    end user and assigned_at for the agent.
    """
    expected = copy.deepcopy(seed)
    expected["id"] = actual["id"]
    expected["created_at"] = actual["created_at"]
    if seed["assigned_at"] is not None:
        expected["assigned_at"] = actual["assigned_at"]
    expected["end_user"]["id"] = actual["end_user"]["id"]
    for participant, got in zip(expected["participants"], actual["participants"], strict=True):
        participant["id"] = got["id"]
        participant["chat_id"] = expected["id"]
        if participant["type"] == "end_user":
            participant["end_user_id"] = expected["end_user"]["id"]
            participant["connected_at"] = expected["created_at"]
        else:
            participant["connected_at"] = expected["assigned_at"]
    return expected


def assert_generated_fields_are_well_formed(doc: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    assert is_id(doc["id"])
    assert is_id(doc["end_user"]["id"])
    participant_ids = [p["id"] for p in doc["participants"]]
    assert all(is_id(i) for i in participant_ids)
    assert len(set(participant_ids)) == len(participant_ids)
    assert TIMESTAMP.fullmatch(doc["created_at"])
    assert now - dt.timedelta(minutes=1) <= when(doc["created_at"]) <= now + dt.timedelta(seconds=1)
    if doc["assigned_at"] is not None:
        assert TIMESTAMP.fullmatch(doc["assigned_at"])
        assert when(doc["created_at"]) <= when(doc["assigned_at"]) <= now + dt.timedelta(seconds=1)


# ---- the seed's four success examples ----------------------------------------------------


def test_seed_example_with_ticket_id_returns_the_ticket_in_out_ticket_id(send):
    doc = ok(send())
    assert_generated_fields_are_well_formed(doc)
    # SPEC section 9: the seed answers out_ticket_id null; here the ticket id is returned.
    expected = {**SEED_SELECTING, "out_ticket_id": "5006x00000XXxxxXXX"}
    assert doc == expected_from_seed(expected, doc)
    assert list(doc) == CHAT_KEYS


def test_seed_example_with_agent_id_1_matches_the_seed_answer(send):
    doc = ok(send({**WITHOUT_TICKET, "agentId": 1}))
    assert_generated_fields_are_well_formed(doc)
    assert doc == expected_from_seed(SEED_ASSIGNED, doc)
    assert list(doc) == CHAT_KEYS


def test_seed_example_with_agent_email_fills_agent_info(send):
    doc = ok(send({**WITHOUT_TICKET, "agentEmail": "john.doe@foo.com"}))
    assert_generated_fields_are_well_formed(doc)
    # SPEC section 9: the seed answers agent_info null here; the assigned agent is shown.
    assert doc == expected_from_seed(SEED_ASSIGNED, doc)
    assert list(doc) == CHAT_KEYS


def test_seed_example_without_ticket_id_matches_the_seed_answer(send):
    doc = ok(send(WITHOUT_TICKET))
    assert_generated_fields_are_well_formed(doc)
    assert doc == expected_from_seed(SEED_SELECTING, doc)
    assert list(doc) == CHAT_KEYS


def test_nested_objects_keep_the_seed_key_order(send):
    doc = ok(send({**WITHOUT_TICKET, "agentId": 1}))
    assert list(doc["end_user"]) == ["id", "identifier", "out_contact_id"]
    assert list(doc["agent_info"]) == list(SEED_ASSIGNED["agent_info"])
    assert [list(p) for p in doc["participants"]] == [list(END_USER_PARTICIPANT)] * 2


# ---- agents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "agent_field",
    [
        {"agent_id": 1},
        {"agentId": 1},
        {"agent_id": "1"},
        {"agentId": "1"},
        {"agent_email": "john.doe@foo.com"},
        {"agentEmail": "john.doe@foo.com"},
        {"agentEmail": "John.Doe@FOO.com"},
        {"agent_email": "JOHN.DOE@FOO.COM"},
        {"agent_id": 1, "agentEmail": "john.doe@foo.com"},
        {"agentId": 1, "agent_id": "1"},
    ],
)
def test_every_spelling_of_the_agent_assigns_agent_1(send, agent_field):
    doc = ok(send({**WITHOUT_TICKET, **agent_field}))
    assert doc["status"] == "assigned"
    assert doc["agent_info"] == {"id": 1, **DEMO_AGENT}
    assert [p["type"] for p in doc["participants"]] == ["end_user", "agent"]
    assert doc["participants"][1]["user_id"] == 1


def test_agent_email_matches_an_agent_stored_with_capitals(make_tenant, send):
    shouty = make_tenant(agents={7: {**DEMO_AGENT, "email": "Jane.Roe@Foo.COM"}})
    doc = ok(send({**WITHOUT_TICKET, "agentEmail": "jane.roe@foo.com"}, as_=shouty))
    assert doc["agent_info"]["id"] == 7
    assert doc["agent_info"]["email"] == "Jane.Roe@Foo.COM"


def test_agent_info_is_the_named_agent_of_the_tenant(make_tenant, send):
    agent_42 = {
        "agent_number": 12,
        "email": "ann@bar.com",
        "name": "Ann Lee",
        "first_name": "Ann",
        "last_name": "Lee",
        "avatar_url": "https://bar.com/ann",
    }
    team = make_tenant(agents={1: dict(DEMO_AGENT), 42: agent_42})
    doc = ok(send({**WITHOUT_TICKET, "agent_id": 42}, as_=team))
    assert doc["agent_info"] == {"id": 42, **agent_42}
    assert doc["participants"][1]["user_id"] == 42


def test_status_is_selecting_without_an_agent(send):
    doc = ok(send(WITHOUT_TICKET))
    assert doc["status"] == "selecting"
    assert doc["assigned_at"] is None
    assert [p["type"] for p in doc["participants"]] == ["end_user"]


def test_status_is_assigned_with_an_agent_and_assigned_at_is_set(send):
    doc = ok(send({**WITHOUT_TICKET, "agentId": 1}))
    assert doc["status"] == "assigned"
    assert TIMESTAMP.fullmatch(doc["assigned_at"])
    assert doc["participants"][1]["connected_at"] == doc["assigned_at"]


# ---- tenant settings ---------------------------------------------------------------------


def test_lang_comes_from_the_tenant(make_tenant, send):
    spanish = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "lang": "es"}
    )
    assert ok(send(as_=spanish))["lang"] == "es"


def test_out_ticket_url_fills_the_tenant_template_with_the_ticket_id(make_tenant, send):
    crm = make_tenant(
        settings={
            "sms_enabled": True,
            "outbound_sms_enabled": True,
            "ticket_url_template": "https://crm.example.com/t/{ticket_id}",
        }
    )
    doc = ok(send(as_=crm))
    assert doc["out_ticket_id"] == "5006x00000XXxxxXXX"
    assert doc["out_ticket_url"] == "https://crm.example.com/t/5006x00000XXxxxXXX"


def test_out_ticket_url_is_null_without_a_ticket_even_with_a_template(make_tenant, send):
    crm = make_tenant(
        settings={
            "sms_enabled": True,
            "outbound_sms_enabled": True,
            "ticket_url_template": "https://crm.example.com/t/{ticket_id}",
        }
    )
    doc = ok(send(WITHOUT_TICKET, as_=crm))
    assert (doc["out_ticket_id"], doc["out_ticket_url"]) == (None, None)


def test_out_ticket_url_is_null_when_the_tenant_has_no_template(send):
    doc = ok(send())
    assert doc["out_ticket_id"] == "5006x00000XXxxxXXX"
    assert doc["out_ticket_url"] is None


# ---- request fields ----------------------------------------------------------------------


@pytest.mark.parametrize("chat_type", ["Messaging (SMS)", "Messaging (API)", "SMS"])
def test_every_accepted_chat_type_is_answered_as_messaging_sms(send, chat_type):
    doc = ok(send(chat_type=chat_type))
    assert doc["chat_type"] == "Messaging (SMS)"


def test_ids_are_positive_integers(send):
    doc = ok(send({**WITHOUT_TICKET, "agentId": 1}))
    assert is_id(doc["id"])
    assert is_id(doc["end_user"]["id"])
    assert all(is_id(p["id"]) for p in doc["participants"])


def test_chat_subtype_is_accepted_and_stored(send, tenant, db):
    doc = ok(send(chat_subtype="api_initiated"))
    stored = db.document(f"tenants/{tenant.id}/chats/{doc['id']}").get().to_dict()
    assert stored["chat_subtype"] == "api_initiated"
    assert list(doc) == CHAT_KEYS


@pytest.mark.parametrize(
    ("end_user_number", "outbound_number"),
    [
        ("(415) 555-0100", "(628) 555-0199"),
        ("4155550100", "6285550199"),
        ("+14155550100", "+16285550199"),
    ],
)
def test_numbers_in_any_common_format_are_answered_as_e164(send, end_user_number, outbound_number):
    doc = ok(send(end_user_number=end_user_number, outbound_number=outbound_number))
    assert doc["outbound_number"] == "+16285550199"


def test_unknown_fields_are_ignored(send):
    doc = ok(send(WITHOUT_TICKET | {"priority": "high", "foo": [1, 2]}))
    assert doc == expected_from_seed(SEED_SELECTING, doc)


def test_content_type_other_than_json_is_still_parsed_as_json(app_client, tenant):
    response = app_client.post(
        "/apps/api/v1/sms",
        data=json.dumps(WITHOUT_TICKET),
        headers={**tenant.headers, "Content-Type": "text/plain"},
    )
    doc = ok(response)
    assert doc == expected_from_seed(SEED_SELECTING, doc)
