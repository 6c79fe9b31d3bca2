"""Every event type of SPEC 10.7, made by the change the contract names and delivered with its
data as documented: served as in production (sms_api and sms_events on a Pub/Sub topic of
their own), sending through the stand-in for Twilio, whose signed status callbacks and
replies reach sms_api as Twilio's would. Each delivery is verified with the
`standardwebhooks` package, compared with what the API shows of the change, and (by the
autouse fixture of tests/eventing.py) validated against openapi.yaml's `webhooks`.

One change makes one event: a repeated status callback or a redelivered reply makes none
(the events list, where every event is recorded in the commit of its change, shows it at
once; a delivery can only be of a recorded event).

The module's functions use a Firestore database of their own (FIRESTORE_DATABASE; the
emulator makes it on first use): the sweeps these tests run in-process, on a clock moved
ahead, go over every tenant of the database they are given, and so find only these tests'.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from eventing import (
    Delivery,
    EventStack,
    Receiver,
    add_endpoint,
    listed_events,
    serving_events,
    sweep,
)
from google.cloud import firestore
from standardwebhooks.webhooks import Webhook
from twilio_standin import Refuse, TwilioStandIn, sign

from conftest import PROJECT, SEED_BODY, SMS_PATH, MovableClock, Tenant, twilio_env
from sms import render
from sms.devtools.emulator import free_port
from sms.devtools.seed import DEMO_AGENT

EVENT_KEYS = ["id", "type", "timestamp", "tenant", "data"]
MESSAGE_KEYS = [
    "id", "chat_id", "direction", "from", "to", "text", "agent_id", "encoding", "segments",
    "status", "carrier_id", "error_code", "created_at", "status_history", "scheduled_for",
]  # fmt: skip
# What a function needs to send through the stand-in and check its signatures (conftest's
# twilio_env), added to the event stack's environment.
TWILIO_SETTINGS = (
    "SMS_CARRIER",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE_URL",
    "SMS_PUBLIC_BASE_URL",
    "SMS_SWEEP_AFTER_SECONDS",
)
INBOUND_PATH = SMS_PATH + "/inbound"
DATABASE = f"event-types-{uuid.uuid4().hex[:8]}"
SMS_ON = {"sms_enabled": True, "outbound_sms_enabled": True}
_numbers = itertools.count()


def consumer() -> str:
    return f"+1415555{next(_numbers) % 10000:04d}"


@pytest.fixture(scope="module")
def stack(
    emulator_host: str,
    pubsub_host: str,
    standin: TwilioStandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EventStack]:
    """sms_api (SMS_CARRIER=twilio, reached by the stand-in at its own URL) and sms_events."""
    port = free_port()
    settings = twilio_env(standin, port)
    log = tmp_path_factory.mktemp("event-types") / "servers.log"
    extra = {name: settings[name] for name in TWILIO_SETTINGS} | {"FIRESTORE_DATABASE": DATABASE}
    with serving_events(emulator_host, pubsub_host, log, extra_env=extra, api_port=port) as made:
        yield made


@pytest.fixture(scope="module")
def own_db(emulator_host: str) -> firestore.Client:
    """The module's own database, where its functions keep their data."""
    return firestore.Client(project=PROJECT, database=DATABASE)


@pytest.fixture(autouse=True)
def _clean_standin(standin: TwilioStandIn) -> Iterator[None]:
    standin.reset()
    yield
    standin.reset()


@dataclasses.dataclass
class Hooked:
    """A tenant with a number of its own (replies to it reach the tenant), agent 1, and one
    endpoint taking every type: the test's receiver."""

    tenant: Tenant
    number: str
    secret: str
    receiver: Receiver
    api: str
    expected: int = 0  # how many of the receiver's deliveries the test has expected so far

    def post(self, to: str, **changes: Any) -> requests.Response:
        body = {**SEED_BODY, "end_user_number": to, "outbound_number": self.number, **changes}
        return requests.post(
            self.api + SMS_PATH, json=body, headers=self.tenant.headers, timeout=30
        )

    def patch(self, chat_id: int, body: dict[str, Any]) -> dict[str, Any]:
        answer = requests.patch(
            f"{self.api}/apps/api/v1/chats/{chat_id}",
            json=body,
            headers=self.tenant.headers,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def chat(self, chat_id: int) -> dict[str, Any]:
        answer = requests.get(
            f"{self.api}/apps/api/v1/chats/{chat_id}", headers=self.tenant.headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def transcript(self, chat_id: int) -> list[dict[str, Any]]:
        answer = requests.get(
            f"{self.api}/apps/api/v1/chats/{chat_id}/messages",
            headers=self.tenant.headers,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return list(answer.json()["messages"])

    def listed(self) -> list[dict[str, Any]]:
        return listed_events(self.api, self.tenant.headers)

    def expect(self, *types: str) -> list[dict[str, Any]]:
        """The next deliveries, exactly ``types`` in this order, each signed as documented:
        their events."""
        done, self.expected = self.expected, self.expected + len(types)
        arrived = self.receiver.wait_for(self.expected)[done:]
        assert [d.event["type"] for d in arrived] == list(types)
        for delivery in arrived:
            verify(delivery, self.secret, self.tenant)
        return [delivery.event for delivery in arrived]

    def each_listed_event_delivered_once(self) -> None:
        """What the events list shows is what the receiver got: each event once."""
        delivered = Counter(d.webhook_id for d in self.receiver.deliveries)
        listed = self.listed()
        assert delivered == Counter(event["id"] for event in listed)
        by_id = {d.webhook_id: d.event for d in self.receiver.deliveries}
        assert [by_id[event["id"]] for event in listed] == listed  # each as it was delivered


def verify(delivery: Delivery, secret: str, tenant: Tenant) -> None:
    """A delivery as SPEC 10.7 describes it: Standard Webhooks' headers and signature, the
    body's keys in order."""
    assert Webhook(secret).verify(delivery.body, delivery.headers) == delivery.event
    assert delivery.webhook_id == delivery.event["id"]
    assert delivery.headers["content-type"] == "application/json"
    assert list(delivery.event) == EVENT_KEYS
    assert delivery.event["tenant"] == tenant.id


@pytest.fixture
def make_hooked(
    stack: EventStack, own_db: firestore.Client, receiver: Receiver
) -> Callable[..., Hooked]:
    """A fresh tenant (with ``settings``) in the module's database, hooked to the receiver."""

    def make(settings: dict[str, Any] | None = None) -> Hooked:
        number = f"+1628555{uuid.uuid4().int % 9000 + 1000:04d}"
        tenant = Tenant(
            id=f"t{uuid.uuid4().hex[:16]}",
            settings=settings or SMS_ON,
            outbound_numbers={number: {}},
            agents={1: dict(DEMO_AGENT)},
            index_numbers=True,
        )
        tenant.write(own_db)
        _, [secret] = add_endpoint(own_db, tenant.id, receiver.url)
        return Hooked(tenant, number, secret, receiver, stack.api)

    return make


@pytest.fixture
def hooked(make_hooked: Callable[..., Hooked]) -> Hooked:
    return make_hooked()


def reply(
    hooked: Hooked, standin: TwilioStandIn, sender: str, body: str, sid: str | None = None
) -> str:
    """A consumer's SMS to the tenant's number, posted and signed as Twilio does; its sid."""
    sid = sid or "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": standin.account_sid,
        "From": sender, "To": hooked.number, "Body": body, "NumMedia": "0",
        "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    url = hooked.api + INBOUND_PATH
    headers = {"X-Twilio-Signature": sign(url, form, standin.auth_token)}
    answer = requests.post(url, data=form, headers=headers, timeout=30)
    assert (answer.status_code, answer.text) == (200, "<Response/>")
    return sid


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def reached(message: dict[str, Any], status: str) -> str:
    """When the message reached ``status``, as its history says."""
    [when] = [change["at"] for change in message["status_history"] if change["status"] == status]
    return str(when)


# ---- a session opened by POST /sms, the carrier's reports, ended by PATCH ----------------


def test_a_sent_sms_is_chat_created_then_message_sent_delivered_and_chat_ended_by_patch(
    hooked: Hooked, standin: TwilioStandIn
) -> None:
    to = consumer()
    answer = hooked.post(to, agentId=1)
    assert answer.status_code == 200, answer.text
    chat = answer.json()

    created, sent = hooked.expect("chat.created", "message.sent")
    assert created["data"] == chat  # the chat document as created
    assert created["timestamp"] == chat["created_at"]
    [message] = hooked.transcript(chat["id"])
    assert sent["data"] == message  # the message of 10.5 after the change
    assert list(sent["data"]) == MESSAGE_KEYS
    assert (message["status"], message["direction"], message["to"]) == ("sent", "outbound", to)
    assert sent["timestamp"] == reached(message, "sent")

    [sms] = standin.sent_to(to)
    assert standin.status_callback(sms["sid"], "delivered").status_code == 204
    [delivered] = hooked.expect("message.delivered")
    [message] = hooked.transcript(chat["id"])
    assert delivered["data"] == message
    assert (message["status"], message["carrier_id"]) == ("delivered", sms["sid"])
    assert delivered["timestamp"] == reached(message, "delivered")

    # The same report again, a late `sent`, and `read` (delivered, in this service's words):
    # no change, so no event.
    listed = hooked.listed()
    for status in ("delivered", "sent", "read"):
        assert standin.status_callback(sms["sid"], status).status_code == 204
    assert hooked.listed() == listed

    ended = hooked.patch(chat["id"], {"status": "finished"})
    [finished] = hooked.expect("chat.ended")
    assert finished["data"] == ended  # the chat document as ended
    assert (ended["status"], finished["timestamp"]) == ("finished", ended["ends_at"])
    hooked.each_listed_event_delivered_once()


def test_an_undelivered_report_is_message_undelivered_with_the_carriers_code(
    hooked: Hooked, standin: TwilioStandIn
) -> None:
    to = consumer()
    answer = hooked.post(to)
    assert answer.status_code == 200, answer.text
    hooked.expect("chat.created", "message.sent")

    [sms] = standin.sent_to(to)
    report = standin.status_callback(sms["sid"], "undelivered", error_code=30003)
    assert report.status_code == 204
    [undelivered] = hooked.expect("message.undelivered")
    [message] = hooked.transcript(answer.json()["id"])
    assert undelivered["data"] == message
    assert (message["status"], message["error_code"]) == ("undelivered", "30003")

    listed = hooked.listed()  # a final status never changes: a later report makes no event
    assert standin.status_callback(sms["sid"], "delivered").status_code == 204
    assert standin.status_callback(sms["sid"], "undelivered", error_code=30003).status_code == 204
    assert hooked.listed() == listed
    hooked.each_listed_event_delivered_once()


# ---- a first send the carrier refuses: 502, message.failed, chat.ended --------------------


@pytest.mark.parametrize(
    ("code", "fail_reason", "opted_out"),
    [(21610, "end_user_opt_out", True), (21211, "unknown", False)],
    ids=["unsubscribed", "invalid_to"],
)
def test_a_refused_first_send_is_chat_created_then_message_failed_and_chat_ended(
    hooked: Hooked, standin: TwilioStandIn, code: int, fail_reason: str, opted_out: bool
) -> None:
    to = consumer()
    standin.script(Refuse(code))
    answer = hooked.post(to)
    assert (answer.status_code, answer.json()) == (502, {"message": "SMS could not be sent"})

    types = ["chat.created", "message.failed", "chat.ended"]
    events = hooked.expect(*types, *(["consumer.opted_out"] if opted_out else []))
    created, failed, ended = events[:3]
    chat_id = created["data"]["id"]
    assert created["data"]["status"] == "selecting"  # as created: before the send
    assert (created["data"]["ends_at"], created["data"]["fail_reason"]) == (None, None)
    assert created["timestamp"] == created["data"]["created_at"]
    [message] = hooked.transcript(chat_id)
    assert failed["data"] == message
    assert (message["status"], message["error_code"]) == ("failed", str(code))
    assert ended["data"] == hooked.chat(chat_id)
    assert (ended["data"]["status"], ended["data"]["fail_reason"]) == ("failed", fail_reason)
    assert ended["timestamp"] == failed["timestamp"] == reached(message, "failed")  # one commit
    if opted_out:
        assert events[3]["data"] == {"number": to, "source": "carrier"}
        assert events[3]["timestamp"] == failed["timestamp"]  # one commit
    hooked.each_listed_event_delivered_once()


# ---- a session a reply opened; assigned; the same reply delivered again -------------------


def test_a_reply_opens_a_queued_chat_delivered_with_message_received_then_chat_assigned(
    hooked: Hooked, standin: TwilioStandIn
) -> None:
    sender = consumer()
    sid = reply(hooked, standin, sender, "Is my order on its way?")

    created, received = hooked.expect("chat.created", "message.received")
    chat_id = created["data"]["id"]
    assert created["data"] == hooked.chat(chat_id)
    assert (created["data"]["status"], created["data"]["agent_info"]) == ("queued", None)
    assert created["data"]["queued_at"] == created["data"]["created_at"] == created["timestamp"]
    [message] = hooked.transcript(chat_id)
    assert received["data"] == message
    assert list(received["data"]) == MESSAGE_KEYS
    assert (message["direction"], message["status"]) == ("inbound", "received")
    assert (message["from"], message["to"], message["carrier_id"]) == (sender, hooked.number, sid)
    assert received["timestamp"] == message["created_at"]

    listed = hooked.listed()  # Twilio delivers the same reply again: stored once, no event
    reply(hooked, standin, sender, "Is my order on its way?", sid=sid)
    assert hooked.listed() == listed

    assigned = hooked.patch(chat_id, {"agent_id": 1})
    [assignment] = hooked.expect("chat.assigned")
    assert assignment["data"] == assigned  # the chat document as assigned
    assert (assigned["status"], assigned["agent_info"]["id"]) == ("assigned", 1)
    assert assignment["timestamp"] == assigned["assigned_at"]

    reply(hooked, standin, sender, "Thanks!")  # joins the session: no second chat.created
    [joined] = hooked.expect("message.received")
    assert (joined["data"]["chat_id"], joined["data"]["text"]) == (chat_id, "Thanks!")
    hooked.each_listed_event_delivered_once()


# ---- opting out and back in by keyword --------------------------------------------------


def test_stop_is_consumer_opted_out_by_keyword_and_start_consumer_opted_in(
    hooked: Hooked, standin: TwilioStandIn
) -> None:
    sender = consumer()
    reply(hooked, standin, sender, "  stop ")
    created, received, opted_out = hooked.expect(
        "chat.created", "message.received", "consumer.opted_out"
    )
    assert received["data"]["text"] == "  stop "  # stored as sent; the keyword is trimmed
    assert opted_out["data"] == {"number": sender, "source": "keyword"}
    assert opted_out["timestamp"] == received["timestamp"] == created["timestamp"]

    listed = hooked.listed()  # already opted out: the keyword is stored, nothing is recorded
    reply(hooked, standin, sender, "STOP")
    [again] = hooked.expect("message.received")
    assert [e["id"] for e in hooked.listed()] == [e["id"] for e in listed] + [again["id"]]

    reply(hooked, standin, sender, "Start")
    received, opted_in = hooked.expect("message.received", "consumer.opted_in")
    assert opted_in["data"] == {"number": sender, "source": "keyword"}
    assert received["data"]["chat_id"] == created["data"]["id"]  # joined the open session

    reply(hooked, standin, sender, "START")  # not opted out any more: no second opted_in
    hooked.expect("message.received")
    hooked.each_listed_event_delivered_once()


# ---- ended by the sweeper, idle past the tenant's timeout (6.4) -------------------------


def test_an_idle_session_the_sweeper_ends_is_chat_ended_at_the_moment_it_expired(
    stack: EventStack, make_hooked: Callable[..., Hooked]
) -> None:
    timeout = 60
    hooked = make_hooked({**SMS_ON, "session_timeout_seconds": timeout})
    answer = hooked.post(consumer())
    assert answer.status_code == 200, answer.text
    chat = answer.json()
    hooked.expect("chat.created", "message.sent")

    clock = MovableClock()  # now, and then past the timeout: the sweep finds it expired
    clock.advance(timeout + 1)
    swept = sweep(stack, clock)
    assert swept.sessions_ended == [(hooked.tenant.id, chat["id"])]

    [ended] = hooked.expect("chat.ended")
    expired = at(chat["created_at"]) + dt.timedelta(seconds=timeout)
    assert ended["data"]["ends_at"] == render.timestamp(expired)  # not when it was swept
    assert (ended["data"]["status"], ended["data"]["chat_duration"]) == ("finished", timeout)
    assert ended["data"] == hooked.chat(chat["id"])
    assert ended["timestamp"] == render.timestamp(clock.now)  # when the sweep committed it
    hooked.each_listed_event_delivered_once()


# ---- held for quiet hours (10.8): no message.sent until it goes out -----------------------


def quiet_now(minutes_left: int) -> dict[str, Any]:
    """A hold window around now in San Francisco (the consumers' +1 415 numbers) that ends
    in ``minutes_left`` minutes or a little more."""
    local = dt.datetime.now(ZoneInfo("America/Los_Angeles"))
    start = local - dt.timedelta(hours=1)
    end = local + dt.timedelta(minutes=minutes_left + 1)
    return {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}", "policy": "hold"}


def test_a_held_message_is_message_sent_when_the_sweeper_sends_it_or_failed_when_cancelled(
    stack: EventStack, make_hooked: Callable[..., Hooked]
) -> None:
    hooked = make_hooked({**SMS_ON, "quiet_hours": quiet_now(2)})

    cancelled = hooked.post(consumer())
    assert cancelled.status_code == 200, cancelled.text
    hooked.expect("chat.created")  # held: no message.sent
    ended = hooked.patch(cancelled.json()["id"], {"status": "finished"})
    chat_ended, failed = hooked.expect("chat.ended", "message.failed")
    assert chat_ended["data"] == ended
    [message] = hooked.transcript(ended["id"])
    assert failed["data"] == message
    assert (message["status"], message["error_code"]) == ("failed", None)

    released = hooked.post(consumer())
    assert released.status_code == 200, released.text
    hooked.expect("chat.created")
    [held] = hooked.transcript(released.json()["id"])
    assert held["status"] == "scheduled"
    due = MovableClock(at(held["scheduled_for"]) + dt.timedelta(seconds=1))
    sweep(stack, due)
    [sent] = hooked.expect("message.sent")
    [message] = hooked.transcript(released.json()["id"])
    assert sent["data"] == message
    assert message["status"] == "sent"
    hooked.each_listed_event_delivered_once()
