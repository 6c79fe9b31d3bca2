"""SPEC 10.2: GET /apps/api/v1/chats, the tenant's chats, newest first, filtered and paged.

The function runs in-process on a clock the test moves (conftest's `clocked_twilio_server`:
SMS_CARRIER=twilio against the stand-in for Twilio), so that sessions can be opened at chosen
moments, by an outbound request or by a consumer's signed reply (`queued`), refused by the
carrier (`failed`) and left idle past their timeout, without waiting. Every request goes
over HTTP; what was stored is read from Firestore only to show what a GET did not write.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from google.cloud import firestore
from twilio_standin import Refuse, TwilioStandIn, sign

from conftest import (
    CHAT_KEYS,
    SEED_BODY,
    SMS_PATH,
    MovableClock,
    Tenant,
    basic,
    count_documents,
)
from sms import errors
from sms.devtools.seed import DEMO_AGENT

CHATS = "/apps/api/v1/chats"
TIMEOUT = 30
SMS_ON = {"sms_enabled": True, "outbound_sms_enabled": True}
# This module's numbers: +1 628-555-55xx..59xx for the tenants (indexed in numbers/{E.164},
# which replies reach: no other module uses them), +1 415-555-xxxx for their consumers.
_owned = itertools.count(5500)
_consumers = itertools.count(2000)
STATUS_INVALID = {"message": errors.STATUS_INVALID}
NUMBER_INVALID = {"message": errors.END_USER_NUMBER_INVALID}
LIMIT_INVALID = {"message": errors.LIMIT_INVALID}
TOKEN_INVALID = {"message": errors.PAGE_TOKEN_INVALID}


def owned_number() -> str:
    n = next(_owned)
    assert n < 6000, "this module's numbers ran out"
    return f"+1628555{n}"


def consumer() -> str:
    return f"+1415555{next(_consumers) % 10_000:04d}"


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def when(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)


def token_of(text: str) -> str:
    """A page token as this service writes them (unpadded URL-safe base64) of any text."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# ---- fixtures and calls -----------------------------------------------------------------


@pytest.fixture
def twilio(standin: TwilioStandIn) -> Iterator[TwilioStandIn]:
    """The stand-in for Twilio, with nothing stored or scripted before or after."""
    standin.reset()
    yield standin
    standin.reset()


def make_owner(
    make_tenant: Callable[..., Tenant],
    agents: dict[int, dict[str, Any]] | None = None,
    numbers: int = 1,
    **settings: Any,
) -> Tenant:
    """A tenant with ``agents`` (else agents 1 and 2) and ``numbers`` numbers of its own
    that replies reach; ``settings`` over SMS switched on."""
    return make_tenant(
        settings={**SMS_ON, **settings},
        agents=agents or {1: dict(DEMO_AGENT), 2: {**DEMO_AGENT, "email": "jane.roe@foo.com"}},
        outbound_numbers={owned_number(): {"sms_enabled": True} for _ in range(numbers)},
        index_numbers=True,
    )


@pytest.fixture
def owner(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_owner(make_tenant)


def number_of(tenant: Tenant, n: int = 0) -> str:
    return list(tenant.outbound_numbers)[n]


class Api:
    """The served function, called as one tenant."""

    def __init__(self, base: str, tenant: Tenant, standin: TwilioStandIn) -> None:
        self.base, self.tenant, self.standin = base, tenant, standin

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.tenant.headers)
        return requests.request(method, self.base + path, json=body, timeout=TIMEOUT, **kwargs)

    def send(self, to: str, **changes: Any) -> requests.Response:
        body = {**SEED_BODY, "end_user_number": to, "outbound_number": number_of(self.tenant)}
        return self.call("POST", SMS_PATH, {**body, **changes})

    def open(self, to: str, **changes: Any) -> dict[str, Any]:
        """A session opened by an outbound request; its chat document."""
        answer = self.send(to, **changes)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def reply(self, sender: str, text: str = "Hello?", to: str | None = None) -> None:
        """The consumer texts the tenant's (first) number, as Twilio posts it (signed)."""
        sid = "SM" + uuid.uuid4().hex
        form = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": self.standin.account_sid,
            "From": sender, "To": to or number_of(self.tenant), "Body": text, "NumMedia": "0",
        }  # fmt: skip
        url = self.base + SMS_PATH + "/inbound"
        signature = sign(url, form, self.standin.auth_token)
        answer = requests.post(
            url, data=form, headers={"X-Twilio-Signature": signature}, timeout=TIMEOUT
        )
        assert answer.status_code == 200, answer.text

    def queued(self, sender: str) -> dict[str, Any]:
        """A session the consumer's reply opened; its chat document."""
        self.reply(sender)
        [chat] = self.page(end_user_number=sender, status="queued")["chats"]
        return dict(chat)

    def get(self, chat_id: int) -> dict[str, Any]:
        answer = self.call("GET", f"{CHATS}/{chat_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def patch(self, chat_id: int, body: Any) -> dict[str, Any]:
        answer = self.call("PATCH", f"{CHATS}/{chat_id}", body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def listing(self, **query: Any) -> requests.Response:
        return self.call("GET", CHATS, params=query)

    def page(self, **query: Any) -> dict[str, Any]:
        """One page, checked as every 200 of the route must be."""
        answer = self.listing(**query)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == "application/json"
        page = answer.json()
        assert list(page) == ["chats", "next_page_token"]
        for chat in page["chats"]:
            assert list(chat) == CHAT_KEYS
        token = page["next_page_token"]
        assert token is None or (isinstance(token, str) and token)
        return dict(page)

    def ids(self, **query: Any) -> list[int]:
        return [chat["id"] for chat in self.page(**query)["chats"]]

    def walk(self, **query: Any) -> list[dict[str, Any]]:
        """Every page of a listing, from the first, following its tokens: their chats."""
        chats: list[dict[str, Any]] = []
        token = None
        for _ in range(100):
            page = self.page(**query, **({"page_token": token} if token else {}))
            chats += page["chats"]
            token = page["next_page_token"]
            if token is None:
                return chats
            assert len(page["chats"]) == int(query.get("limit", 50)), page
        raise AssertionError("the pages never ended")

    def refused(self, **query: Any) -> dict[str, Any]:
        answer = self.listing(**query)
        assert answer.status_code == 400, answer.text
        assert answer.headers["Content-Type"] == "application/json"
        return dict(answer.json())


@pytest.fixture
def api(clocked_twilio_server: str, owner: Tenant, twilio: TwilioStandIn) -> Api:
    return Api(clocked_twilio_server, owner, twilio)


def stored_chat(db: firestore.Client, tenant: Tenant, chat_id: int) -> dict[str, Any]:
    return dict(db.document(f"tenants/{tenant.id}/chats/{chat_id}").get().to_dict() or {})


# ---- order ------------------------------------------------------------------------------


def test_chats_are_listed_newest_first_by_created_at_then_id(api: Api, clock: MovableClock) -> None:
    first = api.open(consumer())
    same_moment = api.open(consumer())  # created at the same instant: the higher id first
    clock.advance(5)
    newest = api.open(consumer())
    clock.advance(-60)  # the clock set back: the highest id, created the earliest
    earliest = api.open(consumer())
    assert first["created_at"] == same_moment["created_at"]
    assert first["id"] < same_moment["id"] < newest["id"] < earliest["id"]

    page = api.page()
    assert [chat["id"] for chat in page["chats"]] == [
        newest["id"],
        same_moment["id"],
        first["id"],
        earliest["id"],
    ]
    assert page["next_page_token"] is None
    for chat in page["chats"]:
        assert chat == api.get(chat["id"])  # each as GET /chats/{id} shows it


def test_a_tenant_without_chats_lists_none(api: Api) -> None:
    assert api.page() == {"chats": [], "next_page_token": None}
    assert api.page(status="active", limit="1") == {"chats": [], "next_page_token": None}


def test_a_trailing_slash_is_accepted(api: Api) -> None:
    chat = api.open(consumer())
    answer = api.call("GET", CHATS + "/")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"chats": [chat], "next_page_token": None}


# ---- filters ----------------------------------------------------------------------------


def test_each_status_filter_lists_exactly_the_chats_at_that_status(
    api: Api, twilio: TwilioStandIn, db: firestore.Client
) -> None:
    selecting = api.open(consumer())
    assigned = api.open(consumer(), agentId=1)
    queued = api.queued(consumer())
    finished = api.patch(api.open(consumer())["id"], {"status": "finished"})
    twilio.script(Refuse(21211))
    refused_to = consumer()
    assert api.send(refused_to).status_code == 502
    [failed] = api.page(end_user_number=refused_to)["chats"]
    picked = api.patch(api.queued(consumer())["id"], {"agentId": 2})  # queued, then assigned
    ended_queue = api.patch(api.queued(consumer())["id"], {"status": "finished"})

    assert (failed["status"], failed["fail_reason"]) == ("failed", "unknown")
    expected = {
        "selecting": [selecting],
        "assigned": [picked, assigned],
        "queued": [queued],
        "finished": [ended_queue, finished],
        "failed": [failed],
        "active": [picked, queued, assigned, selecting],
    }
    for status, chats in expected.items():
        listed = api.page(status=status)
        assert listed == {"chats": [api.get(c["id"]) for c in chats], "next_page_token": None}
        if status != "active":
            assert {chat["status"] for chat in listed["chats"]} == {status}
        else:
            assert {chat["ends_at"] for chat in listed["chats"]} == {None}
    # All opened at one instant: newest first is by id.
    every = (selecting, assigned, queued, finished, failed, picked, ended_queue)
    assert api.ids() == sorted((chat["id"] for chat in every), reverse=True)


@pytest.mark.parametrize(
    "spelling",
    ["+1 415-555-0142", "(415) 555-0142", "4155550142", "+14155550142", "1-415-555-0142",
     " 415.555.0142 "],
)  # fmt: skip
def test_end_user_number_in_any_format_finds_that_consumers_chats(
    api: Api, clock: MovableClock, spelling: str
) -> None:
    old = api.open("+14155550142")
    api.patch(old["id"], {"status": "finished"})
    other = api.open(consumer())
    clock.advance(1)
    new = api.open("4155550142")
    assert new["end_user"] == old["end_user"]

    assert api.ids(end_user_number=spelling) == [new["id"], old["id"]]
    assert api.ids(end_user_number=spelling, status="active") == [new["id"]]
    assert api.ids(end_user_number=spelling, status="finished") == [old["id"]]
    assert api.ids(end_user_number=spelling, status="queued") == []
    assert api.ids() == [new["id"], other["id"], old["id"]]


@pytest.mark.parametrize(
    "foreign",
    ["+82 2-312-3456", "+1 604 253 1234", "+44 20 7946 0958", "+800 1234 5678"],
    ids=["KR", "CA", "GB", "non_geographic"],
)
def test_a_valid_foreign_number_simply_finds_nothing(api: Api, foreign: str) -> None:
    api.open(consumer())
    assert api.page(end_user_number=foreign) == {"chats": [], "next_page_token": None}


@pytest.mark.parametrize(
    "number",
    ["12345", "not a number", "", "+1 415 555 010", "+882 3456 7890", "+", "+999 1234567"],
    ids=["short", "words", "empty", "too_short_us", "invalid_non_geographic", "plus", "no_cc"],
)
def test_an_end_user_number_that_does_not_parse_or_is_not_valid_is_refused(
    api: Api, number: str
) -> None:
    api.open(consumer())
    assert api.refused(end_user_number=number) == NUMBER_INVALID


# ---- limit and pages --------------------------------------------------------------------


def test_limit_defaults_to_50_and_may_be_anything_from_1_to_200(api: Api) -> None:
    opened = [api.open(consumer())["id"] for _ in range(51)]
    newest_first = sorted(opened, reverse=True)

    first = api.page()
    assert [chat["id"] for chat in first["chats"]] == newest_first[:50]
    assert first["next_page_token"] is not None
    rest = api.page(page_token=first["next_page_token"])
    assert rest == {"chats": [api.get(newest_first[50])], "next_page_token": None}
    assert api.ids(limit="200") == newest_first
    assert api.page(limit="200")["next_page_token"] is None
    assert api.ids(limit="51") == newest_first
    assert api.page(limit="51")["next_page_token"] is None  # exactly full: no next page
    one = api.page(limit="1")
    assert [chat["id"] for chat in one["chats"]] == newest_first[:1]
    assert one["next_page_token"] is not None


@pytest.mark.parametrize("limit", ["0", "201", "-1", "ten", "1.5", "", "1e2", "0x10", "1000"])
def test_a_limit_outside_1_to_200_is_refused(api: Api, limit: str) -> None:
    api.open(consumer())
    assert api.refused(limit=limit) == LIMIT_INVALID


def test_pages_cover_every_chat_once_in_order_whatever_the_limit(
    api: Api, clock: MovableClock
) -> None:
    for _ in range(4):  # pairs created at the same instant: ties broken by id across pages
        api.open(consumer())
        api.open(consumer(), agentId=1)
        clock.advance(0.001)
    api.queued(consumer())
    everything = api.page(limit="200")["chats"]
    assert len(everything) == 9
    for limit in (1, 2, 3, 4, 8, 9, 10):
        assert api.walk(limit=str(limit)) == everything, limit
    assigned = [chat for chat in everything if chat["status"] == "assigned"]
    for limit in (1, 3, 4):
        assert api.walk(limit=str(limit), status="assigned") == assigned, limit


def test_a_session_idle_past_its_timeout_is_listed_finished_though_no_sweep_recorded_it(
    clocked_twilio_server: str,
    make_tenant: Callable[..., Tenant],
    twilio: TwilioStandIn,
    clock: MovableClock,
    db: firestore.Client,
) -> None:
    quick = make_owner(make_tenant, session_timeout_seconds=60)
    api = Api(clocked_twilio_server, quick, twilio)
    expired = [api.open(consumer()), api.queued(consumer()), api.open(consumer(), agentId=1)]
    clock.advance(30)
    alive = api.open(consumer())
    clock.advance(30.001)  # the first three idle 60.001 s, past the timeout; `alive` 30 s
    newest = api.queued(consumer())

    stored_before = (
        count_documents(db, quick.id),
        [stored_chat(db, quick, chat["id"]) for chat in expired],
    )
    finished = api.page(status="finished")["chats"]
    assert [chat["id"] for chat in finished] == [chat["id"] for chat in reversed(expired)]
    for listed, opened in zip(finished, reversed(expired), strict=True):
        ends_at = stamp(when(opened["created_at"]) + dt.timedelta(seconds=60))
        assert (listed["status"], listed["ends_at"], listed["chat_duration"]) == (
            "finished",
            ends_at,
            60,
        )
        assert [p["ended_at"] for p in listed["participants"]] == [ends_at] * len(
            opened["participants"]
        )
        assert listed == api.get(opened["id"])
    assert api.ids(status="active") == [newest["id"], alive["id"]]
    assert api.ids(status="selecting") == [alive["id"]]
    assert api.ids(status="queued") == [newest["id"]]
    assert api.ids(status="assigned") == []
    assert [c["status"] for c in api.page()["chats"]] == ["queued", "selecting", *["finished"] * 3]
    # Paged, the expired sessions in between are skipped, not counted against the limit.
    assert [c["id"] for c in api.walk(status="active", limit="1")] == [newest["id"], alive["id"]]
    assert [c["id"] for c in api.walk(status="finished", limit="2")] == [
        chat["id"] for chat in reversed(expired)
    ]
    # Reading wrote nothing: no sweep, no request recorded the expiry.
    assert (
        count_documents(db, quick.id),
        [stored_chat(db, quick, chat["id"]) for chat in expired],
    ) == stored_before
    assert {stored_chat(db, quick, chat["id"])["status"] for chat in expired} == {
        "selecting",
        "queued",
        "assigned",
    }


# ---- tenants ----------------------------------------------------------------------------


def test_another_tenants_chats_are_never_listed(
    clocked_twilio_server: str,
    make_tenant: Callable[..., Tenant],
    twilio: TwilioStandIn,
    clock: MovableClock,
) -> None:
    mine = Api(clocked_twilio_server, make_owner(make_tenant), twilio)
    theirs = Api(clocked_twilio_server, make_owner(make_tenant), twilio)
    shared = consumer()  # a consumer of both
    own = [mine.open(shared), mine.open(consumer(), agentId=1)]
    clock.advance(1)
    foreign = [theirs.open(consumer()), theirs.queued(consumer()), theirs.open(shared)]
    assert own[0]["id"] == foreign[0]["id"]  # ids are per tenant: they meet

    assert mine.page() == {
        "chats": [mine.get(c["id"]) for c in reversed(own)],
        "next_page_token": None,
    }
    assert theirs.ids() == [c["id"] for c in reversed(foreign)]
    assert [c["outbound_number"] for c in mine.page()["chats"]] == [number_of(mine.tenant)] * 2
    assert mine.ids(end_user_number=shared) == [own[0]["id"]]
    assert theirs.ids(end_user_number=shared) == [foreign[2]["id"]]
    assert mine.ids(status="queued") == []
    # A token of the other tenant's listing leads through this tenant's chats only.
    token = theirs.page(limit="1")["next_page_token"]
    assert token is not None
    assert mine.ids(page_token=token) == [c["id"] for c in reversed(own)]


def test_the_list_needs_the_tenants_credentials_and_has_only_get(
    api: Api, make_tenant: Callable[..., Tenant]
) -> None:
    api.open(consumer())
    stranger = make_tenant()
    assert Api(api.base, stranger, api.standin).page()["chats"] == []  # its own: none
    for headers in (
        {},
        {"Authorization": "Basic !!!"},
        basic(api.tenant.id, "not-the-token"),
        basic(api.tenant.id, stranger.token),
        basic(stranger.id, api.tenant.token),
    ):
        answer = api.call("GET", CHATS, headers=headers)
        assert (answer.status_code, answer.json()) == (401, {"message": "Unauthorized"})
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="sms"'
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        answer = api.call(method, CHATS, {"status": "finished"})
        assert (answer.status_code, answer.json()) == (405, {"message": "Method Not Allowed"})
        assert answer.headers["Allow"] == "GET"


# ---- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["open", "", "Queued", "ACTIVE", "finished ", "ended", "selecting,assigned"]
)
def test_a_status_that_is_not_one_of_the_six_is_refused(api: Api, status: str) -> None:
    api.open(consumer())
    assert api.refused(status=status) == STATUS_INVALID


BAD = {"status": "open", "end_user_number": "12345", "limit": "0", "page_token": "bad"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (BAD, STATUS_INVALID),
        ({**BAD, "status": "active"}, NUMBER_INVALID),
        ({**BAD, "status": "queued", "end_user_number": "(415) 555-0100"}, LIMIT_INVALID),
        ({**BAD, "end_user_number": "+82 2-312-3456", "status": "failed", "limit": "200"},
         TOKEN_INVALID),
        ({k: v for k, v in BAD.items() if k != "status"}, NUMBER_INVALID),
        ({"limit": "0", "page_token": "bad"}, LIMIT_INVALID),
        ({"end_user_number": "x", "page_token": "bad"}, NUMBER_INVALID),
        ({"status": "x", "page_token": "bad"}, STATUS_INVALID),
    ],
    ids=["all", "no_status", "no_number", "only_token", "status_absent", "limit_token",
         "number_token", "status_token"],
)  # fmt: skip
def test_bad_query_values_answer_in_the_order_status_number_limit_token(
    api: Api, db: firestore.Client, query: dict[str, str], expected: dict[str, str]
) -> None:
    api.open(consumer())
    before = count_documents(db, api.tenant.id)
    assert api.refused(**query) == expected
    assert count_documents(db, api.tenant.id) == before


@pytest.mark.parametrize(
    "token",
    [
        token_of("0.__x__"),
        token_of("1633368051000.__name__"),
        token_of("1633368051000.abc"),
        token_of("1633368051000.0"),
        token_of("1633368051000.-5"),
        token_of("1633368051000.01"),
        token_of("1633368051000.99999999999999999999"),  # 20 digits: no stored id is so long
        token_of("1633368051000.9999999999999999999"),  # 19 digits, past Firestore's integers
        token_of("1633368051000.5c0e3f1b9a7d24e6b8c1"),  # a transcript's: a message id
        token_of("1633368051000.1/2"),
        token_of("999999999999999.1"),  # in the year 33658
        token_of("1633368051000"),
        base64.urlsafe_b64encode(b"1633368051000.114").decode(),  # padded: not as issued
        base64.b64encode(b"1633368051000.114").decode() + "\n",
        "bad",
        "",
        "%%%",
        "\u20ac",
    ],
    ids=lambda token: repr(token)[:40],
)
def test_a_page_token_this_service_did_not_issue_is_refused(
    api: Api, db: firestore.Client, token: str
) -> None:
    api.open(consumer())
    before = count_documents(db, api.tenant.id)
    assert api.refused(page_token=token) == TOKEN_INVALID
    assert api.refused(page_token=token, status="active", limit="5") == TOKEN_INVALID
    assert count_documents(db, api.tenant.id) == before


def test_an_issued_token_leads_on_and_an_altered_one_is_refused(api: Api) -> None:
    opened = [api.open(consumer())["id"] for _ in range(3)]
    first = api.page(limit="1")
    token = first["next_page_token"]
    assert token is not None
    assert api.ids(page_token=token) == sorted(opened, reverse=True)[1:]
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    at, _, chat_id = raw.partition(".")
    assert chat_id == str(max(opened))
    assert api.refused(page_token=token + "x") == TOKEN_INVALID
    assert api.refused(page_token=token_of(f"{at}.{chat_id}.0")) == TOKEN_INVALID
    assert api.ids(page_token=token_of(f"{at}.{min(opened)}")) == []  # a position, no secret
