"""sms.render: timestamps and the chat document of SPEC section 5, without HTTP or Firestore."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from conftest import AGENT_INFO_KEYS, CHAT_KEYS, PARTICIPANT_KEYS
from sms import render
from sms.domain import Agent, Chat, EndUser, Participant

CREATED = dt.datetime(2021, 10, 4, 17, 20, 51, tzinfo=dt.timezone.utc)
ASSIGNED = dt.datetime(2021, 10, 4, 17, 20, 53, tzinfo=dt.timezone.utc)
JOHN = Agent(
    id=1,
    agent_number=9,
    email="john.doe@foo.com",
    name="John Doe",
    first_name="John",
    last_name="Doe",
    avatar_url="https://foobar.com/johndoe",
)
END_USER = EndUser(id=87, phone_number="+14155550100")


def make_chat(agent: Agent | None = None, **changes) -> Chat:
    participants = [Participant(205, "end_user", connected_at=CREATED, end_user_id=87)]
    if agent is not None:
        participants.append(Participant(206, "agent", connected_at=ASSIGNED, user_id=agent.id))
    fields = {
        "id": 114,
        "lang": "en",
        "status": "assigned" if agent else "selecting",
        "created_at": CREATED,
        "end_user": END_USER,
        "outbound_number": "+16285550199",
        "participants": tuple(participants),
        "agent": agent,
        "assigned_at": ASSIGNED if agent else None,
    }
    fields.update(changes)
    return Chat(**fields)


# ---- timestamps ---------------------------------------------------------------------------


def test_timestamp_of_a_whole_second_has_three_zero_milliseconds_and_z():
    assert render.timestamp(CREATED) == "2021-10-04T17:20:51.000Z"


def test_timestamp_keeps_milliseconds_and_drops_microseconds():
    moment = dt.datetime(2021, 10, 4, 17, 20, 51, 123999, tzinfo=dt.timezone.utc)
    assert render.timestamp(moment) == "2021-10-04T17:20:51.123Z"


def test_timestamp_pads_small_milliseconds():
    moment = dt.datetime(2021, 10, 4, 17, 20, 51, 7000, tzinfo=dt.timezone.utc)
    assert render.timestamp(moment) == "2021-10-04T17:20:51.007Z"


def test_timestamp_converts_a_positive_offset_to_utc_across_midnight():
    seoul = dt.datetime(2021, 10, 5, 2, 20, 51, 500000, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert render.timestamp(seoul) == "2021-10-04T17:20:51.500Z"


def test_timestamp_converts_a_named_zone_with_daylight_saving_to_utc():
    los_angeles = dt.datetime(2021, 10, 4, 10, 20, 51, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert render.timestamp(los_angeles) == "2021-10-04T17:20:51.000Z"


def test_timestamp_converts_a_negative_half_hour_offset_to_utc():
    newfoundland = dt.datetime(
        2021, 10, 4, 14, 50, 51, tzinfo=dt.timezone(-dt.timedelta(hours=2, minutes=30))
    )
    assert render.timestamp(newfoundland) == "2021-10-04T17:20:51.000Z"


def test_timestamp_of_none_is_none():
    assert render.timestamp(None) is None


# ---- the chat document --------------------------------------------------------------------


@pytest.mark.parametrize("agent", [None, JOHN], ids=["without_agent", "with_agent"])
def test_chat_document_keys_are_in_section_5_order(agent):
    assert list(render.chat_document(make_chat(agent))) == CHAT_KEYS


def test_chat_document_without_agent_matches_the_seed_example():
    doc = render.chat_document(make_chat(out_ticket_id="5006x00000XXxxxXXX"))
    assert doc == {
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
        "out_ticket_id": "5006x00000XXxxxXXX",
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
        "participants": [
            {
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
        ],
        "offer_type": None,
        "offer_events": [],
        "answer_type": "manual",
        "outbound_number": "+16285550199",
    }


def test_chat_document_with_agent_has_agent_info_in_order():
    doc = render.chat_document(make_chat(JOHN))
    assert list(doc["agent_info"]) == AGENT_INFO_KEYS
    assert doc["agent_info"] == {
        "id": 1,
        "agent_number": 9,
        "email": "john.doe@foo.com",
        "name": "John Doe",
        "first_name": "John",
        "last_name": "Doe",
        "avatar_url": "https://foobar.com/johndoe",
    }
    assert doc["status"] == "assigned"
    assert doc["assigned_at"] == "2021-10-04T17:20:53.000Z"


def test_participants_are_end_user_then_agent_with_fields_in_order():
    participants = render.chat_document(make_chat(JOHN))["participants"]
    assert [p["type"] for p in participants] == ["end_user", "agent"]
    assert [list(p) for p in participants] == [PARTICIPANT_KEYS, PARTICIPANT_KEYS]


def test_end_user_participant_points_at_the_end_user_and_the_agent_at_the_user():
    end_user, agent = render.chat_document(make_chat(JOHN))["participants"]
    assert (end_user["id"], end_user["user_id"], end_user["end_user_id"]) == (205, None, 87)
    assert (agent["id"], agent["user_id"], agent["end_user_id"]) == (206, 1, None)
    assert end_user["chat_id"] == agent["chat_id"] == 114


def test_participants_are_connected_with_no_duration_no_end_and_nothing_failed():
    for participant in render.chat_document(make_chat(JOHN))["participants"]:
        assert participant["status"] == "connected"
        assert participant["chat_duration"] is None
        assert participant["ended_at"] is None
        assert participant["fail_reason"] == "nothing"


def test_participants_connected_at_is_created_at_for_end_user_and_assigned_at_for_agent():
    doc = render.chat_document(make_chat(JOHN))
    end_user, agent = doc["participants"]
    assert end_user["connected_at"] == doc["created_at"] == "2021-10-04T17:20:51.000Z"
    assert agent["connected_at"] == doc["assigned_at"] == "2021-10-04T17:20:53.000Z"


def test_chat_type_is_always_messaging_sms():
    assert render.chat_document(make_chat())["chat_type"] == "Messaging (SMS)"


def test_end_user_identifier_and_out_contact_id_come_from_the_end_user_record():
    known = EndUser(id=87, phone_number="+14155550100", identifier="cust-1", out_contact_id="c-9")
    assert render.chat_document(make_chat(end_user=known))["end_user"] == {
        "id": 87,
        "identifier": "cust-1",
        "out_contact_id": "c-9",
    }


def test_lang_ticket_url_and_outbound_number_come_from_the_chat():
    doc = render.chat_document(
        make_chat(lang="fr", out_ticket_id="T 1", out_ticket_url="https://crm.example.com/t/T%201")
    )
    assert (doc["lang"], doc["out_ticket_id"], doc["out_ticket_url"], doc["outbound_number"]) == (
        "fr",
        "T 1",
        "https://crm.example.com/t/T%201",
        "+16285550199",
    )


def test_finished_chat_renders_ends_at_and_duration():
    ends = dt.datetime(2021, 10, 4, 17, 25, 51, tzinfo=dt.timezone.utc)
    doc = render.chat_document(make_chat(status="finished", ends_at=ends, chat_duration=300))
    assert (doc["status"], doc["ends_at"], doc["chat_duration"]) == (
        "finished",
        "2021-10-04T17:25:51.000Z",
        300,
    )
