"""SPEC 10.8 through the API: quiet hours refuse or hold the message that opens a session.

The function runs in-process on a clock the test moves (conftest's `in_process`), with
SMS_CARRIER=twilio against the stand-in for Twilio, which records what reached it; the sweeper
runs in-process too (`app.sweeper.run()`), built on the same clock. Each tenant's window is set
relative to the clock's time in the consumer's zone, computed here with zoneinfo, so the tests
pass at any hour. The clock starts at the real now, moved a week on while a change of UTC offset
is near, so that a window's end is where wall-clock arithmetic puts it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.cloud import firestore
from twilio_standin import TwilioStandIn, sign

from conftest import (
    CHAT_KEYS,
    SEED_BODY,
    SMS_PATH,
    MovableClock,
    Tenant,
    count_documents,
    in_process,
    twilio_env,
)
from sms import bootstrap
from sms.bootstrap import App
from sms.clock import utc_now
from sms.config import Settings
from sms.devtools.emulator import free_port
from sms.devtools.seed import DEMO_AGENT
from sms.quiet_hours import zones_for
from sms.sweeper import Swept

UTC = dt.timezone.utc
NY, LA, BOISE, CHICAGO = (
    "America/New_York",
    "America/Los_Angeles",
    "America/Boise",
    "America/Chicago",
)
SMS_ON = {"sms_enabled": True, "outbound_sms_enabled": True}
QUIET = {"message": "end_user_number is in quiet hours"}
OPTED_OUT = {"message": "end_user_number has opted out"}
ACTIVE = {"message": "Outbound SMS failed. Consumer is already in an active SMS session."}
MESSAGE_KEYS = [
    "id", "chat_id", "direction", "from", "to", "text", "agent_id", "encoding", "segments",
    "status", "carrier_id", "error_code", "created_at", "status_history", "scheduled_for",
]  # fmt: skip
SENT_HISTORY = ["scheduled", "queued", "sending", "sent"]
_numbers = itertools.count()


def consumer(area: str) -> str:
    """A number of the area code that no other test of this module texts."""
    return f"+1{area}555{next(_numbers) % 10000:04d}"


def tenant_number() -> str:
    """An outbound number of a tenant's own (the numbers/ index routes replies by it)."""
    return f"+16283{next(_numbers) % 1_000_000:06d}"


# ---- time -----------------------------------------------------------------------------------


def _offset_changes(zone: str, since: dt.datetime, hours: int) -> bool:
    tz = ZoneInfo(zone)
    offsets = {(since + dt.timedelta(hours=h)).astimezone(tz).utcoffset() for h in range(hours)}
    return len(offsets) > 1


def steady_now() -> dt.datetime:
    """Now, or a week on while a zone used here changes its UTC offset within days of it."""
    now = utc_now()
    while any(
        _offset_changes(zone, now - dt.timedelta(days=1), 5 * 24)
        for zone in (NY, LA, BOISE, CHICAGO)
    ):
        now += dt.timedelta(days=7)
    return now


def minute_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(second=0, microsecond=0)


def window(clock: MovableClock, zone: str, start: int, end: int) -> dict[str, str]:
    """Quiet hours from ``start`` to ``end`` minutes after the clock's minute, on the wall
    clock of ``zone`` (negative: before it)."""
    here = minute_of(clock.now.astimezone(ZoneInfo(zone)))
    shifted = (here + dt.timedelta(minutes=start), here + dt.timedelta(minutes=end))
    return {"start": f"{shifted[0]:%H:%M}", "end": f"{shifted[1]:%H:%M}"}


def minutes_on(clock: MovableClock, minutes: int) -> dt.datetime:
    """The instant ``minutes`` after the clock's current minute."""
    return minute_of(clock.now) + dt.timedelta(minutes=minutes)


def stamp(moment: dt.datetime) -> str:
    """A time as the API writes it (SPEC 5): UTC, to the millisecond."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def move_to(clock: MovableClock, moment: dt.datetime) -> None:
    clock.now = moment


def next_local(clock: MovableClock, zone: str, hour: int) -> dt.datetime:
    """The next instant at which the wall clock of ``zone`` shows ``hour``:00."""
    here = clock.now.astimezone(ZoneInfo(zone))
    at = here.replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at > here else at + dt.timedelta(days=1)


# ---- the function, the sweeper and the stand-in ---------------------------------------------


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(steady_now())


@pytest.fixture(autouse=True)
def _clean_standin(standin: TwilioStandIn) -> Iterator[None]:
    standin.reset()
    yield
    standin.release()
    standin.reset()


@dataclass
class Service:
    """sms_api in-process on the test's clock, sending through the stand-in; its sweeper."""

    client: Any
    clock: MovableClock
    standin: TwilioStandIn
    settings: Settings
    base_url: str  # SMS_PUBLIC_BASE_URL: the URL Twilio signs its webhooks for
    sweeper: App

    def sweeper_app(self) -> App:
        """Another sweeper's app: its own Firestore client, the same clock."""
        return bootstrap.build(self.settings, clock=self.clock)

    def sweep(self) -> Swept:
        return self.sweeper.sweeper.run()


@pytest.fixture
def service(emulator_host: str, standin: TwilioStandIn, clock: MovableClock) -> Service:
    port = free_port()
    settings = Settings.from_env(twilio_env(standin, port))
    return Service(
        client=in_process(settings, clock).test_client(),
        clock=clock,
        standin=standin,
        settings=settings,
        base_url=f"http://127.0.0.1:{port}",
        sweeper=bootstrap.build(settings, clock=clock),
    )


def outbound_of(tenant: Tenant) -> str:
    return next(iter(tenant.outbound_numbers))


@pytest.fixture
def quiet_tenant(
    make_tenant: Callable[..., Tenant], service: Service
) -> Iterator[Callable[..., Tenant]]:
    """Make a tenant with agent 1, a number of its own and the quiet hours given. Its
    sessions still active afterwards are ended, so that nothing it held is sent later by
    another test's sweep."""
    made: list[Tenant] = []

    def make(
        hours: dict[str, str], policy: str = "hold", state_rules: bool = False, **settings: Any
    ) -> Tenant:
        quiet = {**hours, "policy": policy, "state_rules": state_rules}
        document: dict[str, Any] = {**SMS_ON, "quiet_hours": quiet, **settings}
        tenant = make_tenant(
            settings=document,
            agents={1: dict(DEMO_AGENT)},
            outbound_numbers={tenant_number(): {"sms_enabled": True}},
            index_numbers=True,
        )
        made.append(tenant)
        return tenant

    yield make
    for tenant in made:
        listed = service.client.get(
            "/apps/api/v1/chats", query_string={"status": "active"}, headers=tenant.headers
        )
        for chat in listed.get_json()["chats"] if listed.status_code == 200 else ():
            service.client.patch(
                f"/apps/api/v1/chats/{chat['id']}",
                json={"status": "finished"},
                headers=tenant.headers,
            )


def post(service: Service, tenant: Tenant, to: str, key: str | None = None, **changes: Any) -> Any:
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    body = {**SEED_BODY, "end_user_number": to, "outbound_number": outbound_of(tenant), **changes}
    return service.client.post(SMS_PATH, json=body, headers=headers)


def chat_of(service: Service, tenant: Tenant, chat_id: int) -> dict[str, Any]:
    answer = service.client.get(f"/apps/api/v1/chats/{chat_id}", headers=tenant.headers)
    assert answer.status_code == 200, answer.get_json()
    return dict(answer.get_json())


def transcript(service: Service, tenant: Tenant, chat_id: int) -> list[dict[str, Any]]:
    answer = service.client.get(f"/apps/api/v1/chats/{chat_id}/messages", headers=tenant.headers)
    assert answer.status_code == 200, answer.get_json()
    messages = list(answer.get_json()["messages"])
    for message in messages:
        assert list(message) == MESSAGE_KEYS
    return messages


def only_message(service: Service, tenant: Tenant, chat_id: int) -> dict[str, Any]:
    [message] = transcript(service, tenant, chat_id)
    return message


def statuses(message: dict[str, Any]) -> list[str]:
    return [change["status"] for change in message["status_history"]]


def events_of(service: Service, tenant: Tenant) -> list[dict[str, Any]]:
    answer = service.client.get("/apps/api/v1/events", headers=tenant.headers)
    assert answer.status_code == 200, answer.get_json()
    return list(answer.get_json()["events"])


def creates_to(standin: TwilioStandIn, number: str) -> list[Any]:
    """Every request to create a message for ``number`` that reached the stand-in."""
    return [r for r in standin.requests if r.method == "POST" and r.form.get("To") == [number]]


def outcomes(swept: Swept, tenant: Tenant) -> list[str]:
    return [one.outcome for one in swept.settled if one.tenant == tenant.id]


def reply(service: Service, tenant: Tenant, sender: str, text: str) -> Any:
    """The consumer's SMS to the tenant's number, posted and signed as Twilio does."""
    sid = "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid":
        service.standin.account_sid, "From": sender, "To": outbound_of(tenant), "Body": text,
        "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    path = SMS_PATH + "/inbound"
    signature = sign(service.base_url + path, form, service.standin.auth_token)
    answer = service.client.post(path, data=form, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


# ---- refuse ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("area", "zone"), [("212", NY), ("213", LA)], ids=["new-york", "la"])
def test_refuse_answers_400_writing_nothing_and_the_same_request_goes_once_the_window_ends(
    service: Service,
    quiet_tenant: Callable[..., Tenant],
    db: firestore.Client,
    area: str,
    zone: str,
) -> None:
    to = consumer(area)
    assert zones_for(to, NY) == (zone,)
    # Quiet on the consumer's wall clock, not on the other coast's (3 hours off).
    tenant = quiet_tenant(window(service.clock, zone, -60, 120), policy="refuse")
    stored = count_documents(db, tenant.id)

    refused = post(service, tenant, to, agentId=1)

    assert (refused.status_code, refused.get_json()) == (400, QUIET)
    assert count_documents(db, tenant.id) == stored
    assert creates_to(service.standin, to) == []

    move_to(service.clock, minutes_on(service.clock, 120) - dt.timedelta(seconds=1))
    assert post(service, tenant, to, agentId=1).get_json() == QUIET
    service.clock.advance(1)  # the window's end: no longer quiet
    answer = post(service, tenant, to, agentId=1)

    assert answer.status_code == 200, answer.get_json()
    message = only_message(service, tenant, answer.get_json()["id"])
    assert (message["status"], message["scheduled_for"]) == ("sent", None)
    assert statuses(message) == ["queued", "sending", "sent"]
    assert len(service.standin.sent_to(to)) == 1


@pytest.fixture
def refusing(service: Service, quiet_tenant: Callable[..., Tenant]) -> Tenant:
    """A tenant whose New York consumers are in quiet hours now (policy refuse)."""
    return quiet_tenant(window(service.clock, NY, -60, 120), policy="refuse")


def test_message_too_long_comes_before_quiet_hours(service: Service, refusing: Tenant) -> None:
    answer = post(service, refusing, consumer("212"), message="x" * 1601)
    assert answer.get_json() == {"message": "message is too long"}


def test_opted_out_comes_before_quiet_hours(
    service: Service, refusing: Tenant, db: firestore.Client
) -> None:
    to = consumer("212")
    reply(service, refusing, to, "STOP")  # a reply is never refused: it is stored
    stored = count_documents(db, refusing.id)

    answer = post(service, refusing, to, ticket_id=5)

    assert (answer.status_code, answer.get_json()) == (400, OPTED_OUT)
    assert count_documents(db, refusing.id) == stored
    assert creates_to(service.standin, to) == []


@pytest.mark.parametrize(
    "changes",
    [{"ticket_id": 5}, {"ticket_id": "t" * 256}, {"agentId": "one"}, {"agentId": 99}],
    ids=["ticket_id-invalid", "ticket_id-too-long", "agent-invalid", "agent-not-found"],
)
def test_quiet_hours_come_before_ticket_and_agent_checks(
    service: Service, refusing: Tenant, db: firestore.Client, changes: dict[str, Any]
) -> None:
    to = consumer("212")
    stored = count_documents(db, refusing.id)

    answer = post(service, refusing, to, **changes)

    assert (answer.status_code, answer.get_json()) == (400, QUIET)
    assert count_documents(db, refusing.id) == stored
    assert creates_to(service.standin, to) == []


def test_quiet_hours_come_before_rule_17(
    service: Service, quiet_tenant: Callable[..., Tenant], db: firestore.Client
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, 60, 180), policy="refuse")
    opened = post(service, tenant, to)  # before the window: sent, and the session stays open
    assert opened.status_code == 200, opened.get_json()
    assert post(service, tenant, to).get_json() == ACTIVE
    service.clock.advance(90 * 60)  # within the window now
    stored = count_documents(db, tenant.id)

    answer = post(service, tenant, to)

    assert (answer.status_code, answer.get_json()) == (400, QUIET)
    assert count_documents(db, tenant.id) == stored
    assert len(creates_to(service.standin, to)) == 1  # the first message only


# ---- hold -----------------------------------------------------------------------------------


def test_hold_opens_the_session_and_stores_the_message_scheduled_without_calling_the_carrier(
    service: Service, quiet_tenant: Callable[..., Tenant], db: firestore.Client
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))

    answer = post(service, tenant, to, agentId=1, message="Your order has shipped.")

    assert answer.status_code == 200, answer.get_json()
    chat = answer.get_json()
    assert list(chat) == CHAT_KEYS
    assert (chat["status"], chat["ends_at"], chat["fail_reason"]) == ("assigned", None, None)
    assert chat["agent_info"] == {"id": 1, **DEMO_AGENT}
    assert chat["out_ticket_id"] == SEED_BODY["ticket_id"]
    assert chat["created_at"] == stamp(service.clock.now)
    assert chat_of(service, tenant, chat["id"]) == chat
    message = only_message(service, tenant, chat["id"])
    assert (message["direction"], message["from"], message["to"]) == (
        "outbound",
        outbound_of(tenant),
        to,
    )
    assert (message["text"], message["agent_id"]) == ("Your order has shipped.", 1)
    assert (message["status"], message["carrier_id"], message["error_code"]) == (
        "scheduled",
        None,
        None,
    )
    assert message["status_history"] == [{"status": "scheduled", "at": chat["created_at"]}]
    assert message["scheduled_for"] == stamp(minutes_on(service.clock, 120))
    assert service.standin.requests == []
    # The session is open as usual: the consumer is in it.
    assert post(service, tenant, to).get_json() == ACTIVE
    assert len(list(db.collection(f"tenants/{tenant.id}/chats").stream())) == 1


def test_a_retry_with_the_idempotency_key_replays_the_held_200(
    service: Service, quiet_tenant: Callable[..., Tenant], db: firestore.Client
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))
    first = post(service, tenant, to, key="order-1", agentId=1)
    assert first.status_code == 200, first.get_json()

    again = post(service, tenant, to, key="order-1", agentId=1)

    assert (again.status_code, again.get_data()) == (200, first.get_data())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(list(db.collection(f"tenants/{tenant.id}/chats").stream())) == 1
    assert only_message(service, tenant, first.get_json()["id"])["status"] == "scheduled"
    assert service.standin.requests == []


def test_a_number_in_two_zones_is_held_while_either_is_quiet_until_the_later_ones_end(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("208")  # Idaho: Boise (Mountain) and Los Angeles (Pacific), an hour behind
    assert zones_for(to, NY) == (BOISE, LA)
    # Quiet in Boise from half an hour ago; in Los Angeles from half an hour on. Boise's window
    # ends in two hours, Los Angeles' an hour after that.
    tenant = quiet_tenant(window(service.clock, BOISE, -30, 120))

    answer = post(service, tenant, to)

    assert answer.status_code == 200, answer.get_json()
    message = only_message(service, tenant, answer.get_json()["id"])
    assert message["status"] == "scheduled"
    assert message["scheduled_for"] == stamp(minutes_on(service.clock, 180))


def test_a_number_no_zone_is_known_for_is_judged_in_the_tenants_default_time_zone(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("800")  # toll-free: phonenumbers gives every zone of +1, Guam to Pago Pago
    # Quiet in Chicago for half an hour more; in New York (the default default) it is not.
    tenant = quiet_tenant(window(service.clock, CHICAGO, -30, 30), default_time_zone=CHICAGO)

    answer = post(service, tenant, to)

    assert answer.status_code == 200, answer.get_json()
    message = only_message(service, tenant, answer.get_json()["id"])
    assert message["status"] == "scheduled"
    assert message["scheduled_for"] == stamp(minutes_on(service.clock, 30))
    # The same window judged in New York, the default when the tenant names none: not quiet.
    elsewhere = quiet_tenant(window(service.clock, CHICAGO, -30, 30))
    sent = post(service, elsewhere, consumer("800"))
    assert only_message(service, elsewhere, sent.get_json()["id"])["status"] == "sent"


# ---- the send after the window --------------------------------------------------------------


def test_the_sweeper_sends_a_held_message_once_its_time_has_come_and_not_before(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))
    chat_id = post(service, tenant, to, key="order-2").get_json()["id"]
    due = minutes_on(service.clock, 120)

    move_to(service.clock, due - dt.timedelta(seconds=1))
    assert outcomes(service.sweep(), tenant) == []
    assert only_message(service, tenant, chat_id)["status"] == "scheduled"
    # (A sweep takes every tenant's due messages: only this consumer's are this test's.)
    assert service.standin.sent_to(to) == []

    move_to(service.clock, due)
    [released] = [one for one in service.sweep().settled if one.tenant == tenant.id]

    [sms] = service.standin.sent_to(to)
    assert (released.chat_id, released.carrier_id) == (chat_id, sms["sid"])
    assert (sms["from"], sms["body"]) == (outbound_of(tenant), SEED_BODY["message"])
    message = only_message(service, tenant, chat_id)
    assert (message["status"], message["carrier_id"]) == ("sent", sms["sid"])
    assert statuses(message) == SENT_HISTORY
    assert [change["at"] for change in message["status_history"][1:]] == [stamp(due)] * 3
    assert message["scheduled_for"] == stamp(due)
    assert chat_of(service, tenant, chat_id)["status"] == "selecting"  # the session goes on
    assert outcomes(service.sweep(), tenant) == []  # nothing left to send
    assert len(creates_to(service.standin, to)) == 1
    replay = post(service, tenant, to, key="order-2")
    assert (replay.status_code, replay.get_json()["id"]) == (200, chat_id)
    events = events_of(service, tenant)
    assert [event["type"] for event in events] == ["chat.created", "message.sent"]
    assert events[1]["data"] == message


def test_two_sweepers_at_once_send_each_held_message_exactly_once(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))
    numbers = [consumer("212") for _ in range(4)]
    chat_ids = [post(service, tenant, to).get_json()["id"] for to in numbers]
    move_to(service.clock, minutes_on(service.clock, 120))
    sweepers = [service.sweeper_app() for _ in range(2)]
    start = threading.Barrier(len(sweepers))

    def sweep_at_once(app: App) -> Swept:
        start.wait()
        return app.sweeper.run()

    with ThreadPoolExecutor(len(sweepers)) as pool:
        reports = list(pool.map(sweep_at_once, sweepers))

    found = [one for report in reports for one in report.settled if one.tenant == tenant.id]
    # Each sent by one sweeper (the carrier's id is its proof); the other found it taken.
    sent = sorted(one.chat_id for one in found if one.carrier_id is not None)
    assert sent == sorted(chat_ids), found
    assert {one.outcome for one in found if one.carrier_id is None} <= {"taken"}, found
    for to, chat_id in zip(numbers, chat_ids, strict=True):
        assert len(creates_to(service.standin, to)) == 1, to
        message = only_message(service, tenant, chat_id)
        assert (message["status"], statuses(message)) == ("sent", SENT_HISTORY)


def test_a_sweep_that_comes_only_once_the_window_is_back_holds_the_message_again(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120), session_timeout_seconds=3 * 86400)
    chat_id = post(service, tenant, to).get_json()["id"]
    tomorrows_end = minutes_on(service.clock, 120 + 24 * 60)
    # No sweep ran while it was allowed: the next night's window began 23 hours on.
    move_to(service.clock, minutes_on(service.clock, 23 * 60 + 10))

    assert outcomes(service.sweep(), tenant) == ["held"]

    message = only_message(service, tenant, chat_id)
    assert (message["status"], statuses(message)) == ("scheduled", ["scheduled"])
    assert message["scheduled_for"] == stamp(tomorrows_end)
    assert creates_to(service.standin, to) == []
    assert outcomes(service.sweep(), tenant) == []  # not due again before then


# ---- what ends a hold before its time -------------------------------------------------------


def test_a_stop_during_the_hold_fails_the_message_at_the_sweep_without_calling_the_carrier(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))
    first = post(service, tenant, to, key="order-3")
    chat_id = first.get_json()["id"]
    service.clock.advance(60)
    reply(service, tenant, to, "STOP")  # joins the session, stored as any reply
    held, stop = transcript(service, tenant, chat_id)
    assert (held["status"], stop["direction"], stop["status"]) == (
        "scheduled",
        "inbound",
        "received",
    )

    move_to(service.clock, minutes_on(service.clock, 120))
    assert outcomes(service.sweep(), tenant) == ["failed"]

    message, _ = transcript(service, tenant, chat_id)
    assert (message["status"], message["error_code"], message["carrier_id"]) == (
        "failed",
        None,
        None,
    )
    assert message["status_history"] == [
        {"status": "scheduled", "at": first.get_json()["created_at"]},
        {"status": "failed", "at": stamp(service.clock.now)},
    ]
    chat = chat_of(service, tenant, chat_id)
    assert (chat["status"], chat["fail_reason"]) == ("failed", "end_user_opt_out")
    assert chat["ends_at"] is not None
    assert creates_to(service.standin, to) == []
    assert post(service, tenant, to).get_json() == OPTED_OUT
    replay = post(service, tenant, to, key="order-3")  # the first answer stands
    assert (replay.status_code, replay.get_data()) == (200, first.get_data())


def test_ending_the_session_cancels_the_held_message_at_once_and_no_sweep_sends_it(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))
    first = post(service, tenant, to, key="order-4")
    chat_id = first.get_json()["id"]
    service.clock.advance(60)

    ended = service.client.patch(
        f"/apps/api/v1/chats/{chat_id}", json={"status": "finished"}, headers=tenant.headers
    )

    assert ended.status_code == 200, ended.get_json()
    assert ended.get_json()["status"] == "finished"
    message = only_message(service, tenant, chat_id)
    assert (message["status"], message["error_code"], message["carrier_id"]) == (
        "failed",
        None,
        None,
    )
    assert statuses(message) == ["scheduled", "failed"]
    assert message["status_history"][1]["at"] == ended.get_json()["ends_at"]
    move_to(service.clock, minutes_on(service.clock, 180))
    assert outcomes(service.sweep(), tenant) == []
    assert only_message(service, tenant, chat_id) == message
    assert creates_to(service.standin, to) == []
    events = {event["type"]: event for event in events_of(service, tenant)}
    assert len(events) == 3  # one each (the two of the end share its time: in either order)
    assert set(events) == {"chat.created", "chat.ended", "message.failed"}
    assert events["message.failed"]["data"] == message
    replay = post(service, tenant, to, key="order-4")  # the first answer stands
    assert (replay.status_code, replay.get_data()) == (200, first.get_data())


def test_idle_expiry_during_the_hold_ends_the_session_and_cancels_the_message(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120), session_timeout_seconds=600)
    opened = post(service, tenant, to).get_json()
    expiry = service.clock.now + dt.timedelta(seconds=600)  # idle since it opened

    move_to(service.clock, expiry + dt.timedelta(seconds=30))
    swept = service.sweep()

    assert swept.sessions_ended.count((tenant.id, opened["id"])) == 1
    chat = chat_of(service, tenant, opened["id"])
    assert (chat["status"], chat["ends_at"]) == ("finished", stamp(expiry))
    message = only_message(service, tenant, opened["id"])
    assert (message["status"], message["error_code"]) == ("failed", None)
    assert statuses(message) == ["scheduled", "failed"]
    move_to(service.clock, minutes_on(service.clock, 180))
    assert outcomes(service.sweep(), tenant) == []
    assert creates_to(service.standin, to) == []
    types = [event["type"] for event in events_of(service, tenant)]
    assert (types[0], sorted(types[1:])) == ("chat.created", ["chat.ended", "message.failed"])


def test_a_held_message_whose_expired_session_a_later_request_finished_is_never_sent(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120), session_timeout_seconds=600)
    held = post(service, tenant, to).get_json()
    expiry = service.clock.now + dt.timedelta(seconds=600)
    move_to(service.clock, minutes_on(service.clock, 120))  # due, but no sweep has run yet

    later = post(service, tenant, to, message="A new message")  # meets the expired session

    assert later.status_code == 200, later.get_json()
    assert chat_of(service, tenant, held["id"])["ends_at"] == stamp(expiry)
    assert outcomes(service.sweep(), tenant) == ["failed"]
    message = only_message(service, tenant, held["id"])
    assert (message["status"], message["error_code"], statuses(message)) == (
        "failed",
        None,
        ["scheduled", "failed"],
    )
    [sms] = service.standin.sent_to(to)
    assert sms["body"] == "A new message"


# ---- what is never held ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "agent"),
    [("hold", {"agentId": 1}), ("refuse", {"agentEmail": "JOHN.DOE@foo.com"})],
    ids=["hold", "refuse"],
)
def test_an_agents_message_into_the_consumers_session_and_replies_are_never_held(
    service: Service, quiet_tenant: Callable[..., Tenant], policy: str, agent: dict[str, Any]
) -> None:
    to = consumer("213")
    tenant = quiet_tenant(window(service.clock, LA, 60, 180), policy=policy)
    opened = post(service, tenant, to, **agent)  # before the window: sent at once
    assert opened.status_code == 200, opened.get_json()
    service.clock.advance(90 * 60)  # within the window now

    again = post(service, tenant, to, message="Are you still there?", **agent)

    assert again.status_code == 200, again.get_json()
    assert again.get_json()["id"] == opened.get_json()["id"]
    first, second = transcript(service, tenant, opened.get_json()["id"])
    assert (first["status"], second["agent_id"]) == ("sent", 1)
    assert (second["text"], second["status"], second["scheduled_for"]) == (
        "Are you still there?",
        "sent",
        None,
    )
    assert statuses(second) == ["queued", "sending", "sent"]
    assert [sms["body"] for sms in service.standin.sent_to(to)] == [
        SEED_BODY["message"],
        "Are you still there?",
    ]
    service.clock.advance(60)
    reply(service, tenant, to, "Yes, thanks")  # the consumer's reply in quiet hours
    *_, answered = transcript(service, tenant, opened.get_json()["id"])
    assert (answered["direction"], answered["text"], answered["status"]) == (
        "inbound",
        "Yes, thanks",
        "received",
    )
    # Not on the agent's behalf, the window applies: refused, or held and so meeting rule 17.
    other = post(service, tenant, to)
    assert other.get_json() == (QUIET if policy == "refuse" else ACTIVE)


class RacedStore:
    """A store whose first look-up lets ``race`` run right after it (another request that
    opens the consumer's session meanwhile)."""

    def __init__(self, inner: Any, race: Callable[[], None]) -> None:
        self._inner = inner
        self._race: Callable[[], None] | None = race

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def look_up(self, *args: Any, **kwargs: Any) -> Any:
        found = self._inner.look_up(*args, **kwargs)
        race, self._race = self._race, None
        if race is not None:
            race()
        return found


def test_an_agents_message_that_meets_a_session_opened_meanwhile_is_sent_not_held(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    to = consumer("212")
    tenant = quiet_tenant(window(service.clock, NY, -60, 120))
    earlier = MovableClock(service.clock.now - dt.timedelta(hours=2))  # outside the window
    opening = in_process(service.settings, earlier).test_client()

    def open_first() -> None:
        body = {**SEED_BODY, "end_user_number": to, "outbound_number": outbound_of(tenant)}
        answer = opening.post(SMS_PATH, json={**body, "agentId": 1}, headers=tenant.headers)
        assert answer.status_code == 200, answer.get_json()

    store = RacedStore(bootstrap.build(service.settings).store, open_first)
    racing = in_process(service.settings, service.clock, store=store).test_client()
    body = {**SEED_BODY, "end_user_number": to, "outbound_number": outbound_of(tenant)}

    answer = racing.post(
        SMS_PATH, json={**body, "agentId": 1, "message": "again"}, headers=tenant.headers
    )

    assert answer.status_code == 200, answer.get_json()
    first, second = transcript(service, tenant, answer.get_json()["id"])
    assert (first["status"], first["scheduled_for"]) == ("sent", None)  # the other request's
    assert (second["text"], second["status"], second["scheduled_for"]) == ("again", "sent", None)
    assert [sms["body"] for sms in service.standin.sent_to(to)] == [SEED_BODY["message"], "again"]


# ---- state rules ----------------------------------------------------------------------------


def test_state_rules_make_a_florida_number_quiet_from_20_to_08_whatever_the_window(
    service: Service, quiet_tenant: Callable[..., Tenant]
) -> None:
    move_to(service.clock, next_local(service.clock, NY, 22))  # 22:00 in Miami and New York
    hours = window(service.clock, NY, 120, 180)  # the tenant's own window: 00:00 to 01:00
    strict = quiet_tenant(hours, state_rules=True)
    florida = consumer("305")
    assert zones_for(florida, CHICAGO) == (NY,)

    held = post(service, strict, florida)

    assert held.status_code == 200, held.get_json()
    message = only_message(service, strict, held.get_json()["id"])
    assert message["status"] == "scheduled"
    assert message["scheduled_for"] == stamp(next_local(service.clock, NY, 8))
    # New York has no such law: its consumer is texted at once, as without state rules Florida's.
    for tenant, number in ((strict, consumer("212")), (quiet_tenant(hours), consumer("305"))):
        sent = post(service, tenant, number)
        assert only_message(service, tenant, sent.get_json()["id"])["status"] == "sent"
    assert service.standin.sent_to(florida) == []


@pytest.mark.parametrize("hour", [12, 22])
def test_a_hold_that_could_never_end_is_refused_as_quiet_hours_and_writes_nothing(
    service: Service, quiet_tenant: Callable[..., Tenant], db: firestore.Client, hour: int
) -> None:
    # The tenant's 08:00-20:00 and Florida's 20:00-08:00 leave no minute of the day to send.
    tenant = quiet_tenant({"start": "08:00", "end": "20:00"}, state_rules=True)
    move_to(service.clock, next_local(service.clock, NY, hour))
    florida = consumer("305")
    stored = count_documents(db, tenant.id)

    answer = post(service, tenant, florida, agentId=1)

    assert (answer.status_code, answer.get_json()) == (400, QUIET)
    assert count_documents(db, tenant.id) == stored
    assert creates_to(service.standin, florida) == []
    # New York's consumers are held for the tenant's window, or texted outside it.
    new_york = post(service, tenant, consumer("212"))
    message = only_message(service, tenant, new_york.get_json()["id"])
    if hour == 12:
        due = next_local(service.clock, NY, 20)
        assert (message["status"], message["scheduled_for"]) == ("scheduled", stamp(due))
    else:
        assert (message["status"], message["scheduled_for"]) == ("sent", None)
