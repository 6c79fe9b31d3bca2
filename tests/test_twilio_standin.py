"""The Twilio stand-in answers the official `twilio` client as Twilio's Messages API does."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance
from twilio_standin import (
    Accept,
    Drop,
    Hold,
    Refuse,
    ServerError,
    TwilioStandIn,
    num_segments,
    rfc2822,
    sign,
)

TO = "+14155550100"
OTHER = "+14155550111"
FROM = "+16285550199"
SERVICE = "MG" + "0" * 32


@pytest.fixture
def standin() -> Iterator[TwilioStandIn]:
    with TwilioStandIn() as running:
        yield running


def client_for(standin: TwilioStandIn, account_sid: str = "", auth_token: str = "") -> Client:
    client = Client(account_sid or standin.account_sid, auth_token or standin.auth_token)
    client.api.base_url = standin.url
    return client


@pytest.fixture
def client(standin: TwilioStandIn) -> Client:
    return client_for(standin)


def send(client: Client, to: str = TO, body: str = "hello", **kwargs: Any) -> MessageInstance:
    kwargs.setdefault("from_", FROM)
    return client.messages.create(to=to, body=body, **kwargs)


def raw(standin: TwilioStandIn, method: str, suffix: str, **kwargs: Any) -> requests.Response:
    """A request to the account's Messages collection, with the right credentials."""
    url = f"{standin.url}/2010-04-01/Accounts/{standin.account_sid}/Messages{suffix}"
    auth = (standin.account_sid, standin.auth_token)
    return requests.request(method, url, auth=auth, timeout=5, **kwargs)


class Clock:
    """A settable clock for the stand-in."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# -- create ------------------------------------------------------------------------------------


def test_create_answers_a_resource_the_library_parses(
    standin: TwilioStandIn, client: Client
) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    message = send(client, status_callback="https://example.test/status")
    assert message.sid is not None
    assert message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert message.account_sid == standin.account_sid
    assert (message.status, message.to, message.from_, message.body) == (
        "queued",
        TO,
        FROM,
        "hello",
    )
    assert isinstance(message.date_created, datetime)
    assert before <= message.date_created <= datetime.now(timezone.utc)
    assert message.date_updated == message.date_created
    assert message.date_sent is None
    assert message.direction == "outbound-api"
    assert message.api_version == "2010-04-01"
    assert message.num_segments == "1"
    assert message.num_media == "0"
    assert message.price is None
    assert message.price_unit == "USD"
    assert message.error_code is None
    assert message.messaging_service_sid is None
    assert message.uri == f"/2010-04-01/Accounts/{standin.account_sid}/Messages/{message.sid}.json"
    assert message.subresource_uris == {
        "media": message.uri.removesuffix(".json") + "/Media.json",
        "feedback": message.uri.removesuffix(".json") + "/Feedback.json",
    }
    [stored] = standin.messages
    assert stored["sid"] == message.sid
    assert list(stored) == sorted(stored)  # Twilio's keys, in Twilio's (alphabetical) order
    assert "status_callback" not in stored
    assert standin.callback_url(message.sid) == "https://example.test/status"
    [request] = standin.requests
    assert (request.method, request.path) == (
        "POST",
        f"/2010-04-01/Accounts/{standin.account_sid}/Messages.json",
    )
    assert request.form["To"] == [TO]
    assert request.form["StatusCallback"] == ["https://example.test/status"]


def test_sent_on_create_answers_sent_with_date_sent() -> None:
    with TwilioStandIn(sent_on_create=True) as standin:
        message = send(client_for(standin))
    assert message.status == "sent"
    assert message.date_sent == message.date_created


def test_a_messaging_service_alone_is_accepted(client: Client) -> None:
    message = client.messages.create(to=TO, body="hi", messaging_service_sid=SERVICE)
    assert message.status == "accepted"
    assert message.from_ is None
    assert message.messaging_service_sid == SERVICE


def test_segments_are_counted_as_carriers_do() -> None:
    assert num_segments("a" * 160) == 1
    assert num_segments("a" * 161) == 2
    assert num_segments("{" * 80) == 1
    assert num_segments("{" * 81) == 2
    assert num_segments("é" * 160) == 1  # in the GSM-7 table
    assert num_segments("ł" * 70) == 1
    assert num_segments("ł" * 71) == 2


def test_dates_are_rfc_2822_in_gmt(standin: TwilioStandIn) -> None:
    instant = datetime(2026, 12, 2, 19, 22, 17, 530000, tzinfo=timezone.utc)
    assert rfc2822(instant) == "Wed, 02 Dec 2026 19:22:17 +0000"
    assert rfc2822(instant.astimezone(timezone(timedelta(hours=-5)))) == rfc2822(instant)
    created = raw(standin, "POST", ".json", data={"To": TO, "From": FROM, "Body": "x"}).json()
    assert re.fullmatch(
        r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000",
        created["date_created"],
    )
    assert created["date_sent"] is None


def test_simultaneous_creates_are_all_answered(standin: TwilioStandIn, client: Client) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        sids = list(pool.map(lambda n: send(client, body=str(n)).sid, range(20)))
    assert len(set(sids)) == 20
    assert sorted(m["sid"] for m in standin.messages) == sorted(sids)


def test_constructor_arguments_are_kept() -> None:
    standin = TwilioStandIn(account_sid="AC" + "1" * 32, auth_token="t" * 32)
    assert (standin.account_sid, standin.auth_token) == ("AC" + "1" * 32, "t" * 32)
    with pytest.raises(RuntimeError):
        _ = standin.url
    generated = TwilioStandIn()
    assert generated.account_sid.startswith("AC")
    assert len(generated.account_sid) == 34
    assert len(generated.auth_token) == 32


# -- errors ------------------------------------------------------------------------------------


def test_wrong_credentials_are_20003(standin: TwilioStandIn) -> None:
    client = client_for(standin, auth_token="0" * 32)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.code, raised.value.status) == (20003, 401)
    answer = requests.get(
        f"{standin.url}/2010-04-01/Accounts/{standin.account_sid}/Messages.json", timeout=5
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'
    assert answer.json() == {
        "code": 20003,
        "detail": "Your AccountSid or AuthToken was incorrect.",
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }
    assert standin.messages == []


def test_another_accounts_path_is_20404(standin: TwilioStandIn, client: Client) -> None:
    other = client.api.v2010.accounts("AC" + "f" * 32)
    with pytest.raises(TwilioRestException) as raised:
        other.messages.create(to=TO, from_=FROM, body="hi")
    assert (raised.value.code, raised.value.status) == (20404, 404)
    assert standin.messages == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": FROM, "Body": "hi"}, 21604),
        ({"To": "", "From": FROM, "Body": "hi"}, 21604),
        ({}, 21604),
        ({"To": TO, "From": FROM}, 21602),
        ({"To": "12345"}, 21602),
        ({"To": TO, "Body": "hi"}, 21603),
        ({"To": "12345", "Body": "hi"}, 21603),
        ({"To": "12345", "From": FROM, "Body": "hi"}, 21211),
        ({"To": "+0123456789", "From": FROM, "Body": "hi"}, 21211),
        ({"To": TO, "From": FROM, "Body": "x" * 1601}, 21617),
    ],
)
def test_validation_errors_in_twilios_order(
    standin: TwilioStandIn, form: dict[str, str], code: int
) -> None:
    answer = raw(standin, "POST", ".json", data=form)
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == code
    assert body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert standin.messages == []


def test_media_alone_needs_no_body(standin: TwilioStandIn) -> None:
    answer = raw(
        standin, "POST", ".json", data={"To": TO, "From": FROM, "MediaUrl": "https://x.test/a"}
    )
    assert answer.status_code == 201
    assert answer.json()["num_media"] == "1"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"body": ""}, 21602),
        ({"from_": ""}, 21603),
        ({"to": "4155550100"}, 21211),
        ({"to": "+1 415-555-0100"}, 21211),
    ],
)
def test_the_library_raises_validation_errors(
    client: Client, kwargs: dict[str, str], code: int
) -> None:
    with pytest.raises(TwilioRestException) as raised:
        send(client, **kwargs)
    assert (raised.value.code, raised.value.status) == (code, 400)


def test_refuse_answers_the_error_and_records_nothing(
    standin: TwilioStandIn, client: Client
) -> None:
    standin.script(Refuse(21610))
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.code, raised.value.status) == (21610, 400)
    assert "Attempt to send to unsubscribed recipient" in raised.value.msg
    assert standin.messages == []
    assert send(client).status == "queued"  # the script is used up: the next one is accepted


def test_refuse_with_status_and_message(standin: TwilioStandIn) -> None:
    standin.script(Refuse(20429, status=429, message="Too many"))
    answer = raw(standin, "POST", ".json", data={"To": TO, "From": FROM, "Body": "x"})
    assert answer.status_code == 429
    assert answer.json() == {
        "code": 20429,
        "message": "Too many",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }


def test_scripts_are_first_in_first_out(standin: TwilioStandIn, client: Client) -> None:
    standin.script(Accept(), Refuse(21610))
    standin.script(Refuse(21211))
    assert send(client).status == "queued"
    codes = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            send(client)
        codes.append(raised.value.code)
    assert codes == [21610, 21211]
    assert len(standin.messages) == 1


def test_server_error_that_recorded_the_message(standin: TwilioStandIn, client: Client) -> None:
    standin.script(ServerError(record=True))
    with pytest.raises(TwilioRestException) as raised:
        send(client, body="lost answer")
    assert (raised.value.code, raised.value.status) == (20500, 500)
    assert "An internal server error has occurred" in raised.value.msg
    [listed] = client.messages.list(to=TO)
    assert listed.body == "lost answer"


def test_server_error_that_recorded_nothing(standin: TwilioStandIn, client: Client) -> None:
    standin.script(ServerError(record=False, status=503))
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.code, raised.value.status) == (20500, 503)
    assert client.messages.list(to=TO) == []


def test_anything_else_is_20404(standin: TwilioStandIn) -> None:
    auth = (standin.account_sid, standin.auth_token)
    base = f"{standin.url}/2010-04-01/Accounts/{standin.account_sid}"
    for method, url in [
        ("GET", f"{base}/Calls.json"),
        ("GET", f"{standin.url}/"),
        ("DELETE", f"{base}/Messages/SM{'0' * 32}.json"),
        ("PUT", f"{base}/Messages.json"),
    ]:
        answer = requests.request(method, url, auth=auth, timeout=5)
        assert answer.status_code == 404, url
        body = answer.json()
        assert body["code"] == 20404
        assert body["message"].startswith("The requested resource /")
        assert body["message"].endswith(" was not found")


# -- scripted connections ----------------------------------------------------------------------


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `call` in a thread; its result or exception lands in the dict."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_hold_before_lists_the_message_while_held(standin: TwilioStandIn, client: Client) -> None:
    standin.script(Hold())
    thread, outcome = in_thread(lambda: send(client, body="in flight"))
    assert standin.holding.wait(5)
    assert [m["body"] for m in standin.messages] == ["in flight"]
    assert [m.body for m in client.messages.list(to=TO)] == ["in flight"]
    thread.join(0.1)
    assert thread.is_alive()
    standin.release()
    assert not standin.holding.is_set()
    thread.join(5)
    assert not thread.is_alive()
    assert outcome["result"].sid == standin.messages[0]["sid"]


def test_hold_after_stores_when_released(standin: TwilioStandIn, client: Client) -> None:
    standin.script(Hold(record="after"), Hold(record="never"))
    thread, outcome = in_thread(lambda: send(client))
    assert standin.holding.wait(5)
    assert standin.messages == []
    standin.release()
    thread.join(5)
    assert [m["sid"] for m in standin.messages] == [outcome["result"].sid]
    thread, outcome = in_thread(lambda: send(client))
    assert standin.holding.wait(5)
    standin.release()
    thread.join(5)
    assert outcome["result"].status == "queued"
    assert len(standin.messages) == 1


def test_hold_for_seconds_ends_by_itself(standin: TwilioStandIn, client: Client) -> None:
    standin.script(Hold(seconds=0.2))
    started = datetime.now(timezone.utc)
    message = send(client)
    assert datetime.now(timezone.utc) - started >= timedelta(seconds=0.2)
    assert message.status == "queued"
    assert standin.holding.is_set()


def test_stopping_ends_a_hold_without_an_answer(standin: TwilioStandIn, client: Client) -> None:
    standin.script(Hold())
    thread, outcome = in_thread(lambda: send(client))
    assert standin.holding.wait(5)
    standin.stop()
    thread.join(5)
    assert isinstance(outcome["error"], requests.ConnectionError)


@pytest.mark.parametrize("record", [False, True])
def test_drop_closes_without_an_answer(
    standin: TwilioStandIn, client: Client, record: bool
) -> None:
    standin.script(Drop(record=record))
    with pytest.raises(requests.ConnectionError):
        send(client)
    assert len(standin.messages) == (1 if record else 0)


# -- list, page, fetch -------------------------------------------------------------------------


def test_list_filters_to_and_from(standin: TwilioStandIn, client: Client) -> None:
    first = send(client, body="one")
    send(client, to=OTHER, body="two")
    send(client, from_="+16285550100", body="three")
    assert [m.body for m in client.messages.list(to=TO)] == ["three", "one"]
    assert [m.body for m in client.messages.list(to=TO, from_=FROM)] == ["one"]
    assert [m.body for m in client.messages.list(from_=FROM)] == ["two", "one"]
    assert [m.body for m in client.messages.list()] == ["three", "two", "one"]
    assert client.messages.list(to="+19999999999") == []
    assert [m["body"] for m in standin.sent_to(TO)] == ["one", "three"]
    [listed] = client.messages.list(to=OTHER, from_=FROM)
    assert listed.date_created >= first.date_created


def test_list_filters_date_sent(standin: TwilioStandIn, client: Client) -> None:
    clock = Clock(datetime(2026, 3, 1, 8, 0, 0, tzinfo=timezone.utc))
    standin.clock = clock
    sent_at = {
        "a": datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone.utc),
        "b": datetime(2026, 3, 2, 0, 0, 0, tzinfo=timezone.utc),
        "c": datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc),
        "d": datetime(2026, 3, 3, 0, 0, 0, tzinfo=timezone.utc),
    }
    sids = {name: send(client, body=name).sid for name in [*sent_at, "never"]}
    for name, instant in sent_at.items():
        clock.now = instant
        standin.set_status(sids[name], "sent")

    def bodies(**filters: Any) -> list[str]:
        return sorted(m.body for m in client.messages.list(to=TO, **filters))

    def raw_bodies(query: str) -> list[str]:
        answer = raw(standin, "GET", ".json?" + query)
        assert answer.status_code == 200, answer.text
        return sorted(m["body"] for m in answer.json()["messages"])

    assert bodies() == ["a", "b", "c", "d", "never"]
    assert bodies(date_sent=date(2026, 3, 2)) == ["b", "c"]
    assert bodies(date_sent=datetime(2026, 3, 2, 18, 30)) == ["b", "c"]
    assert bodies(date_sent_before=datetime(2026, 3, 2)) == ["a", "b"]
    assert bodies(date_sent_after=datetime(2026, 3, 2, 12)) == ["c", "d"]
    assert bodies(
        date_sent_after=datetime(2026, 3, 2), date_sent_before=datetime(2026, 3, 2, 12)
    ) == [
        "b",
        "c",
    ]
    listed = client.messages.list(
        to=TO, from_=FROM, date_sent_after=datetime(2026, 3, 2), page_size=50, limit=100
    )
    assert [m.body for m in listed] == ["d", "c", "b"]  # newest created first: all at 08:00
    assert raw_bodies("DateSent=2026-03-02") == ["b", "c"]
    assert raw_bodies("DateSent<=2026-03-02") == ["a", "b", "c"]
    assert raw_bodies("DateSent>=2026-03-02") == ["b", "c", "d"]
    assert raw_bodies("DateSent%3E=2026-03-02T00:00:01Z") == ["c", "d"]
    assert raw_bodies("DateSent>=2026-03-04") == []
    for query in ["DateSent=yesterday", "DateSent<=2026-13-01", "DateSent>=2026-03-02T25:00:00Z"]:
        answer = raw(standin, "GET", ".json?" + query)
        assert answer.status_code == 400, query
        assert answer.json()["code"] == 20001


def test_paging_through_120_messages(standin: TwilioStandIn, client: Client) -> None:
    created = [send(client, body=str(n)).sid for n in range(120)]
    send(client, to=OTHER)
    listed = client.messages.list(to=TO, page_size=50)
    assert [m.sid for m in listed] == created[::-1]
    gets = [r for r in standin.requests if r.method == "GET"]
    assert len(gets) == 3
    assert gets[0].query == {"To": [TO], "PageSize": ["50"]}
    assert gets[1].query["Page"] == ["1"]
    assert gets[1].query["PageToken"] == ["PA" + created[70]]
    assert gets[2].query["PageToken"] == ["PA" + created[20]]
    assert [m.sid for m in client.messages.list(to=TO, page_size=50, limit=100)] == created[:19:-1]


def test_page_json_is_twilios(standin: TwilioStandIn) -> None:
    created = [
        raw(standin, "POST", ".json", data={"To": TO, "From": FROM, "Body": str(n)}).json()["sid"]
        for n in range(5)
    ]
    base = f"/2010-04-01/Accounts/{standin.account_sid}/Messages.json"
    first = raw(standin, "GET", ".json", params={"To": TO, "PageSize": 2}).json()
    assert list(first) == [
        "end",
        "first_page_uri",
        "messages",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    ]
    assert [m["sid"] for m in first["messages"]] == [created[4], created[3]]
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 2, 0, 1)
    assert first["uri"] == f"{base}?To=%2B14155550100&PageSize=2&Page=0"
    assert first["first_page_uri"] == first["uri"]
    assert first["previous_page_uri"] is None
    assert first["next_page_uri"] == (
        f"{base}?To=%2B14155550100&PageSize=2&Page=1&PageToken=PA{created[3]}"
    )
    second = requests.get(
        standin.url + first["next_page_uri"],
        auth=(standin.account_sid, standin.auth_token),
        timeout=5,
    ).json()
    assert [m["sid"] for m in second["messages"]] == [created[2], created[1]]
    assert (second["page"], second["start"], second["end"]) == (1, 2, 3)
    assert second["previous_page_uri"] == (
        f"{base}?To=%2B14155550100&PageSize=2&Page=0&PageToken=PB{created[2]}"
    )
    back = requests.get(
        standin.url + second["previous_page_uri"],
        auth=(standin.account_sid, standin.auth_token),
        timeout=5,
    ).json()
    assert [m["sid"] for m in back["messages"]] == [created[4], created[3]]
    last = raw(standin, "GET", ".json", params={"To": TO, "PageSize": 2, "Page": 2}).json()
    assert [m["sid"] for m in last["messages"]] == [created[0]]
    assert last["next_page_uri"] is None
    empty = raw(standin, "GET", ".json", params={"To": OTHER}).json()
    assert (empty["messages"], empty["next_page_uri"], empty["page_size"]) == ([], None, 50)
    capped = raw(standin, "GET", ".json", params={"PageSize": 5000}).json()
    assert capped["page_size"] == 1000
    for params in [{"PageSize": "x"}, {"PageSize": 0}, {"Page": -1}, {"PageToken": "PAnope"}]:
        answer = raw(standin, "GET", ".json", params=params)
        assert (answer.status_code, answer.json()["code"]) == (400, 20001), params


def test_fetch_by_sid(standin: TwilioStandIn, client: Client) -> None:
    sid = send(client, body="fetch me").sid
    fetched = client.messages(sid).fetch()
    assert (fetched.sid, fetched.body, fetched.status) == (sid, "fetch me", "queued")
    with pytest.raises(TwilioRestException) as raised:
        client.messages("SM" + "0" * 32).fetch()
    assert (raised.value.code, raised.value.status) == (20404, 404)


def test_set_status_moves_the_message_on(standin: TwilioStandIn, client: Client) -> None:
    sid = send(client).sid
    standin.set_status(sid, "undelivered", error_code=30003)
    fetched = client.messages(sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)
    assert fetched.date_sent is not None
    date_sent = fetched.date_sent
    standin.set_status(sid, "delivered")
    fetched = client.messages(sid).fetch()
    assert (fetched.status, fetched.error_code, fetched.date_sent) == ("delivered", None, date_sent)
    sid = send(client).sid
    standin.set_status(sid, "failed", error_code=30008)
    assert client.messages(sid).fetch().date_sent is None
    with pytest.raises(KeyError):
        standin.set_status("SMnope", "sent")


def test_reset_forgets_everything(standin: TwilioStandIn, client: Client) -> None:
    send(client)
    standin.script(Refuse(21610))
    standin.reset()
    assert standin.messages == []
    assert standin.requests == []
    assert send(client).status == "queued"


# -- status callbacks --------------------------------------------------------------------------


class Receiver:
    """A tiny local HTTP server that keeps what is posted to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {
                    key: values[0]
                    for key, values in parse_qs(self.rfile.read(length).decode()).items()
                }
                receiver.received.append((self.path, form, dict(self.headers.items())))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def test_status_callback_is_signed_as_twilio_signs(
    standin: TwilioStandIn, client: Client, receiver: Receiver
) -> None:
    callback = receiver.url + "/twilio/status?tenant=demo"
    sid = send(client, status_callback=callback).sid
    answer = standin.status_callback(sid, "delivered")
    assert answer.status_code == 204
    [(path, form, headers)] = receiver.received
    assert path == "/twilio/status?tenant=demo"
    assert form == {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": standin.account_sid,
        "From": FROM,
        "To": TO,
        "MessageStatus": "delivered",
        "SmsStatus": "delivered",
        "ApiVersion": "2010-04-01",
    }
    validator = RequestValidator(standin.auth_token)
    assert validator.validate(callback, form, headers["X-Twilio-Signature"])
    assert headers["X-Twilio-Signature"] == sign(callback, form, standin.auth_token)
    assert not RequestValidator("0" * 32).validate(callback, form, headers["X-Twilio-Signature"])


def test_status_callback_options(
    standin: TwilioStandIn, client: Client, receiver: Receiver
) -> None:
    sid = send(client).sid
    with pytest.raises(ValueError, match="no StatusCallback"):
        standin.status_callback(sid, "sent")
    elsewhere = receiver.url + "/elsewhere"
    standin.status_callback(sid, "undelivered", error_code=30003, url=elsewhere)
    standin.status_callback(sid, "sent", url=elsewhere, signature=None)
    standin.status_callback(sid, "sent", url=elsewhere, signature="forged")
    (_, failed, signed), (_, _, unsigned), (_, _, forged) = receiver.received
    assert failed["ErrorCode"] == "30003"
    assert failed["MessageStatus"] == "undelivered"
    assert RequestValidator(standin.auth_token).validate(
        elsewhere, failed, signed["X-Twilio-Signature"]
    )
    assert "X-Twilio-Signature" not in unsigned
    assert forged["X-Twilio-Signature"] == "forged"
