"""SPEC 10.5: the consumer's replies join the session, keywords opt them out and back in.

Replies are posted to the served function as Twilio posts them: form-encoded and signed with
the account's auth token over the webhook's URL. What was stored is read through the API.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from google.cloud import firestore
from twilio_standin import TwilioStandIn, sign

from conftest import SEED_BODY, SMS_PATH, MovableClock, Tenant
from sms.devtools.seed import DEMO_AGENT

TWIML = "<Response/>"
ACTIVE = {"message": "Outbound SMS failed. Consumer is already in an active SMS session."}
OPTED_OUT = {"message": "end_user_number has opted out"}
_numbers = itertools.count()


def fresh_number(area: str) -> str:
    n = next(_numbers)
    return f"+1{area}555{1000 + n % 9000:04d}"


@pytest.fixture(autouse=True)
def _clean_standin(standin: TwilioStandIn) -> Iterator[None]:
    standin.reset()
    yield
    standin.reset()


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    """A tenant with two numbers of its own, indexed as the admin command line does."""
    numbers = {fresh_number("628"): {"sms_enabled": True}, fresh_number("628"): {}}
    return make_tenant(agents={1: dict(DEMO_AGENT)}, outbound_numbers=numbers, index_numbers=True)


def number_of(tenant: Tenant, n: int = 0) -> str:
    return list(tenant.outbound_numbers)[n]


def reply(
    url: str,
    standin: TwilioStandIn,
    to: str,
    sender: str,
    body: str = "Yes, thanks",
    *,
    sid: str | None = None,
    signature: str | None = "",
) -> requests.Response:
    """Post an incoming SMS as Twilio does; signed unless ``signature`` is given (None: no
    header)."""
    sid = sid or "SM" + uuid.uuid4().hex
    form = {
        "ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
        "SmsStatus": "received", "Body": body, "To": to, "NumSegments": "1",
        "MessageSid": sid, "AccountSid": standin.account_sid, "From": sender,
        "ApiVersion": "2010-04-01",
    }  # fmt: skip
    target = url + SMS_PATH + "/inbound"
    headers = {}
    if signature == "":
        headers["X-Twilio-Signature"] = sign(target, form, standin.auth_token)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return requests.post(target, data=form, headers=headers, timeout=30)


def send(url: str, tenant: Tenant, to: str, **changes: Any) -> requests.Response:
    body = {**SEED_BODY, "end_user_number": to, "outbound_number": number_of(tenant), **changes}
    return requests.post(url + SMS_PATH, json=body, headers=tenant.headers, timeout=30)


def chat_of(url: str, tenant: Tenant, chat_id: int) -> dict[str, Any]:
    answer = requests.get(f"{url}/apps/api/v1/chats/{chat_id}", headers=tenant.headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def transcript(url: str, tenant: Tenant, chat_id: int) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{url}/apps/api/v1/chats/{chat_id}/messages", headers=tenant.headers, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json()["messages"])


def chats(db: firestore.Client, tenant: Tenant) -> list[dict[str, Any]]:
    stored = db.collection(f"tenants/{tenant.id}/chats").stream()
    return sorted((snap.to_dict() for snap in stored), key=lambda chat: chat["id"])


def active_chats(db: firestore.Client, tenant: Tenant, consumer: str) -> list[dict[str, Any]]:
    return [
        chat
        for chat in chats(db, tenant)
        if chat["end_user_number"] == consumer
        and chat["status"] in ("selecting", "assigned", "queued")
    ]


def stored_replies(db: firestore.Client, tenant: Tenant) -> list[dict[str, Any]]:
    return [
        snap.to_dict()
        for chat in chats(db, tenant)
        for snap in db.collection(f"tenants/{tenant.id}/chats/{chat['id']}/messages").stream()
        if snap.get("direction") == "inbound"
    ]


# ---- a reply opens or joins a session ---------------------------------------------------


def test_a_reply_without_a_session_opens_a_queued_one_and_answers_empty_twiml(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    consumer, sid = fresh_number("415"), "SM" + uuid.uuid4().hex
    answer = reply(twilio_server, standin, number_of(tenant), consumer, "Hello?", sid=sid)

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/xml")
    assert answer.text == TWIML
    [stored] = chats(db, tenant)
    chat = chat_of(twilio_server, tenant, stored["id"])
    assert (chat["status"], chat["agent_info"], chat["assigned_at"]) == ("queued", None, None)
    assert chat["queued_at"] == chat["created_at"]
    assert chat["outbound_number"] == number_of(tenant)
    assert [p["type"] for p in chat["participants"]] == ["end_user"]
    [message] = transcript(twilio_server, tenant, chat["id"])
    assert (message["direction"], message["status"], message["carrier_id"]) == (
        "inbound",
        "received",
        sid,
    )
    assert (message["from"], message["to"], message["text"]) == (
        consumer,
        number_of(tenant),
        "Hello?",
    )
    assert message["agent_id"] is None
    assert [c["status"] for c in message["status_history"]] == ["received"]


def test_outbound_requests_then_meet_the_queued_session_as_rule_17(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    consumer = fresh_number("415")
    reply(twilio_server, standin, number_of(tenant), consumer)

    answer = send(twilio_server, tenant, consumer, agentId=1)

    assert (answer.status_code, answer.json()) == (400, ACTIVE)


def test_a_reply_joins_the_active_session_whichever_of_the_tenants_numbers_it_came_to(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    consumer = fresh_number("415")
    opened = send(twilio_server, tenant, consumer, agentId=1, message="Your order has shipped.")
    assert opened.status_code == 200, opened.text

    assert reply(twilio_server, standin, number_of(tenant, 1), consumer, "Thanks!").text == TWIML

    assert len(chats(db, tenant)) == 1
    sent, received = transcript(twilio_server, tenant, opened.json()["id"])
    assert (sent["direction"], received["direction"]) == ("outbound", "inbound")
    assert (received["text"], received["to"]) == ("Thanks!", number_of(tenant, 1))
    assert chat_of(twilio_server, tenant, opened.json()["id"])["status"] == "assigned"


def test_a_reply_restarts_the_sessions_idle_clock(
    clocked_twilio_server: str,
    clock: MovableClock,
    standin: TwilioStandIn,
    make_tenant: Callable[..., Tenant],
) -> None:
    tenant = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "session_timeout_seconds": 4},
        outbound_numbers={fresh_number("628"): {}},
        index_numbers=True,
    )
    consumer = fresh_number("415")
    opened = send(clocked_twilio_server, tenant, consumer).json()
    clock.advance(2.5)
    reply(clocked_twilio_server, standin, number_of(tenant), consumer)
    clock.advance(2.5)  # 5 s after the request: idle only 2.5 s since the reply

    assert chat_of(clocked_twilio_server, tenant, opened["id"])["status"] == "selecting"
    clock.advance(2)
    assert chat_of(clocked_twilio_server, tenant, opened["id"])["status"] == "finished"


def test_a_reply_after_the_session_expired_opens_a_new_one_and_finishes_the_old(
    clocked_twilio_server: str,
    clock: MovableClock,
    standin: TwilioStandIn,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
) -> None:
    tenant = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "session_timeout_seconds": 1},
        outbound_numbers={fresh_number("628"): {}},
        index_numbers=True,
    )
    consumer = fresh_number("415")
    old = send(clocked_twilio_server, tenant, consumer).json()
    clock.advance(1.5)

    reply(clocked_twilio_server, standin, number_of(tenant), consumer)

    first, second = chats(db, tenant)
    assert (first["id"], first["status"]) == (old["id"], "finished")
    assert second["status"] == "queued"
    assert second["end_user"]["id"] == first["end_user"]["id"]


# ---- exactly once, and only for a tenant's number ---------------------------------------


def test_the_same_message_sid_delivered_twice_is_stored_once(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    consumer, sid = fresh_number("415"), "SM" + uuid.uuid4().hex
    first = reply(twilio_server, standin, number_of(tenant), consumer, sid=sid)
    again = reply(twilio_server, standin, number_of(tenant), consumer, sid=sid)

    assert (first.text, again.text) == (TWIML, TWIML)
    assert len(stored_replies(db, tenant)) == 1


def test_the_same_message_sid_delivered_at_once_is_stored_once(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    consumer, sid = fresh_number("415"), "SM" + uuid.uuid4().hex
    start = threading.Barrier(8)

    def deliver(_: int) -> requests.Response:
        start.wait()
        return reply(twilio_server, standin, number_of(tenant), consumer, sid=sid)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(deliver, range(8)))

    assert [a.status_code for a in answers] == [200] * 8
    assert len(stored_replies(db, tenant)) == 1
    assert len(active_chats(db, tenant, consumer)) == 1


def test_a_reply_to_a_number_no_tenant_owns_is_404_and_stores_nothing(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    unowned = fresh_number("212")
    for to in (unowned, "12345", "not a number"):
        answer = reply(twilio_server, standin, to, fresh_number("415"))
        assert (answer.status_code, answer.json()) == (404, {"message": "Not Found"})
    assert chats(db, tenant) == []


@pytest.mark.parametrize("owner", ["a/b", "", "../x", "__x__", "t" * 300, 12, None, ["t"]])
def test_a_number_indexed_by_hand_for_no_valid_tenant_is_404_not_500(
    twilio_server: str, standin: TwilioStandIn, db: firestore.Client, owner: Any
) -> None:
    number = fresh_number("646")
    db.document(f"numbers/{number}").set({"tenant": owner})

    answer = reply(twilio_server, standin, number, fresh_number("415"))

    assert (answer.status_code, answer.json()) == (404, {"message": "Not Found"})


@pytest.mark.parametrize("signature", [None, "forged", "bm90IGEgc2lnbmF0dXJl"])
def test_a_reply_without_a_valid_signature_is_403_and_stores_nothing(
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
    signature: str | None,
) -> None:
    answer = reply(
        twilio_server, standin, number_of(tenant), fresh_number("415"), signature=signature
    )

    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})
    assert chats(db, tenant) == []


def test_a_signed_reply_without_its_numbers_is_400(
    twilio_server: str, standin: TwilioStandIn
) -> None:
    target = twilio_server + SMS_PATH + "/inbound"
    for missing in ("MessageSid", "From", "To"):
        form = {"MessageSid": "SM1", "From": "+14155550100", "To": "+16285550199", "Body": "x"}
        del form[missing]
        signature = sign(target, form, standin.auth_token)
        answer = requests.post(
            target, data=form, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert (answer.status_code, answer.json()) == (400, {"message": f"{missing} is required"})


# Names Firestore refuses or that would nest a document (SPEC 10.3), and ids of another form.
NOT_TWILIOS = [
    "__x__",
    ".",
    "..",
    "SM/x",
    "a/b/c",
    "SM" + "a" * 1600,
    "SM" + "g" * 32,
    "sm" + "a" * 32,
]


@pytest.mark.parametrize("sid", NOT_TWILIOS)
def test_a_reply_whose_message_sid_is_not_twilios_is_400_and_stores_nothing(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client, sid: str
) -> None:
    consumer = fresh_number("415")
    answer = reply(twilio_server, standin, number_of(tenant), consumer, "STOP", sid=sid)

    assert (answer.status_code, answer.json()) == (400, {"message": "MessageSid is invalid"})
    assert chats(db, tenant) == []
    assert not db.document(f"tenants/{tenant.id}/opt_outs/{consumer}").get().exists
    assert not db.document("carrier_ids/a/b/c").get().exists  # never a nested document
    # The same reply with Twilio's form of id is stored (the log carrier's LM... too).
    stored = reply(
        twilio_server,
        standin,
        number_of(tenant),
        consumer,
        "STOP",
        sid="LM" + uuid.uuid4().hex.upper(),
    )
    assert stored.status_code == 200
    assert len(chats(db, tenant)) == 1


# ---- keywords ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keyword", ["STOP", "stop", "  Stop \n", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                "OPTOUT", "REVOKE"],
)  # fmt: skip
def test_an_opt_out_keyword_is_stored_and_stops_every_later_send(
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
    keyword: str,
) -> None:
    consumer = fresh_number("415")
    opened = send(twilio_server, tenant, consumer, agentId=1).json()

    assert reply(twilio_server, standin, number_of(tenant), consumer, keyword).text == TWIML

    _, stop = transcript(twilio_server, tenant, opened["id"])
    assert stop["text"] == keyword
    assert db.document(f"tenants/{tenant.id}/opt_outs/{consumer}").get().get("source") == "reply"
    creates = len(standin.requests)
    on_behalf = send(twilio_server, tenant, consumer, agentId=1)  # the agent of its session
    assert (on_behalf.status_code, on_behalf.json()) == (400, OPTED_OUT)
    assert len(standin.requests) == creates  # Twilio was not asked


@pytest.mark.parametrize("keyword", ["START", "unstop", " Yes "])
def test_an_opt_in_keyword_lifts_the_opt_out(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, keyword: str
) -> None:
    consumer = fresh_number("415")
    opened = send(twilio_server, tenant, consumer, agentId=1).json()
    reply(twilio_server, standin, number_of(tenant), consumer, "STOP")
    assert send(twilio_server, tenant, consumer, agentId=1).status_code == 400

    reply(twilio_server, standin, number_of(tenant), consumer, keyword)

    again = send(twilio_server, tenant, consumer, agentId=1, message="Welcome back")
    assert again.status_code == 200, again.text
    assert [m["text"] for m in transcript(twilio_server, tenant, opened["id"])][-1] == (
        "Welcome back"
    )


@pytest.mark.parametrize(
    "text",
    [
        "STOP please",
        "stopp",
        "don't stop",
        "STO P",
        # Keywords are matched in ASCII only, as Twilio matches them, though Python upper-cases
        # a long s, an st ligature and a dotless i into STOP and QUIT.
        "\u017ftop",
        "\ufb06op",
        "qu\u0131t",
        "\uff33\uff34\uff2f\uff30",  # STOP in fullwidth letters
    ],
)
def test_a_reply_that_only_contains_a_keyword_changes_nothing(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client, text: str
) -> None:
    consumer = fresh_number("415")
    reply(twilio_server, standin, number_of(tenant), consumer, text)

    assert not db.document(f"tenants/{tenant.id}/opt_outs/{consumer}").get().exists


# ---- races ------------------------------------------------------------------------------


def test_replies_racing_outbound_requests_leave_one_active_session_and_lose_no_reply(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    consumers = [fresh_number("415") for _ in range(6)]
    start = threading.Barrier(2 * len(consumers))

    def race(job: tuple[str, str]) -> int:
        kind, consumer = job
        start.wait()
        if kind == "reply":
            return reply(twilio_server, standin, number_of(tenant), consumer).status_code
        return send(twilio_server, tenant, consumer).status_code

    jobs = [(kind, c) for c in consumers for kind in ("reply", "send")]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = dict(zip(jobs, pool.map(race, jobs), strict=True))

    replies = stored_replies(db, tenant)
    for consumer in consumers:
        assert answers["reply", consumer] == 200
        assert answers["send", consumer] in (200, 400)
        [active] = active_chats(db, tenant, consumer)
        [stored] = [r for r in replies if r["from"] == consumer]
        assert stored["chat_id"] == active["id"]  # the reply is in the one active session


def test_replies_racing_the_end_of_their_session_leave_one_session_or_none_and_lose_none(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    consumers = [fresh_number("415") for _ in range(6)]
    opened = {c: send(twilio_server, tenant, c).json()["id"] for c in consumers}
    start = threading.Barrier(2 * len(consumers))

    def race(job: tuple[str, str]) -> int:
        kind, consumer = job
        start.wait()
        if kind == "reply":
            return reply(twilio_server, standin, number_of(tenant), consumer).status_code
        return requests.patch(
            f"{twilio_server}/apps/api/v1/chats/{opened[consumer]}",
            json={"status": "finished"},
            headers=tenant.headers,
            timeout=30,
        ).status_code

    jobs = [(kind, c) for c in consumers for kind in ("reply", "end")]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(race, jobs))

    assert answers.count(200) == len(jobs)
    replies = stored_replies(db, tenant)
    for consumer in consumers:
        assert chat_of(twilio_server, tenant, opened[consumer])["status"] == "finished"
        [stored] = [r for r in replies if r["from"] == consumer]
        active = active_chats(db, tenant, consumer)
        # The reply landed before the end (in the ended session, no session left) or after
        # it (in a new queued session): never lost, never two sessions.
        assert len(active) <= 1
        if active:
            assert stored["chat_id"] == active[0]["id"]
        else:
            assert stored["chat_id"] == opened[consumer]
