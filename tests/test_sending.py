"""SPEC 10.3: sending through Twilio, and never losing a message nor sending one twice.

The function runs as in production (functions-framework, SMS_CARRIER=twilio) and its real
`twilio` client talks to a stand-in for Twilio's API (tests/twilio_standin.py), which these
tests script: refusing, failing before or after recording the message, hanging, dropping the
connection. What reached the stand-in is counted; what the function stored is read through
its own transcript endpoint.

Where a test waits for time to pass (the sweeper's wait, a key's lease, the 24-hour give-up),
the function or the sweeper runs in-process on a clock the test moves instead; the tests that
need the function's own processes (killed mid-send, the sweeper's target) keep them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import flask
import pytest
import requests
from google.cloud import firestore
from twilio_standin import Drop, Hold, Refuse, ServerError, TwilioStandIn, sign

from conftest import (
    PROJECT,
    ROOT,
    SEED_BODY,
    SMS_PATH,
    SWEEP_AFTER_SECONDS,
    MovableClock,
    Tenant,
    twilio_env,
)
from sms import bootstrap
from sms.api import Api
from sms.bootstrap import App
from sms.carriers import Outgoing
from sms.carriers.twilio import TwilioCarrier
from sms.clock import utc_now
from sms.config import Settings
from sms.devtools.emulator import free_port
from sms.devtools.seed import DEMO_AGENT
from sms.devtools.server import running, serving
from sms.jobs import Jobs

NOT_SENT = {"message": "SMS could not be sent"}
OPTED_OUT = {"message": "end_user_number has opted out"}
ANSWER_WITHIN_SECONDS = 10
_consumers = itertools.count()


def consumer() -> str:
    """A phone number no other test of this module uses."""
    return f"+1415555{next(_consumers) % 10000:04d}"


@pytest.fixture(autouse=True)
def _clean_standin(standin: TwilioStandIn) -> Iterator[None]:
    standin.reset()
    yield
    standin.release()
    standin.reset()


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant(agents={1: dict(DEMO_AGENT)})


def post(
    url: str, tenant: Tenant, to: str, key: str | None = None, **changes: Any
) -> requests.Response:
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    body = {**SEED_BODY, "end_user_number": to, **changes}
    return requests.post(url + SMS_PATH, json=body, headers=headers, timeout=30)


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


def statuses(message: dict[str, Any]) -> list[str]:
    return [change["status"] for change in message["status_history"]]


def chats(db: firestore.Client, tenant: Tenant) -> list[dict[str, Any]]:
    return [snap.to_dict() for snap in db.collection(f"tenants/{tenant.id}/chats").stream()]


def sweep(standin: TwilioStandIn, **extra: str) -> dict[str, Any]:
    """`python -m sms.admin sweep`, as an operator runs it; its report."""
    env = twilio_env(standin, free_port(), **extra)
    done = subprocess.run(
        [sys.executable, "-m", "sms.admin", "sweep"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def settled(report: dict[str, Any], tenant: Tenant) -> list[str]:
    return [one["outcome"] for one in report["settled"] if one["tenant"] == tenant.id]


def sweeper_later(standin: TwilioStandIn, seconds: float = SWEEP_AFTER_SECONDS + 1) -> App:
    """The app of a sweeper with `sweep`'s environment, in-process, on a clock ``seconds``
    ahead of now (by default, just past the age the sweeper waits for)."""
    clock = MovableClock()
    clock.advance(seconds)
    return bootstrap.build(Settings.from_env(twilio_env(standin, free_port())), clock=clock)


def swept(app: App) -> dict[str, Any]:
    """One sweep, as the sms_sweeper target answers a POST: its report, as `sweep`'s."""
    with flask.Flask(__name__).test_request_context("/", method="POST"):
        answer = Jobs(app).sweep(flask.request)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return dict(answer.get_json())


def sweep_later(standin: TwilioStandIn, seconds: float = SWEEP_AFTER_SECONDS + 1) -> dict[str, Any]:
    """One sweep of `sweeper_later`."""
    return swept(sweeper_later(standin, seconds))


# ---- accepted ---------------------------------------------------------------------------


def test_an_accepted_sms_answers_200_and_is_stored_sent_with_twilios_id(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    answer = post(twilio_server, tenant, to, agentId=1, message="Your order has shipped.")

    assert answer.status_code == 200, answer.text
    [sms] = standin.sent_to(to)
    [message] = transcript(twilio_server, tenant, answer.json()["id"])
    assert message["carrier_id"] == sms["sid"]
    assert (message["status"], statuses(message)) == ("sent", ["queued", "sending", "sent"])
    assert (message["from"], message["to"], message["text"]) == (
        "+16285550199",
        to,
        "Your order has shipped.",
    )
    assert (message["agent_id"], message["error_code"]) == (1, None)
    assert (message["encoding"], message["segments"]) == ("GSM-7", 1)


def test_twilio_is_asked_with_to_from_body_and_the_status_callback_url(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    assert post(twilio_server, tenant, to, message="  Hello €  ").status_code == 200

    [create] = [r for r in standin.requests if r.method == "POST"]
    assert create.path == f"/2010-04-01/Accounts/{standin.account_sid}/Messages.json"
    assert create.form == {
        "To": [to],
        "From": ["+16285550199"],
        "Body": ["Hello €"],
        "StatusCallback": [twilio_server + "/apps/api/v1/sms/status"],
    }


def test_a_messaging_service_is_named_along_with_from(standin: TwilioStandIn) -> None:
    carrier = TwilioCarrier(
        standin.account_sid,
        standin.auth_token,
        api_base_url=standin.url,
        messaging_service_sid="MG" + "0" * 32,
    )
    to = consumer()
    receipt = carrier.send(Outgoing(to, "+16285550199", "hi", utc_now()), timeout=5)

    [create] = [r for r in standin.requests if r.method == "POST"]
    assert create.form["MessagingServiceSid"] == ["MG" + "0" * 32]
    assert create.form["From"] == ["+16285550199"]
    assert receipt.carrier_id == standin.sent_to(to)[0]["sid"]
    assert "StatusCallback" not in create.form  # no SMS_PUBLIC_BASE_URL: no callbacks


def test_a_ucs_2_text_is_stored_with_its_encoding_and_segments(
    twilio_server: str, tenant: Tenant
) -> None:
    answer = post(twilio_server, tenant, consumer(), message="Olá! 😀 " * 12)

    [message] = transcript(twilio_server, tenant, answer.json()["id"])
    assert (message["encoding"], message["segments"]) == ("UCS-2", 2)  # 95 code units


# ---- refused ----------------------------------------------------------------------------


def test_a_refusal_for_an_unsubscribed_consumer_fails_the_session_and_remembers_it(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    to = consumer()
    standin.script(Refuse(21610))
    answer = post(twilio_server, tenant, to)

    assert (answer.status_code, answer.json()) == (502, NOT_SENT)
    [stored] = chats(db, tenant)
    chat = chat_of(twilio_server, tenant, stored["id"])
    assert (chat["status"], chat["fail_reason"]) == ("failed", "end_user_opt_out")
    assert chat["ends_at"] is not None
    [message] = transcript(twilio_server, tenant, chat["id"])
    assert (message["status"], message["error_code"], message["carrier_id"]) == (
        "failed",
        "21610",
        None,
    )
    assert statuses(message) == ["queued", "sending", "failed"]
    opt_out = db.document(f"tenants/{tenant.id}/opt_outs/{to}").get()
    assert opt_out.exists
    assert opt_out.get("source") == "carrier"


def test_an_opted_out_consumer_is_refused_400_without_calling_twilio_or_writing(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    to = consumer()
    standin.script(Refuse(21610))
    assert post(twilio_server, tenant, to).status_code == 502
    sends, stored = len(standin.requests), chats(db, tenant)

    again = post(twilio_server, tenant, to, agentId=1)

    assert (again.status_code, again.json()) == (400, OPTED_OUT)
    assert len(standin.requests) == sends
    assert chats(db, tenant) == stored


def test_opted_out_comes_after_message_too_long_and_before_ticket_id_invalid(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    standin.script(Refuse(21610))
    post(twilio_server, tenant, to)

    too_long = post(twilio_server, tenant, to, message="x" * 1601)
    bad_ticket = post(twilio_server, tenant, to, ticket_id=5)
    bad_agent = post(twilio_server, tenant, to, agentId=999)

    assert too_long.json() == {"message": "message is too long"}
    assert bad_ticket.json() == OPTED_OUT
    assert bad_agent.json() == OPTED_OUT


def test_an_invalid_number_refusal_fails_the_session_and_frees_the_consumer(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    to = consumer()
    standin.script(Refuse(21211))
    assert post(twilio_server, tenant, to).status_code == 502
    [failed] = chats(db, tenant)

    retry = post(twilio_server, tenant, to)

    assert retry.status_code == 200, retry.text
    chat = chat_of(twilio_server, tenant, failed["id"])
    assert (chat["status"], chat["fail_reason"]) == ("failed", "unknown")
    [message] = transcript(twilio_server, tenant, failed["id"])
    assert (message["status"], message["error_code"]) == ("failed", "21211")
    assert not db.document(f"tenants/{tenant.id}/opt_outs/{to}").get().exists


def test_a_refused_send_on_an_agents_behalf_fails_the_session_it_joined(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    opened = post(twilio_server, tenant, to, agentId=1).json()
    standin.script(Refuse(21612))

    answer = post(twilio_server, tenant, to, agentId=1, message="second")

    assert (answer.status_code, answer.json()) == (502, NOT_SENT)
    assert chat_of(twilio_server, tenant, opened["id"])["status"] == "failed"
    first, second = transcript(twilio_server, tenant, opened["id"])
    assert (first["status"], second["status"], second["error_code"]) == ("sent", "failed", "21612")


# ---- outcome unknown: asked before anything is sent again -------------------------------


@pytest.mark.parametrize(
    ("failure", "creates"),
    [
        (ServerError(record=False), 2),  # a 500 before Twilio recorded it: sent once more
        (ServerError(record=True), 1),  # a 500 after: Twilio has it, not sent again
        (Drop(record=False), 2),  # the connection dropped before it was recorded
        (Drop(record=True), 1),  # ... or after
    ],
)
def test_an_unknown_outcome_is_settled_by_asking_twilio_and_sends_exactly_one_sms(
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    failure: ServerError | Drop,
    creates: int,
) -> None:
    to = consumer()
    standin.script(failure)
    answer = post(twilio_server, tenant, to)

    assert answer.status_code == 200, answer.text
    [sms] = standin.sent_to(to)
    [message] = transcript(twilio_server, tenant, answer.json()["id"])
    assert (message["status"], message["carrier_id"]) == ("sent", sms["sid"])
    methods = [r.method for r in standin.requests]
    assert methods.count("POST") == creates
    assert methods.index("GET") == 1, methods  # Twilio was asked before anything else
    listing = standin.requests[1]
    assert (listing.query["To"], listing.query["From"]) == ([to], ["+16285550199"])


def test_a_hang_where_twilio_had_recorded_the_message_answers_200_in_time(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    standin.script(Hold(record="before"))
    began = time.monotonic()
    answer = post(twilio_server, tenant, to)

    assert time.monotonic() - began < ANSWER_WITHIN_SECONDS
    assert answer.status_code == 200, answer.text
    [sms] = standin.sent_to(to)
    assert transcript(twilio_server, tenant, answer.json()["id"])[0]["carrier_id"] == sms["sid"]


def test_a_hang_past_the_deadline_answers_503_in_time_and_the_sweeper_sends_nothing_twice(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    to = consumer()
    standin.script(Hold(record="after"))
    began = time.monotonic()
    answer = post(twilio_server, tenant, to)

    assert time.monotonic() - began < ANSWER_WITHIN_SECONDS
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) >= 1
    [stored] = chats(db, tenant)
    assert chat_of(twilio_server, tenant, stored["id"])["status"] == "selecting"  # still open
    [message] = transcript(twilio_server, tenant, stored["id"])
    assert message["status"] == "sending"

    standin.release()  # Twilio finishes the create it held: the SMS went out after all
    report = sweep_later(standin)

    assert settled(report, tenant) == ["sent"]
    [sms] = standin.sent_to(to)
    [message] = transcript(twilio_server, tenant, stored["id"])
    assert (message["status"], message["carrier_id"]) == ("sent", sms["sid"])
    assert len([r for r in standin.requests if r.method == "POST"]) == 1


def test_a_hang_twilio_never_recorded_is_sent_by_the_sweeper_exactly_once(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    to = consumer()
    standin.script(Hold(record="never"))
    assert post(twilio_server, tenant, to).status_code == 503
    standin.release()

    assert settled(sweep_later(standin), tenant) == ["sent"]
    assert settled(sweep_later(standin), tenant) == []  # nothing left
    [sms] = standin.sent_to(to)
    [stored] = chats(db, tenant)
    [message] = transcript(twilio_server, tenant, stored["id"])
    assert (message["status"], message["carrier_id"]) == ("sent", sms["sid"])


def test_unreachable_twilio_answers_502_and_fails_the_session(
    tenant: Tenant, db: firestore.Client, emulator_host: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(project=PROJECT)
    carrier = TwilioCarrier("AC" + "0" * 32, "token", api_base_url=closed)
    api = Api(bootstrap.build(settings, carrier=carrier))
    body = {**SEED_BODY, "end_user_number": consumer()}
    with flask.Flask(__name__).test_request_context(
        SMS_PATH, method="POST", json=body, headers=tenant.headers
    ):
        answer = api.handle(flask.request)

    assert (answer.status_code, answer.get_json()) == (502, NOT_SENT)
    [chat] = chats(db, tenant)
    assert (chat["status"], chat["fail_reason"]) == ("failed", "unknown")
    [message] = db.collection(f"tenants/{tenant.id}/chats/{chat['id']}/messages").stream()
    assert (message.get("status"), message.get("error_code")) == ("failed", None)


# ---- Idempotency-Key across sends -------------------------------------------------------


def test_a_502_is_replayed_for_its_key_without_a_second_send(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    standin.script(Refuse(21211))
    first = post(twilio_server, tenant, to, key="order-1")
    again = post(twilio_server, tenant, to, key="order-1")

    assert (first.status_code, first.json()) == (502, NOT_SENT)
    assert (again.status_code, again.json()) == (502, NOT_SENT)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len([r for r in standin.requests if r.method == "POST"]) == 1


def test_a_retry_after_a_503_settles_the_send_and_answers_the_first_requests_200(
    clocked_twilio_server: str,
    clock: MovableClock,
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
) -> None:
    to = consumer()
    standin.script(Hold(record="after"))
    first = post(clocked_twilio_server, tenant, to, key="order-2")
    assert first.status_code == 503
    standin.release()

    retry = post(clocked_twilio_server, tenant, to, key="order-2")
    for _ in range(10):
        if retry.status_code not in (409, 503):
            break
        # The first request's hold on the key has not passed: the time it asks for does.
        assert int(retry.headers["Retry-After"]) <= 10
        clock.advance(int(retry.headers["Retry-After"]))
        retry = post(clocked_twilio_server, tenant, to, key="order-2")

    assert retry.status_code == 200, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    [stored] = chats(db, tenant)
    assert retry.json()["id"] == stored["id"]
    assert len(standin.sent_to(to)) == 1
    assert transcript(clocked_twilio_server, tenant, stored["id"])[0]["status"] == "sent"


def test_a_retry_while_the_first_request_is_sending_answers_409(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    standin.script(Hold(record="before"))
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, twilio_server, tenant, to, "order-3")
        assert standin.holding.wait(10)
        during = post(twilio_server, tenant, to, key="order-3")
        standin.release()
        assert first.result().status_code == 200

    assert during.status_code == 409
    assert during.json() == {"message": "A request with this Idempotency-Key is in progress"}
    assert len(standin.sent_to(to)) == 1


# ---- the sweeper ------------------------------------------------------------------------


@pytest.mark.parametrize("record", ["after", "never"])
def test_a_server_killed_mid_send_leaves_a_message_the_sweeper_sends_exactly_once(
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
    tmp_path: Path,
    record: Literal["after", "never"],
) -> None:
    to = consumer()
    port = free_port()
    env = twilio_env(standin, port)
    standin.script(Hold(record=record))
    with (
        open(tmp_path / "killed.log", "wb") as log,
        running(port, env, log) as server,
        ThreadPoolExecutor(1) as pool,
    ):
        sending = pool.submit(post, server.url, tenant, to)
        assert standin.holding.wait(10)
        server.kill()  # the function's processes die while Twilio holds the send
        with pytest.raises(requests.ConnectionError):
            sending.result()
    standin.release()  # "after": Twilio finishes the create; "never": it had dropped it

    port = free_port()
    with open(tmp_path / "restarted.log", "wb") as log, serving(port, env, log) as url:
        assert settled(sweep_later(standin), tenant) == ["sent"]
        [stored] = chats(db, tenant)
        [message] = transcript(url, tenant, stored["id"])

    [sms] = standin.sent_to(to)
    assert (message["status"], message["carrier_id"]) == ("sent", sms["sid"])


def test_two_sweepers_at_once_send_each_message_exactly_once(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client
) -> None:
    numbers = [consumer() for _ in range(4)]
    standin.script(*[Hold(record="never") for _ in numbers])
    with ThreadPoolExecutor(len(numbers)) as pool:
        answers = list(pool.map(lambda to: post(twilio_server, tenant, to), numbers))
    assert [a.status_code for a in answers] == [503] * len(numbers)
    standin.release()
    sweepers = [sweeper_later(standin) for _ in range(2)]  # each with clients of its own
    start = threading.Barrier(len(sweepers))

    def sweep_at_once(app: App) -> dict[str, Any]:
        start.wait()
        return swept(app)

    with ThreadPoolExecutor(len(sweepers)) as pool:
        reports = list(pool.map(sweep_at_once, sweepers))

    outcomes = sorted(o for report in reports for o in settled(report, tenant))
    assert outcomes.count("sent") == len(numbers)
    assert set(outcomes) <= {"sent", "taken"}
    for to in numbers:
        assert len(standin.sent_to(to)) == 1, to
    for chat in chats(db, tenant):
        [message] = transcript(twilio_server, tenant, chat["id"])
        assert message["status"] == "sent"


def test_the_sweeper_leaves_a_message_alone_until_it_is_old_enough(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    to = consumer()
    standin.script(Hold(record="never"))
    assert post(twilio_server, tenant, to).status_code == 503
    standin.release()

    assert settled(sweep(standin, SMS_SWEEP_AFTER_SECONDS="600"), tenant) == []
    assert standin.sent_to(to) == []


def test_a_sweep_with_the_log_carrier_leaves_a_message_handed_to_twilio_alone_and_says_so(
    twilio_server: str,
    standin: TwilioStandIn,
    tenant: Tenant,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    to = consumer()
    standin.script(Hold(record="after"))
    assert post(twilio_server, tenant, to).status_code == 503
    standin.release()  # Twilio finishes the create it held: the SMS went out after all
    [stored] = chats(db, tenant)
    asked = len(standin.requests)
    clock = MovableClock()
    clock.advance(SWEEP_AFTER_SECONDS + 1)
    log_env = {**twilio_env(standin, free_port()), "SMS_CARRIER": "log"}  # say, in a terminal
    capsys.readouterr()

    report = swept(bootstrap.build(Settings.from_env(log_env), clock=clock))

    assert settled(report, tenant) == ["other_carrier"]
    assert report["counts"]["other_carrier"] >= 1
    [message] = transcript(twilio_server, tenant, stored["id"])
    assert (message["status"], message["carrier_id"]) == ("sending", None)  # no LM... id
    assert len(standin.requests) == asked  # Twilio was not asked, nothing sent
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    [said] = [line for line in lines if line.get("tenant") == tenant.id]
    assert (said["outcome"], said["chat_id"]) == ("other_carrier", stored["id"])

    # The Twilio sweeper settles it with Twilio's id, and Twilio's callbacks then apply.
    assert settled(sweep_later(standin), tenant) == ["sent"]
    [sms] = standin.sent_to(to)
    assert standin.status_callback(sms["sid"], "delivered").status_code == 204
    [message] = transcript(twilio_server, tenant, stored["id"])
    assert (message["status"], message["carrier_id"]) == ("delivered", sms["sid"])
    assert statuses(message) == ["queued", "sending", "sent", "delivered"]


def test_a_message_no_carrier_took_in_24_hours_is_failed_not_sent(
    twilio_server: str,
    standin: TwilioStandIn,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
) -> None:
    # Sessions that stay active two idle days: a day later, the session is still open.
    patient = {"sms_enabled": True, "outbound_sms_enabled": True, "session_timeout_seconds": 172800}
    tenant = make_tenant(settings=patient, agents={1: dict(DEMO_AGENT)})
    to = consumer()
    standin.script(Hold(record="never"))
    assert post(twilio_server, tenant, to).status_code == 503
    standin.release()
    [chat] = chats(db, tenant)
    a_day_later = dt.timedelta(hours=24, minutes=1).total_seconds()

    assert settled(sweep_later(standin, a_day_later), tenant) == ["failed"]
    assert standin.sent_to(to) == []
    ended = chat_of(twilio_server, tenant, chat["id"])
    assert (ended["status"], ended["fail_reason"]) == ("failed", "unknown")
    assert post(twilio_server, tenant, to).status_code == 200  # the consumer is free


# ---- status callbacks -------------------------------------------------------------------


def sent_message(url: str, standin: TwilioStandIn, tenant: Tenant) -> tuple[str, int]:
    """Send one SMS; its Twilio sid and its chat id."""
    to = consumer()
    answer = post(url, tenant, to)
    assert answer.status_code == 200, answer.text
    return standin.sent_to(to)[0]["sid"], answer.json()["id"]


def test_a_signed_status_callback_answers_204_and_moves_the_message_on(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    sid, chat_id = sent_message(twilio_server, standin, tenant)
    answer = standin.status_callback(sid, "delivered")

    assert (answer.status_code, answer.content) == (204, b"")
    [message] = transcript(twilio_server, tenant, chat_id)
    assert statuses(message) == ["queued", "sending", "sent", "delivered"]


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl", "forged"])
def test_a_callback_without_a_valid_signature_is_403_and_changes_nothing(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, signature: str | None
) -> None:
    sid, chat_id = sent_message(twilio_server, standin, tenant)
    answer = standin.status_callback(sid, "failed", error_code=30003, signature=signature)

    assert (answer.status_code, answer.json()) == (403, {"message": "Forbidden"})
    assert transcript(twilio_server, tenant, chat_id)[0]["status"] == "sent"


def test_a_callback_signed_for_another_url_or_with_another_token_is_403(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    sid, chat_id = sent_message(twilio_server, standin, tenant)
    callback = twilio_server + "/apps/api/v1/sms/status"
    form = {"MessageSid": sid, "MessageStatus": "failed", "AccountSid": standin.account_sid}
    elsewhere = "https://elsewhere.example.com/apps/api/v1/sms/status"

    for signature in (sign(elsewhere, form, standin.auth_token), sign(callback, form, "other")):
        answer = requests.post(
            callback, data=form, headers={"X-Twilio-Signature": signature}, timeout=10
        )
        assert answer.status_code == 403
    assert transcript(twilio_server, tenant, chat_id)[0]["status"] == "sent"


def test_late_repeated_and_out_of_order_callbacks_never_move_a_message_back(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    sid, chat_id = sent_message(twilio_server, standin, tenant)
    for status in ("sending", "delivered", "sent", "queued", "delivered", "read", "undelivered"):
        assert standin.status_callback(sid, status).status_code == 204

    [message] = transcript(twilio_server, tenant, chat_id)
    assert message["status"] == "delivered"
    assert statuses(message) == ["queued", "sending", "sent", "delivered"]


def test_a_final_failure_is_stored_with_twilios_error_code_and_never_changes(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    sid, chat_id = sent_message(twilio_server, standin, tenant)
    standin.status_callback(sid, "undelivered", error_code=30003)
    standin.status_callback(sid, "delivered")
    standin.status_callback(sid, "failed", error_code=30008)

    [message] = transcript(twilio_server, tenant, chat_id)
    assert (message["status"], message["error_code"]) == ("undelivered", "30003")
    assert statuses(message)[-1] == "undelivered"


def test_a_callback_for_an_unknown_message_answers_204_and_stores_nothing(
    twilio_server: str, standin: TwilioStandIn, db: firestore.Client
) -> None:
    callback = twilio_server + "/apps/api/v1/sms/status"
    form = {"MessageSid": "SM" + "f" * 32, "MessageStatus": "delivered"}
    answer = requests.post(
        callback,
        data=form,
        headers={"X-Twilio-Signature": sign(callback, form, standin.auth_token)},
        timeout=10,
    )

    assert answer.status_code == 204
    assert not db.document("carrier_ids/SM" + "f" * 32).get().exists


def test_a_signed_callback_without_a_message_sid_is_400(
    twilio_server: str, standin: TwilioStandIn
) -> None:
    callback = twilio_server + "/apps/api/v1/sms/status"
    form = {"MessageStatus": "delivered"}
    answer = requests.post(
        callback,
        data=form,
        headers={"X-Twilio-Signature": sign(callback, form, standin.auth_token)},
        timeout=10,
    )

    assert (answer.status_code, answer.json()) == (400, {"message": "MessageSid is required"})


@pytest.mark.parametrize(
    "sid",
    ["__x__", ".", "..", "SM/x", "a/b/c", "SM" + "f" * 1600, "SM" + "F" * 31, "S1" + "f" * 32],
)
def test_a_signed_callback_whose_message_sid_is_not_twilios_is_400_and_changes_nothing(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant, db: firestore.Client, sid: str
) -> None:
    real, chat_id = sent_message(twilio_server, standin, tenant)
    callback = twilio_server + "/apps/api/v1/sms/status"
    form = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "30008"}
    answer = requests.post(
        callback,
        data=form,
        headers={"X-Twilio-Signature": sign(callback, form, standin.auth_token)},
        timeout=10,
    )

    assert (answer.status_code, answer.json()) == (400, {"message": "MessageSid is invalid"})
    [message] = transcript(twilio_server, tenant, chat_id)
    assert (message["status"], message["carrier_id"]) == ("sent", real)
    assert not db.document("carrier_ids/a/b/c").get().exists  # never a nested document
    # A callback with Twilio's own id for it still applies.
    assert standin.status_callback(real, "delivered").status_code == 204
    assert transcript(twilio_server, tenant, chat_id)[0]["status"] == "delivered"


def test_callbacks_race_and_the_message_ends_at_its_furthest_status(
    twilio_server: str, standin: TwilioStandIn, tenant: Tenant
) -> None:
    sid, chat_id = sent_message(twilio_server, standin, tenant)
    order = ["sent", "delivered", "sending", "queued", "sent", "delivered"] * 2
    start = threading.Barrier(len(order))

    def callback(status: str) -> int:
        start.wait()
        return standin.status_callback(sid, status).status_code

    with ThreadPoolExecutor(len(order)) as pool:
        answers = list(pool.map(callback, order))

    assert answers == [204] * len(order)
    [message] = transcript(twilio_server, tenant, chat_id)
    assert message["status"] == "delivered"
    assert statuses(message) == ["queued", "sending", "sent", "delivered"]


def test_the_sweeper_target_sweeps_on_post_and_refuses_other_methods(
    clocked_twilio_server: str,
    clock: MovableClock,
    standin: TwilioStandIn,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    to = consumer()
    # The send is made by an instance whose clock reads a little more than the sweeper's wait
    # ago: the sweeper's target, on its own clock, finds it old enough to take without waiting.
    clock.advance(-SWEEP_AFTER_SECONDS - 1)
    standin.script(Hold(record="never"))
    assert post(clocked_twilio_server, tenant, to).status_code == 503
    standin.release()
    port = free_port()
    env = twilio_env(standin, port)
    with (
        open(tmp_path / "sweeper.log", "wb") as log,
        running(port, env, log, target="sms_sweeper") as sweeper,
    ):
        refused = requests.get(sweeper.url, timeout=30)
        answer = requests.post(sweeper.url, timeout=60)

    assert (refused.status_code, refused.headers["Allow"]) == (405, "POST")
    assert answer.status_code == 200
    report = answer.json()
    assert settled(report, tenant) == ["sent"]
    assert report["counts"]["sent"] >= 1
    assert len(standin.sent_to(to)) == 1
    lines = [json.loads(line) for line in (tmp_path / "sweeper.log").read_text().splitlines()]
    assert any(line.get("outcome") == "sent" and line.get("tenant") == tenant.id for line in lines)


def test_a_carrier_the_function_cannot_use_stops_it_at_start_naming_why(
    standin: TwilioStandIn, tmp_path: Path
) -> None:
    port = free_port()
    env = {**twilio_env(standin, port), "TWILIO_ACCOUNT_SID": ""}
    with open(tmp_path / "server.log", "wb") as log, pytest.raises(RuntimeError, match="exited"):
        serving(port, env, log).__enter__()

    output = (tmp_path / "server.log").read_text()
    assert "the function cannot start: SMS_CARRIER=twilio needs TWILIO_ACCOUNT_SID" in output
    errors = [
        json.loads(line)
        for line in output.splitlines()
        if line.startswith("{") and '"ERROR"' in line
    ]
    assert any("TWILIO_ACCOUNT_SID" in line["message"] for line in errors)
    assert standin.requests == []
