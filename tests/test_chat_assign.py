"""SPEC 10.2: PATCH /apps/api/v1/chats/{id} naming an agent assigns a session that has none.

Sessions are opened as a consumer's signed reply opens them (`queued`, no agent) or by an
outbound request, on the function served in-process on a clock the test moves
(`clocked_twilio_server`), so that waits and idle timeouts pass without waiting. The race of
assignments runs against the function as the local run serves it (`twilio_server`). The
calls are test_chat_list's: one tenant's view of the served function, over HTTP.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import pytest
import requests
from google.cloud import firestore
from test_chat_list import Api, consumer, make_owner, number_of, stamp, when
from twilio_standin import TwilioStandIn

from conftest import (
    AGENT_INFO_KEYS,
    CHAT_KEYS,
    PARTICIPANT_KEYS,
    SEED_BODY,
    SMS_PATH,
    MovableClock,
    Tenant,
    count_documents,
    in_process,
)
from sms import errors
from sms.config import Settings
from sms.devtools.seed import DEMO_AGENT
from sms.repository import FirestoreStore

CHATS = "/apps/api/v1/chats"
# Agent 2 as configured: its email in another case than the requests spell it, no avatar.
JANE = {
    "agent_number": 12,
    "email": "Jane.Roe@Foo.com",
    "name": "Jane Roe",
    "first_name": "Jane",
    "last_name": "Roe",
}
AGENTS = {1: dict(DEMO_AGENT), 2: JANE}
JANE_INFO = {"id": 2, **JANE, "avatar_url": None}
JOHN_INFO = {"id": 1, **DEMO_AGENT}
ACTIVE = {"message": errors.ACTIVE_SESSION}
INVALID = errors.AGENT_INVALID
NOT_FOUND = errors.AGENT_NOT_FOUND
ENDED = errors.CHAT_ALREADY_ENDED
ASSIGNED = errors.CHAT_ALREADY_ASSIGNED
MUST_BE_FINISHED = errors.STATUS_MUST_BE_FINISHED
# The fields of the chat document that an assignment changes.
ASSIGNING = {"status", "assigned_at", "wait_duration", "agent_info", "participants"}


@pytest.fixture
def twilio(standin: TwilioStandIn) -> Iterator[TwilioStandIn]:
    """The stand-in for Twilio, with nothing stored or scripted before or after."""
    standin.reset()
    yield standin
    standin.reset()


@pytest.fixture
def api(
    clocked_twilio_server: str, make_tenant: Callable[..., Tenant], twilio: TwilioStandIn
) -> Api:
    """A tenant with agents 1 (john.doe@foo.com) and 2 (Jane.Roe@Foo.com) and two numbers
    of its own, on the function on the test's clock."""
    return Api(clocked_twilio_server, make_owner(make_tenant, AGENTS, numbers=2), twilio)


def patch(api: Api, chat_id: Any, body: Any, as_: Tenant | None = None) -> requests.Response:
    return api.call("PATCH", f"{CHATS}/{chat_id}", body, headers=(as_ or api.tenant).headers)


def error(response: requests.Response) -> tuple[int, Any]:
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, response.json()


def ordered(response: requests.Response) -> Any:
    """The JSON body as nested (key, value) pairs: equality then also compares key order."""
    return json.loads(response.text, object_pairs_hook=list)


def participant_ids(db: firestore.Client, tenant: Tenant) -> list[int]:
    """Every participant id stored in the tenant's chats."""
    return [
        participant["id"]
        for snap in db.collection(f"tenants/{tenant.id}/chats").stream()
        for participant in snap.get("participants")
    ]


def stored_chat(db: firestore.Client, tenant: Tenant, chat_id: int) -> dict[str, Any]:
    return dict(db.document(f"tenants/{tenant.id}/chats/{chat_id}").get().to_dict() or {})


def assigned_events(api: Api) -> list[dict[str, Any]]:
    """The tenant's chat.assigned events, as GET /apps/api/v1/events lists them."""
    answer = api.call("GET", "/apps/api/v1/events", params={"type": "chat.assigned"})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["events"])


# ---- assigning --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent_id", 2),
        ("agentId", "2"),
        ("agent_email", "jane.roe@foo.com"),
        ("agentEmail", "JANE.ROE@FOO.COM"),
    ],
)
def test_naming_an_agent_assigns_a_queued_session_as_section_5_shows_an_agent(
    api: Api, clock: MovableClock, db: firestore.Client, field: str, value: Any
) -> None:
    other = api.open(consumer(), agentId=1)  # another session, whose participants took ids
    queued = api.queued(consumer())
    assert (queued["status"], queued["agent_info"], queued["queued_at"]) == (
        "queued",
        None,
        queued["created_at"],
    )
    taken = participant_ids(db, api.tenant)
    now = clock.advance(90.4)

    answer = patch(api, queued["id"], {field: value})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    chat = answer.json()
    assert list(chat) == CHAT_KEYS
    assert chat["status"] == "assigned"
    assert chat["assigned_at"] == stamp(now)
    assert chat["wait_duration"] == 90  # whole seconds from queued_at
    assert chat["agent_info"] == JANE_INFO
    assert list(chat["agent_info"]) == AGENT_INFO_KEYS
    end_user, agent = chat["participants"]
    assert end_user == queued["participants"][0]
    assert list(agent) == PARTICIPANT_KEYS
    assert agent == {
        "id": agent["id"],
        "type": "agent",
        "status": "connected",
        "chat_id": queued["id"],
        "user_id": 2,
        "end_user_id": None,
        "chat_duration": None,
        "connected_at": chat["assigned_at"],
        "ended_at": None,
        "fail_reason": "nothing",
    }
    assert isinstance(agent["id"], int)
    assert agent["id"] >= 1
    assert agent["id"] not in taken  # a fresh participant id
    # Nothing else changes: the session keeps its queue time, its end user, its number.
    assert {k: v for k, v in chat.items() if k not in ASSIGNING} == {
        k: v for k, v in queued.items() if k not in ASSIGNING
    }
    # GET answers the same document, in the same order; the list shows it assigned.
    assert ordered(api.call("GET", f"{CHATS}/{queued['id']}")) == ordered(answer)
    assert api.page(status="assigned")["chats"] == [chat, api.get(other["id"])]
    assert api.ids(status="queued") == []
    [event] = assigned_events(api)  # SPEC 10.7: the assignment, recorded with it
    assert event["data"] == chat


def test_a_session_an_outbound_request_opened_without_agent_may_be_assigned_too(
    api: Api, clock: MovableClock
) -> None:
    selecting = api.open(consumer())
    now = clock.advance(30.999)
    chat = api.patch(selecting["id"], {"agentEmail": str(DEMO_AGENT["email"]).upper()})
    assert (chat["status"], chat["assigned_at"], chat["queued_at"]) == (
        "assigned",
        stamp(now),
        None,
    )
    assert chat["wait_duration"] == 30  # whole seconds from created_at
    assert chat["agent_info"] == JOHN_INFO
    assert [p["type"] for p in chat["participants"]] == ["end_user", "agent"]
    assert chat["participants"][1]["connected_at"] == stamp(now)
    assert api.get(selecting["id"]) == chat


def test_the_assigned_agent_may_then_send_on_the_sessions_behalf(
    api: Api, twilio: TwilioStandIn, clock: MovableClock
) -> None:
    to = consumer()
    own, other = number_of(api.tenant), number_of(api.tenant, 1)
    queued = api.queued(to)
    assert queued["outbound_number"] == own  # the number the reply came to
    refused = api.send(to, agentId=2)  # not yet a participant: rule 17
    assert (refused.status_code, refused.json()) == (400, ACTIVE)

    assigned = api.patch(queued["id"], {"agent_id": 2})
    clock.advance(1)  # (the transcript orders messages of one instant by their random ids)
    answer = api.send(to, agentId=2, message="Hi, this is Jane. How can I help?")
    assert answer.status_code == 200, answer.text
    on_behalf = answer.json()
    assert on_behalf["id"] == queued["id"]  # the same session, not a new one
    assert on_behalf == assigned
    assert api.get(queued["id"]) == assigned
    messages = api.call("GET", f"{CHATS}/{queued['id']}/messages").json()["messages"]
    assert [(m["direction"], m["agent_id"], m["text"]) for m in messages] == [
        ("inbound", None, "Hello?"),
        ("outbound", 2, "Hi, this is Jane. How can I help?"),
    ]
    assert [sms["body"] for sms in twilio.sent_to(to)] == ["Hi, this is Jane. How can I help?"]
    # Anyone else, or from another number: rule 17, as before.
    for changes in ({"agentId": 1}, {"agentId": 2, "outbound_number": other}, {}):
        refused = api.send(to, **changes)
        assert (refused.status_code, refused.json()) == (400, ACTIVE), changes
    assert len(twilio.sent_to(to)) == 1


def test_an_assignment_counts_as_activity_its_idle_clock_starts_again(
    clocked_twilio_server: str,
    make_tenant: Callable[..., Tenant],
    twilio: TwilioStandIn,
    clock: MovableClock,
    db: firestore.Client,
) -> None:
    tenant = make_owner(make_tenant, AGENTS, session_timeout_seconds=60)
    api = Api(clocked_twilio_server, tenant, twilio)
    queued = api.queued(consumer())
    clock.advance(50)
    assigned = api.patch(queued["id"], {"agentId": 1})
    # The sweeper finds a session by when it expires: a minute on from the assignment.
    expires_at = stored_chat(db, tenant, queued["id"])["expires_at"]
    assert expires_at == when(assigned["assigned_at"]) + dt.timedelta(seconds=60)
    clock.advance(59.999)  # 109.999 s after the reply, 59.999 s after the assignment
    assert api.get(queued["id"]) == assigned
    assert api.ids(status="active") == [queued["id"]]
    clock.advance(0.001)
    ended = api.get(queued["id"])
    expired_at = stamp(when(assigned["assigned_at"]) + dt.timedelta(seconds=60))
    assert (ended["status"], ended["ends_at"], ended["chat_duration"]) == (
        "finished",
        expired_at,
        110,
    )
    assert api.ids(status="finished") == [queued["id"]]


def test_a_null_agent_field_names_no_agent_and_a_null_status_names_no_status(api: Api) -> None:
    first = api.queued(consumer())
    ended = api.patch(first["id"], {"status": "finished", "agentId": None, "agent_email": None})
    assert (ended["status"], ended["agent_info"]) == ("finished", None)
    second = api.queued(consumer())
    chat = api.patch(
        second["id"], {"status": None, "agent_id": None, "agentEmail": "jane.roe@foo.com"}
    )
    assert (chat["status"], chat["agent_info"]) == ("assigned", JANE_INFO)


# ---- refusals, in their order -----------------------------------------------------------


class Refusal(NamedTuple):
    state: str  # the session the PATCH meets (see `session_in`)
    body: dict[str, Any]
    text: str


def refusal(state: str, body: dict[str, Any], text: str, name: str) -> Any:
    return pytest.param(Refusal(state, body, text), id=f"{state}-{name}")


AGENT_FIELDS = ("agent_id", "agentId", "agent_email", "agentEmail")
REFUSALS = [
    # Row 15: a field of the wrong type, or two names that disagree (as POST /sms judges
    # them: a name that finds no agent disagrees with one that does).
    refusal("queued", {"agent_id": "one"}, INVALID, "id_words"),
    refusal("queued", {"agentId": True}, INVALID, "id_boolean"),
    refusal("queued", {"agent_id": 1.5}, INVALID, "id_fraction"),
    refusal("queued", {"agentId": [2]}, INVALID, "id_list"),
    refusal("queued", {"agent_email": 5}, INVALID, "email_number"),
    refusal("queued", {"agentEmail": {"email": "jane.roe@foo.com"}}, INVALID, "email_object"),
    refusal("queued", {"agent_id": 1, "agentId": "2"}, INVALID, "ids_disagree"),
    refusal(
        "queued",
        {"agent_email": DEMO_AGENT["email"], "agentEmail": "jane.roe@foo.com"},
        INVALID,
        "emails_disagree",
    ),
    refusal("queued", {"agent_id": 1, "agent_email": "jane.roe@foo.com"}, INVALID, "id_vs_email"),
    refusal(
        "queued", {"agentId": 2, "agentEmail": "nobody@foo.com"}, INVALID, "email_finds_no_one"
    ),
    # Row 16: no such agent in the tenant.
    refusal("queued", {"agent_id": 99}, NOT_FOUND, "unknown_id"),
    refusal("queued", {"agentId": "0"}, NOT_FOUND, "id_zero"),
    refusal("queued", {"agent_id": -1}, NOT_FOUND, "id_negative"),
    refusal("queued", {"agentId": "9" * 40}, NOT_FOUND, "id_huge"),
    refusal("queued", {"agentEmail": "nobody@foo.com"}, NOT_FOUND, "unknown_email"),
    refusal("queued", {"agent_id": 99, "agent_email": "nobody@foo.com"}, NOT_FOUND, "neither"),
    # Then an ended session (by PATCH, or idle past its timeout)...
    refusal("ended", {"agent_id": "one"}, INVALID, "invalid"),
    refusal("ended", {"agent_id": 99}, NOT_FOUND, "not_found"),
    refusal("ended", {"agent_id": 2}, ENDED, "valid"),
    refusal("expired", {"agentId": [2]}, INVALID, "invalid"),
    refusal("expired", {"agentEmail": "nobody@foo.com"}, NOT_FOUND, "not_found"),
    refusal("expired", {"agentEmail": "jane.roe@foo.com"}, ENDED, "valid"),
    refusal("assigned_then_ended", {"agentId": "two"}, INVALID, "invalid"),
    refusal("assigned_then_ended", {"agentId": 2}, ENDED, "valid"),
    # ...then one that has an agent.
    refusal("assigned", {"agent_id": True}, INVALID, "invalid"),
    refusal("assigned", {"agent_id": 99}, NOT_FOUND, "not_found"),
    refusal("assigned", {"agent_id": 2}, ASSIGNED, "another_agent"),
    refusal("assigned", {"agentEmail": DEMO_AGENT["email"]}, ASSIGNED, "the_same_agent"),
    refusal("opened_with_agent", {"agentId": 2}, ASSIGNED, "another_agent"),
    # Both a status and an agent, or neither: which was meant cannot be told.
    refusal("queued", {"status": "finished", "agent_id": 2}, MUST_BE_FINISHED, "both"),
    refusal(
        "queued", {"status": "open", "agentEmail": "jane.roe@foo.com"}, MUST_BE_FINISHED, "open"
    ),
    refusal("queued", {"status": "finished", "agentId": "two"}, MUST_BE_FINISHED, "both_bad"),
    refusal("queued", {"agent_id": None}, MUST_BE_FINISHED, "null_agent"),
    refusal("queued", dict.fromkeys(AGENT_FIELDS), MUST_BE_FINISHED, "all_null"),
    refusal("queued", {"agent": 2, "agentID": 2}, MUST_BE_FINISHED, "other_spellings"),
    refusal("queued", {}, MUST_BE_FINISHED, "empty"),
    refusal("ended", {"status": "finished", "agentId": 2}, MUST_BE_FINISHED, "both"),
    refusal("assigned", {"status": "finished", "agentId": 2}, MUST_BE_FINISHED, "both"),
    refusal("ended", {"status": "open"}, MUST_BE_FINISHED, "open"),  # the body, then the chat
]


STATUS_OF = {
    "queued": "queued",
    "ended": "finished",
    "expired": "finished",
    "assigned_then_ended": "finished",
    "assigned": "assigned",
    "opened_with_agent": "assigned",
}


def session_in(state: str, api: Api, clock: MovableClock) -> dict[str, Any]:
    """A session of the tenant as ``state`` says; its chat document."""
    if state == "opened_with_agent":
        return api.open(consumer(), agentId=1)
    if state == "assigned_then_ended":
        return api.patch(api.open(consumer(), agentId=1)["id"], {"status": "finished"})
    queued = api.queued(consumer())
    if state == "ended":
        return api.patch(queued["id"], {"status": "finished"})
    if state == "assigned":
        return api.patch(queued["id"], {"agentId": 1})
    if state == "expired":  # the tenant's timeout is 60 s: idle 61 s
        clock.advance(61)
        return api.get(queued["id"])
    assert state == "queued"
    return queued


@pytest.mark.parametrize("case", REFUSALS)
def test_each_refusal_answers_in_the_order_of_the_spec_and_writes_nothing(
    *,
    clocked_twilio_server: str,
    make_tenant: Callable[..., Tenant],
    twilio: TwilioStandIn,
    clock: MovableClock,
    db: firestore.Client,
    case: Refusal,
) -> None:
    tenant = make_owner(make_tenant, AGENTS, session_timeout_seconds=60)
    api = Api(clocked_twilio_server, tenant, twilio)
    chat = session_in(case.state, api, clock)
    assert chat["status"] == STATUS_OF[case.state]
    before = count_documents(db, tenant.id), stored_chat(db, tenant, chat["id"])

    answer = patch(api, chat["id"], case.body)
    assert error(answer) == (400, {"message": case.text})
    assert (count_documents(db, tenant.id), stored_chat(db, tenant, chat["id"])) == before
    assert api.get(chat["id"]) == chat
    if case.state == "queued" and case.text in (INVALID, NOT_FOUND):
        # Judged as rows 15 and 16: POST /sms answers the same agent fields the same.
        sent = api.send(consumer(), **case.body)
        assert (sent.status_code, sent.json()) == (400, {"message": case.text})


@pytest.mark.parametrize(
    "body",
    [
        {"agent_id": "one"},
        {"agentId": 99},
        {"agentId": 2},
        {"status": "finished", "agentId": 2},
        {"agent_id": None},
    ],
    ids=["invalid", "not_found", "valid", "both", "neither"],
)
def test_an_unknown_id_or_another_tenants_chat_is_not_found_before_anything_else(
    api: Api, make_tenant: Callable[..., Tenant], db: firestore.Client, body: dict[str, Any]
) -> None:
    queued = api.queued(consumer())
    ended = api.patch(api.queued(consumer())["id"], {"status": "finished"})
    stranger = make_owner(make_tenant, AGENTS)  # its own agents 1 and 2, no chat
    before = count_documents(db, api.tenant.id), count_documents(db, stranger.id)
    for chat_id in (ended["id"] + 1, 10**12):
        assert error(patch(api, chat_id, body)) == (404, {"message": "Not Found"})
    for chat in (queued, ended):
        assert error(patch(api, chat["id"], body, as_=stranger)) == (404, {"message": "Not Found"})
    assert (count_documents(db, api.tenant.id), count_documents(db, stranger.id)) == before
    assert api.get(queued["id"]) == queued


# ---- at once ----------------------------------------------------------------------------


def test_parallel_assignments_of_one_session_assign_exactly_one_agent(
    twilio_server: str, make_tenant: Callable[..., Tenant], twilio: TwilioStandIn
) -> None:
    agents = {
        n: {**DEMO_AGENT, "agent_number": n, "email": f"agent{n}@foo.com"} for n in range(1, 11)
    }
    api = Api(twilio_server, make_owner(make_tenant, agents), twilio)
    for _ in range(3):
        to = consumer()
        queued = api.queued(to)
        start = threading.Barrier(10)

        def assign(
            agent_id: int, chat_id: int = queued["id"], start: Any = start
        ) -> requests.Response:
            start.wait(timeout=30)
            return patch(api, chat_id, {"agentId": agent_id})

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(assign, range(1, 11)))

        [won] = [answer for answer in answers if answer.status_code == 200]
        for answer in answers:
            if answer is not won:
                assert error(answer) == (400, {"message": ASSIGNED})
        chat = won.json()
        winner = chat["agent_info"]["id"]
        assert chat["agent_info"] == {
            "id": winner,
            **agents[winner],
            "avatar_url": DEMO_AGENT["avatar_url"],
        }
        assert api.get(queued["id"]) == chat
        assert [(p["type"], p["user_id"]) for p in chat["participants"]] == [
            ("end_user", None),
            ("agent", winner),
        ]
        # The winner is the session's agent: it may send on its behalf, a loser may not.
        loser = api.send(to, agentId=winner % 10 + 1)
        assert (loser.status_code, loser.json()) == (400, ACTIVE)
        assert api.send(to, agentId=winner).json()["id"] == queued["id"]
    assert len(assigned_events(api)) == 3  # one change, one event


# ---- a commit whose outcome is unknown --------------------------------------------------


class AnswerLost(FirestoreStore):
    """Commits the first assignment, then fails as if the commit's answer were lost."""

    faulted = False

    def assign_chat(self, *args: Any, **kwargs: Any) -> None:
        super().assign_chat(*args, **kwargs)
        if not self.faulted:
            self.faulted = True
            raise errors.BackendUnavailable("Firestore could not be used: the answer was lost")


class UnreachableOnce(FirestoreStore):
    """Fails the first assignment's commit before it reaches Firestore."""

    faulted = False

    def assign_chat(self, *args: Any, **kwargs: Any) -> None:
        if not self.faulted:
            self.faulted = True
            raise errors.BackendUnavailable("Firestore could not be used: unreachable")
        super().assign_chat(*args, **kwargs)


@pytest.mark.parametrize("store_type", [AnswerLost, UnreachableOnce])
def test_an_assignment_whose_commit_may_have_failed_answers_what_became_of_it(
    db: firestore.Client,
    make_tenant: Callable[..., Tenant],
    clock: MovableClock,
    store_type: type[AnswerLost | UnreachableOnce],
) -> None:
    settings = Settings.from_env()
    store = store_type(db, settings)
    client = in_process(settings, clock, store=store).test_client()
    tenant = make_tenant(agents=AGENTS)
    opened = client.post(SMS_PATH, json=SEED_BODY, headers=tenant.headers).get_json()
    now = clock.advance(2)

    answer = client.patch(f"{CHATS}/{opened['id']}", json={"agentId": 2}, headers=tenant.headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert store.faulted
    chat = answer.get_json()
    assert (chat["status"], chat["assigned_at"], chat["agent_info"]) == (
        "assigned",
        stamp(now),
        JANE_INFO,
    )
    assert [p["type"] for p in chat["participants"]] == ["end_user", "agent"]
    assert client.get(f"{CHATS}/{opened['id']}", headers=tenant.headers).get_json() == chat
    events = client.get("/apps/api/v1/events?type=chat.assigned", headers=tenant.headers)
    assert [event["data"] for event in events.get_json()["events"]] == [chat]
