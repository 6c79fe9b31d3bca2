"""The admin command line for webhooks, events, chats, the events of opt-outs and quiet hours,
against the emulator (replays and announcements also against the Pub/Sub emulator, with
sms_api and sms_events served): what each command writes, what it refuses (writing nothing),
and what it prints."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import pytest
import requests
from eventing import EventStack, Receiver, add_endpoint, receiving
from google.cloud import firestore
from standardwebhooks.webhooks import Webhook
from twilio_standin import TwilioStandIn, sign

from conftest import AGENT_INFO_KEYS, PROJECT, SEED_BODY, SMS_PATH, Tenant, basic, count_documents
from sms import reach, render
from sms import tenants as tenant_rules
from sms.admin.cli import main
from sms.clock import utc_now
from sms.devtools.seed import DEMO_AGENT
from sms.events import model, signing
from sms.repository.events import event_document

Admin = Callable[..., tuple[int, Any, str]]
LOOPBACK_ALLOWED = {"SMS_WEBHOOKS_ALLOW_HOSTS": "127.0.0.1"}


@pytest.fixture
def admin(db: firestore.Client, capsys: pytest.CaptureFixture[str]) -> Admin:
    """Run one command in-process; its exit status, its JSON output and its stderr."""

    def run(*argv: str) -> tuple[int, Any, str]:
        capsys.readouterr()
        status = main(list(argv), client=db)
        out, err = capsys.readouterr()
        return status, json.loads(out) if out.strip() else None, err

    return run


@pytest.fixture
def name(admin: Admin) -> str:
    """A tenant made with the command line, with agent 1 (john.doe@foo.com)."""
    tenant_id = f"op{uuid.uuid4().hex[:12]}"
    assert admin("tenants", "create", tenant_id)[0] == 0
    assert admin("agents", "add", tenant_id, "1", "--email", "john.doe@foo.com")[0] == 0
    return tenant_id


def fresh_number() -> str:
    """An outbound number no other test holds (628-556: the other tests use 628-555)."""
    return f"+1628556{random.randrange(10_000):04d}"


def last_line(err: str) -> str:
    """The command's own last word (the use cases' log lines come before it)."""
    return err.strip().splitlines()[-1]


def stored_events(db: firestore.Client, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's event documents, oldest first."""
    snaps = db.collection(f"tenants/{tenant_id}/events").stream()
    return sorted((snap.to_dict() or {} for snap in snaps), key=lambda doc: doc["timestamp"])


def bodies(db: firestore.Client, tenant_id: str) -> list[dict[str, Any]]:
    return [json.loads(doc["body"]) for doc in stored_events(db, tenant_id)]


def store_event(
    db: firestore.Client,
    tenant_id: str,
    kind: str = model.OPTED_OUT,
    at: dt.datetime | None = None,
    deliveries: dict[str, Any] | None = None,
) -> str:
    """An event recorded as the function records them (and already dispatched); its id."""
    event = model.consumer_event(kind, tenant_id, "+14155550100", "keyword", at or utc_now())
    document = {**event_document(event), "dispatched": True, "deliveries": deliveries or {}}
    db.document(f"tenants/{tenant_id}/events/{event.id}").set(document)
    return event.id


def event_doc(db: firestore.Client, tenant_id: str, event_id: str) -> dict[str, Any]:
    return db.document(f"tenants/{tenant_id}/events/{event_id}").get().to_dict() or {}


# ---- webhooks ---------------------------------------------------------------------------------


def test_webhooks_add_writes_the_endpoint_as_the_contract_says_and_shows_its_secret_once(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    before = utc_now()
    status, added, err = admin(
        "webhooks", "add", name, "https://hooks.example.invalid/hooks",
        "--events", "chat.created, message.received,chat.created",
    )  # fmt: skip

    assert status == 0, err
    assert "The secret is shown only this once" in err
    assert set(added) == {"tenant", "id", "url", "events", "secret"}
    assert (added["tenant"], added["url"]) == (name, "https://hooks.example.invalid/hooks")
    assert added["events"] == ["chat.created", "message.received"]
    assert signing.is_secret(added["secret"])
    stored = db.document(f"tenants/{name}/webhook_endpoints/{added['id']}").get().to_dict()
    assert stored is not None
    assert stored.pop("created_at") >= before
    assert stored == {
        "url": "https://hooks.example.invalid/hooks",
        "events": ["chat.created", "message.received"],
        "secrets": [{"secret": added["secret"], "expires_at": None}],
        "enabled": True,
    }

    status, listed, _ = admin("webhooks", "list", name)
    assert status == 0
    assert added["secret"] not in json.dumps(listed)
    [entry] = listed
    assert entry["id"] == added["id"]
    assert (entry["url"], entry["events"], entry["enabled"]) == (
        "https://hooks.example.invalid/hooks",
        ["chat.created", "message.received"],
        True,
    )
    assert entry["secrets"] == {"count": 1, "expires_at": [None]}


def test_an_endpoint_added_with_no_events_takes_every_type(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    status, added, _ = admin("webhooks", "add", name, "https://hooks.example.invalid:8443/in?x=1")

    assert status == 0
    assert added["events"] == []
    stored = db.document(f"tenants/{name}/webhook_endpoints/{added['id']}").get()
    assert stored.get("events") == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["http://10.0.0.1/x"], "http:// is allowed only for hosts in SMS_WEBHOOKS_ALLOW_HOSTS"),
        (["http://localhost/x"], "http:// is allowed only for hosts in SMS_WEBHOOKS_ALLOW_HOSTS"),
        (["https://10.0.0.1/x"], "10.0.0.1 is private"),
        (["https://localhost/x"], "localhost is loopback"),
        (["https://169.254.169.254/computeMetadata"], "169.254.169.254 is link-local"),
        (["https://user:pw@hooks.example.invalid/x"], "must not carry a user name or password"),
        (["ftp://hooks.example.invalid/x"], "must start with https://"),
        (
            ["https://hooks.example.invalid/x", "--events", "chat.opened"],
            "'chat.opened' is not an event",
        ),
        (["https://hooks.example.invalid/x", "--events", " , "], "--events names no event type"),
    ],
)
def test_webhooks_add_refuses_what_could_never_be_delivered_and_writes_nothing(
    admin: Admin, name: str, db: firestore.Client, argv: list[str], says: str
) -> None:
    before = count_documents(db, name)

    status, out, err = admin("webhooks", "add", name, *argv)

    assert (status, out) == (2, None)
    assert says in err
    assert "nothing was written" in err
    assert count_documents(db, name) == before


def test_webhooks_add_refuses_a_missing_tenant_and_a_url_it_delivers_to_already(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    missing = f"{name}x"
    status, _, err = admin("webhooks", "add", missing, "https://hooks.example.invalid/hooks")
    assert status == 1
    assert f"tenant {missing!r} does not exist" in err
    assert not db.document(f"tenants/{missing}").get().exists

    first = admin("webhooks", "add", name, "https://hooks.example.invalid/hooks")[1]["id"]
    before = count_documents(db, name)
    status, out, err = admin("webhooks", "add", name, "https://hooks.example.invalid/hooks")
    assert (status, out) == (1, None)
    assert (
        f"webhook endpoint {first} delivers to https://hooks.example.invalid/hooks already" in err
    )
    assert count_documents(db, name) == before


def test_a_loopback_url_is_accepted_where_sms_webhooks_allow_hosts_lists_it(
    admin: Admin, name: str
) -> None:
    os.environ.update(LOOPBACK_ALLOWED)

    status, added, err = admin("webhooks", "add", name, "http://127.0.0.1:8099/hooks")

    assert status == 0, err
    assert added["url"] == "http://127.0.0.1:8099/hooks"


def test_rotate_secret_adds_one_and_lets_the_others_sign_24_hours_at_most(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    added = admin("webhooks", "add", name, "https://hooks.example.invalid/hooks")[1]
    ref = db.document(f"tenants/{name}/webhook_endpoints/{added['id']}")
    now = utc_now()
    soon, past = now + dt.timedelta(hours=2), now - dt.timedelta(minutes=1)
    older, expired = signing.new_secret(), signing.new_secret()
    ref.update(
        {
            "secrets": [
                {"secret": added["secret"], "expires_at": None},
                {"secret": older, "expires_at": soon},
                {"secret": expired, "expires_at": past},
            ]
        }
    )

    status, rotated, err = admin("webhooks", "rotate-secret", name, added["id"])
    after = utc_now()

    assert status == 0, err
    assert "The secret is shown only this once" in err
    assert signing.is_secret(rotated["secret"])
    assert rotated["secret"] not in (added["secret"], older)
    secrets = ref.get().get("secrets")
    assert [entry["secret"] for entry in secrets] == [added["secret"], older, rotated["secret"]]
    day = dt.timedelta(hours=24)
    assert now + day <= secrets[0]["expires_at"] <= after + day
    assert secrets[1]["expires_at"] == soon  # an earlier expiry is kept
    assert secrets[2]["expires_at"] is None
    assert rotated["secrets"]["count"] == 3
    assert rotated["secrets"]["expires_at"][1:] == [soon.isoformat(), None]
    listed = admin("webhooks", "list", name)[1][0]["secrets"]
    assert listed["count"] == 3
    assert json.dumps(listed).count("null") == 1


def test_webhooks_are_disabled_enabled_and_removed(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    endpoint = admin("webhooks", "add", name, "https://hooks.example.invalid/hooks")[1]["id"]
    ref = db.document(f"tenants/{name}/webhook_endpoints/{endpoint}")

    assert admin("webhooks", "disable", name, endpoint)[:2] == (
        0,
        {"tenant": name, "id": endpoint, "enabled": False},
    )
    assert ref.get().get("enabled") is False
    assert admin("webhooks", "list", name)[1][0]["enabled"] is False
    assert admin("webhooks", "enable", name, endpoint)[0] == 0
    assert ref.get().get("enabled") is True
    assert admin("webhooks", "remove", name, endpoint)[:2] == (
        0,
        {"tenant": name, "removed": endpoint},
    )
    assert not ref.get().exists
    assert admin("webhooks", "list", name)[1] == []


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["enable", "{t}", "nosuchendpoint"], 1, "webhook endpoint nosuchendpoint does not exist"),
        (["disable", "{t}", "nosuchendpoint"], 1, "does not exist"),
        (["remove", "{t}", "nosuchendpoint"], 1, "does not exist"),
        (["rotate-secret", "{t}", "nosuchendpoint"], 1, "does not exist"),
        (["rotate-secret", "{t}", "a/b"], 2, "is not a webhook endpoint id"),
        (["list", "nosuchtenant"], 1, "tenant 'nosuchtenant' does not exist"),
    ],
)
def test_webhook_commands_on_what_does_not_exist_fail_and_write_nothing(
    admin: Admin, name: str, db: firestore.Client, *, argv: list[str], status: int, says: str
) -> None:
    admin("webhooks", "add", name, "https://hooks.example.invalid/hooks")
    before = count_documents(db, name)

    done, out, err = admin("webhooks", *[part.replace("{t}", name) for part in argv])

    assert (done, out) == (status, None)
    assert says in err
    assert count_documents(db, name) == before


# ---- events replay and show -----------------------------------------------------------------


def test_a_replay_delivers_the_events_again_with_their_ids_and_with_endpoint_only_there(
    event_stack: EventStack,
    pubsub_host: str,
    make_tenant: Callable[..., Tenant],
    admin: Admin,
    receiver: Receiver,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    os.environ.update(LOOPBACK_ALLOWED)
    first = admin("webhooks", "add", tenant.id, receiver.url)[1]
    with receiving() as other:
        second = admin("webhooks", "add", tenant.id, other.url)[1]
        body = {**SEED_BODY, "agentId": 1}
        answer = requests.post(
            event_stack.api + SMS_PATH, json=body, headers=tenant.headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        originals = receiver.wait_for(2)
        assert [d.event["type"] for d in originals] == ["chat.created", "message.sent"]
        ids = [d.webhook_id for d in originals]
        assert len(other.wait_for(2)) == 2
        os.environ.update(PUBSUB_EMULATOR_HOST=pubsub_host, SMS_EVENTS_TOPIC=event_stack.topic)

        status, report, err = admin("events", "replay", tenant.id)

        assert status == 0, err
        assert report["announced_through"] == "pubsub"
        assert sorted(report["endpoints"]) == sorted([first["id"], second["id"]])
        assert [event["id"] for event in report["replayed"]] == ids
        assert [event["type"] for event in report["replayed"]] == ["chat.created", "message.sent"]
        again = receiver.wait_for(4)[2:]
        assert [d.webhook_id for d in again] == ids
        assert [d.body for d in again] == [d.body for d in originals]
        for delivery in again:
            assert Webhook(first["secret"]).verify(delivery.body, delivery.headers)
        assert [d.webhook_id for d in other.wait_for(4)[2:]] == ids

        status, report, err = admin("events", "replay", tenant.id, "--endpoint", second["id"])

        assert status == 0, err
        assert report["endpoints"] == [second["id"]]
        assert [d.webhook_id for d in other.wait_for(6)[4:]] == ids
        receiver.wait_for(5, seconds=3)
        assert len(receiver.deliveries) == 4  # the other endpoint got nothing more
        assert len(other.deliveries) == 6


def test_a_replay_with_no_transport_delivers_in_process_even_an_event_given_up_days_ago(
    admin: Admin, name: str, db: firestore.Client, receiver: Receiver
) -> None:
    os.environ.update(LOOPBACK_ALLOWED)
    added = admin("webhooks", "add", name, receiver.url)[1]
    long_ago = utc_now() - dt.timedelta(days=4)
    given_up = {
        "state": model.GIVEN_UP, "attempts": 3, "claimed_until": None,
        "last_attempt_at": long_ago, "last_status": 503, "last_error": None,
    }  # fmt: skip
    event_id = store_event(db, name, at=long_ago, deliveries={added["id"]: given_up})

    status, report, err = admin("events", "replay", name)

    assert status == 0, err
    assert "announced_through" not in report
    assert report["delivered_in_process"] == {
        "delivered": 1, "failed": 0, "gone": 0, "given_up": 0, "busy": 0
    }  # fmt: skip
    assert [event["id"] for event in report["replayed"]] == [event_id]
    [delivery] = receiver.wait_for(1)
    assert delivery.webhook_id == event_id
    assert Webhook(added["secret"]).verify(delivery.body, delivery.headers)
    assert delivery.body.decode() == event_doc(db, name, event_id)["body"]

    status, shown, _ = admin("events", "show", name, event_id)
    assert status == 0
    [seen] = shown["deliveries"]
    assert (seen["endpoint"], seen["state"], seen["attempts"], seen["last_status"]) == (
        added["id"],
        model.DELIVERED,
        4,  # the attempts before the replay stay counted
        204,
    )
    assert seen["replayed_at"] is not None
    [attempt] = seen["attempt_log"]
    assert (attempt["attempt"], attempt["outcome"], attempt["status"]) == (4, "delivered", 204)


def test_events_show_lists_a_failed_attempt_and_the_endpoints_that_do_not_take_the_event(
    admin: Admin, name: str, db: firestore.Client, receiver: Receiver
) -> None:
    os.environ.update(LOOPBACK_ALLOWED)
    receiver.default = 503
    failing = admin("webhooks", "add", name, receiver.url)[1]["id"]
    other = admin(
        "webhooks", "add", name, "https://hooks.example.invalid/a", "--events", "chat.created"
    )
    disabled = admin("webhooks", "add", name, "https://hooks.example.invalid/b")[1]["id"]
    admin("webhooks", "disable", name, disabled)
    event_id = store_event(db, name)

    status, report, err = admin("events", "replay", name)

    assert status == 1
    assert report["delivered_in_process"]["failed"] == 1
    assert "1 attempts failed" in last_line(err)
    assert len(receiver.wait_for(1)) == 1
    status, shown, _ = admin("events", "show", name, event_id)
    assert status == 0
    assert shown["event"] == json.loads(event_doc(db, name, event_id)["body"])
    assert (shown["event"]["id"], shown["event"]["type"]) == (event_id, model.OPTED_OUT)
    by_endpoint = {delivery["endpoint"]: delivery for delivery in shown["deliveries"]}
    assert set(by_endpoint) == {failing, other[1]["id"], disabled}
    tried = by_endpoint[failing]
    assert (tried["url"], tried["state"], tried["attempts"], tried["last_status"]) == (
        receiver.url,
        model.FAILING,
        1,
        503,
    )
    [attempt] = tried["attempt_log"]
    assert (attempt["attempt"], attempt["outcome"], attempt["status"]) == (1, "failing", 503)
    assert attempt["at"] == tried["last_attempt_at"]
    assert by_endpoint[other[1]["id"]] == {
        "endpoint": other[1]["id"],
        "url": "https://hooks.example.invalid/a",
        "state": "not_taken",
        "why": "the endpoint does not take consumer.opted_out events",
        "attempt_log": [],
    }
    assert by_endpoint[disabled]["why"] == "the endpoint is disabled"


def test_a_replay_chooses_events_by_time_and_type(
    admin: Admin, name: str, db: firestore.Client, receiver: Receiver
) -> None:
    os.environ.update(LOOPBACK_ALLOWED)
    admin("webhooks", "add", name, receiver.url)
    start = utc_now() - dt.timedelta(hours=1)
    minutes = [start + dt.timedelta(minutes=m) for m in (0, 10, 20)]
    kinds = [model.OPTED_OUT, model.OPTED_IN, model.OPTED_OUT]
    ids = [store_event(db, name, kind, at) for kind, at in zip(kinds, minutes, strict=True)]
    time = [str(render.timestamp(at)) for at in minutes]
    between = str(render.timestamp(minutes[0] + dt.timedelta(minutes=5)))

    def replayed(*options: str) -> list[str]:
        status, report, err = admin("events", "replay", name, *options)
        assert status == 0, err
        return [event["id"] for event in report["replayed"]]

    assert replayed() == ids
    assert replayed("--type", model.OPTED_OUT) == [ids[0], ids[2]]
    assert replayed("--since", time[1]) == ids[1:]
    assert replayed("--until", time[1]) == ids[:2]
    assert replayed("--since", between, "--until", time[1]) == [ids[1]]
    assert replayed("--since", time[2], "--type", model.OPTED_IN) == []
    assert len(receiver.wait_for(10)) == 10


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["--since", "yesterday"], 2, "--since 'yesterday' is not a time as the API writes them"),
        (["--until", "2024-02-30T00:00:00Z"], 2, "--until '2024-02-30T00:00:00Z' is not a time"),
        (
            ["--since", "2030-01-01T00:00:00Z", "--until", "2029-01-01T00:00:00.000Z"],
            2,
            "--since 2030-01-01T00:00:00Z is after --until 2029-01-01T00:00:00.000Z",
        ),
        (["--type", "chat.opened"], 2, "'chat.opened' is not an event type"),
        (["--endpoint", "a/b"], 2, "is not a webhook endpoint id"),
        (["--endpoint", "nosuchendpoint"], 1, "webhook endpoint nosuchendpoint does not exist"),
        (["--endpoint", "{disabled}"], 1, "is disabled: enable it first"),
        (["--endpoint", "{typed}", "--type", model.OPTED_IN], 1, "does not take consumer.opted_in"),
    ],
)
def test_a_replay_refuses_bad_input_and_endpoints_it_cannot_deliver_to_and_writes_nothing(
    admin: Admin, name: str, db: firestore.Client, *, argv: list[str], status: int, says: str
) -> None:
    endpoints = {
        "{disabled}": admin("webhooks", "add", name, "https://hooks.example.invalid/a")[1]["id"],
        "{typed}": admin(
            "webhooks", "add", name, "https://hooks.example.invalid/b", "--events", model.OPTED_OUT
        )[1]["id"],
    }
    admin("webhooks", "disable", name, endpoints["{disabled}"])
    event_id = store_event(db, name)
    before = event_doc(db, name, event_id)

    done, out, err = admin("events", "replay", name, *[endpoints.get(a, a) for a in argv])

    assert (done, out) == (status, None)
    assert says in err
    assert "nothing was written" in err
    assert event_doc(db, name, event_id) == before


def test_a_replay_for_a_tenant_with_no_enabled_endpoint_is_refused(
    admin: Admin, name: str, db: firestore.Client
) -> None:
    event_id = store_event(db, name)
    before = event_doc(db, name, event_id)

    status, _, err = admin("events", "replay", name)

    assert status == 1
    assert f"tenant {name!r} has no enabled webhook endpoint to deliver to" in err
    assert event_doc(db, name, event_id) == before
    assert admin("events", "replay", f"{name}x")[0] == 1  # no such tenant


@pytest.mark.parametrize(
    ("event_id", "status", "says"),
    [
        ("evt_" + "0" * 32, 1, f"event evt_{'0' * 32} does not exist"),
        ("evt_xyz", 2, "'evt_xyz' is not an event id"),
        ("../chats/1", 2, "is not an event id"),
    ],
)
def test_events_show_refuses_an_event_that_is_not_there(
    admin: Admin, name: str, event_id: str, status: int, says: str
) -> None:
    done, out, err = admin("events", "show", name, event_id)

    assert (done, out) == (status, None)
    assert says in err


# ---- chats list and assign ------------------------------------------------------------------


def reply(url: str, standin: TwilioStandIn, to: str, sender: str) -> requests.Response:
    """An incoming SMS posted as Twilio posts it, signed."""
    sid = "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": standin.account_sid, "From": sender,
        "To": to, "Body": "Hello, is anyone there?", "NumMedia": "0", "ApiVersion": "2010-04-01",
    }  # fmt: skip
    target = url + SMS_PATH + "/inbound"
    signature = sign(target, form, standin.auth_token)
    return requests.post(target, data=form, headers={"X-Twilio-Signature": signature}, timeout=30)


def test_chats_are_listed_and_a_queued_one_assigned_as_the_api_does_with_its_event(
    admin: Admin,
    make_tenant: Callable[..., Tenant],
    twilio_server: str,
    standin: TwilioStandIn,
    db: firestore.Client,
) -> None:
    ours = fresh_number()
    tenant = make_tenant(
        agents={1: dict(DEMO_AGENT)}, outbound_numbers={ours: {}}, index_numbers=True
    )
    assert reply(twilio_server, standin, ours, "+14155550177").status_code == 200

    status, listed, err = admin(
        "chats", "list", tenant.id, "--status", "queued", "--number", "(415) 555-0177"
    )

    assert status == 0, err
    api = requests.get(
        twilio_server + "/apps/api/v1/chats",
        params={"status": "queued", "end_user_number": "+14155550177"},
        headers=tenant.headers,
        timeout=30,
    )
    assert listed == api.json()
    [chat] = listed["chats"]
    assert (chat["status"], chat["agent_info"], listed["next_page_token"]) == ("queued", None, None)

    status, assigned, err = admin(
        "chats", "assign", tenant.id, str(chat["id"]), "--agent-email", "JOHN.doe@foo.com"
    )

    assert status == 0, err
    assert (assigned["id"], assigned["status"]) == (chat["id"], "assigned")
    assert list(assigned["agent_info"]) == AGENT_INFO_KEYS
    assert assigned["agent_info"]["id"] == 1
    chat_url = f"{twilio_server}/apps/api/v1/chats/{chat['id']}"
    assert requests.get(chat_url, headers=tenant.headers, timeout=30).json() == assigned
    [event] = [body for body in bodies(db, tenant.id) if body["type"] == model.CHAT_ASSIGNED]
    assert (event["tenant"], event["data"]) == (tenant.id, assigned)
    assert admin("chats", "list", tenant.id, "--status", "queued")[1]["chats"] == []


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["assign", "{t}", "{chat}", "--agent-id", "1"], 1, "Chat is already assigned"),
        (["assign", "{t}", "{chat}", "--agent-id", "abc"], 2, "agent is invalid"),
        (["assign", "{t}", "{chat}", "--agent-id", "42"], 1, "agent is not found"),
        (["assign", "{t}", "{chat}", "--agent-email", "nobody@foo.com"], 1, "agent is not found"),
        (["assign", "{t}", "999999", "--agent-id", "1"], 1, "Not Found"),
        (["list", "{t}", "--status", "open"], 2, "status is invalid"),
        (["list", "{t}", "--limit", "0"], 2, "limit is invalid"),
        (["list", "{t}", "--limit", "201"], 2, "limit is invalid"),
        (["list", "{t}", "--number", "12345"], 2, "end_user_number is invalid"),
        (["list", "{t}", "--page-token", "x"], 2, "page_token is invalid"),
    ],
)
def test_chat_commands_refuse_with_the_apis_message_and_write_nothing(
    admin: Admin,
    make_tenant: Callable[..., Tenant],
    app_client: Any,
    db: firestore.Client,
    *,
    argv: list[str],
    status: int,
    message: str,
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT)})
    opened = app_client.post(SMS_PATH, json={**SEED_BODY, "agentId": 1}, headers=tenant.headers)
    assert opened.status_code == 200
    before = count_documents(db, tenant.id)
    argv = [part.replace("{t}", tenant.id) for part in argv]
    argv = [part.replace("{chat}", str(opened.get_json()["id"])) for part in argv]

    done, out, err = admin("chats", *argv)

    assert (done, out) == (status, None)
    assert last_line(err) == f"error: {message}"
    assert count_documents(db, tenant.id) == before


def test_chat_commands_refuse_a_bad_chat_id_and_a_missing_tenant(admin: Admin, name: str) -> None:
    status, _, err = admin("chats", "assign", name, "12x", "--agent-id", "1")
    assert status == 2
    assert "'12x' is not a chat id" in err
    status, _, err = admin("chats", "list", f"{name}x")
    assert status == 1
    assert "does not exist" in err


# ---- opt-outs record their events -------------------------------------------------------------


def test_opt_outs_are_recorded_with_their_events_in_the_same_write(
    admin: Admin, name: str, db: firestore.Client, app_client: Any
) -> None:
    token = admin("credentials", "create", name)[1]["token"]

    assert admin("opt-outs", "add", name, "(415) 555-0100")[0] == 0

    [stored] = stored_events(db, name)
    opted_out = json.loads(stored["body"])
    assert opted_out["type"] == model.OPTED_OUT
    assert (opted_out["tenant"], opted_out["data"]) == (
        name,
        {"number": "+14155550100", "source": "admin"},
    )
    record = db.document(f"tenants/{name}/opt_outs/+14155550100").get()
    assert opted_out["timestamp"] == render.timestamp(record.get("at"))
    assert (stored["type"], stored["dispatched"]) == (model.OPTED_OUT, False)
    assert stored["expires_at"] == stored["timestamp"] + model.KEPT

    assert admin("opt-outs", "add", name, "+14155550100")[0] == 1  # already: no second event
    assert admin("opt-outs", "remove", name, "+1 415-555-0100")[0] == 0
    assert admin("opt-outs", "remove", name, "+1 415-555-0100")[0] == 1  # no longer: none

    assert not record.reference.get().exists
    assert [body["type"] for body in bodies(db, name)] == [model.OPTED_OUT, model.OPTED_IN]
    opted_in = bodies(db, name)[1]
    assert opted_in["data"] == {"number": "+14155550100", "source": "admin"}
    listed = app_client.get("/apps/api/v1/events", headers=basic(name, token))
    assert listed.get_json()["events"] == [opted_out, opted_in]


def test_an_opt_out_made_with_the_command_line_is_announced_and_delivered(
    event_stack: EventStack,
    pubsub_host: str,
    make_tenant: Callable[..., Tenant],
    admin: Admin,
    *,
    db: firestore.Client,
    receiver: Receiver,
) -> None:
    tenant = make_tenant()
    add_endpoint(db, tenant.id, receiver.url)
    os.environ.update(PUBSUB_EMULATOR_HOST=pubsub_host, SMS_EVENTS_TOPIC=event_stack.topic)

    status, _, err = admin("opt-outs", "add", tenant.id, "+14155550100")
    assert status == 0, err
    assert "warning" not in err
    [delivery] = receiver.wait_for(1)
    assert delivery.event["type"] == model.OPTED_OUT
    assert delivery.event["data"] == {"number": "+14155550100", "source": "admin"}

    assert admin("opt-outs", "remove", tenant.id, "+14155550100")[0] == 0
    assert [d.event["type"] for d in receiver.wait_for(2)] == [model.OPTED_OUT, model.OPTED_IN]


# ---- quiet hours --------------------------------------------------------------------------------


def test_quiet_hours_are_written_amended_shown_and_cleared(
    admin: Admin, db: firestore.Client
) -> None:
    tenant_id = f"op{uuid.uuid4().hex[:12]}"
    status, created, err = admin(
        "tenants", "create", tenant_id, "--quiet-hours", "21:00-08:00",
        "--default-time-zone", "America/Chicago",
    )  # fmt: skip
    assert status == 0, err
    window = {"start": "21:00", "end": "08:00", "policy": "hold", "state_rules": False}
    assert created["quiet_hours"] == window
    stored = db.document(f"tenants/{tenant_id}").get()
    assert (stored.get("quiet_hours"), stored.get("default_time_zone")) == (
        window,
        "America/Chicago",
    )
    shown = admin("tenants", "show", tenant_id)[1]
    assert (shown["quiet_hours"], shown["default_time_zone"]) == (window, "America/Chicago")
    assert list(shown).index("quiet_hours") == list(shown).index("rate_limit_per_second") + 1

    status, updated, _ = admin(
        "tenants", "update", tenant_id, "--quiet-hours-policy", "refuse", "--state-rules"
    )
    assert status == 0
    amended = {**window, "policy": "refuse", "state_rules": True}
    assert updated["quiet_hours"] == amended
    assert db.document(f"tenants/{tenant_id}").get().get("quiet_hours") == amended

    assert admin("tenants", "update", tenant_id, "--quiet-hours", "22:30 - 07:15")[0] == 0
    moved = {**amended, "start": "22:30", "end": "07:15"}  # the policy and rules are kept
    assert db.document(f"tenants/{tenant_id}").get().get("quiet_hours") == moved

    status, cleared, _ = admin("tenants", "update", tenant_id, "--clear-quiet-hours")
    assert status == 0
    assert "quiet_hours" not in cleared
    assert "quiet_hours" not in (db.document(f"tenants/{tenant_id}").get().to_dict() or {})
    assert "quiet_hours" not in admin("tenants", "show", tenant_id)[1]


def test_quiet_hours_written_with_the_command_line_are_the_functions(
    admin: Admin, name: str, app_client: Any
) -> None:
    token = admin("credentials", "create", name)[1]["token"]
    ours = fresh_number()
    assert admin("numbers", "add", name, ours)[0] == 0
    here = dt.datetime.now(zoneinfo.ZoneInfo("America/Los_Angeles"))  # +1 415's zone
    start = (here - dt.timedelta(hours=1)).strftime("%H:%M")
    end = (here + dt.timedelta(hours=1)).strftime("%H:%M")
    assert admin(
        "tenants", "update", name, "--quiet-hours", f"{start}-{end}",
        "--quiet-hours-policy", "refuse",
    )[0] == 0  # fmt: skip

    answer = app_client.post(
        SMS_PATH, json={**SEED_BODY, "outbound_number": ours}, headers=basic(name, token)
    )

    assert (answer.status_code, answer.get_json()) == (
        400,
        {"message": "end_user_number is in quiet hours"},
    )


HOLD = {"policy": "hold", "state_rules": False}


@pytest.mark.parametrize(
    ("argv", "judged", "says"),
    [
        (
            ["create", "{t}", "--quiet-hours", "25:00-08:00"],
            {"quiet_hours": {"start": "25:00", "end": "08:00", **HOLD}},
            '--quiet-hours 25:00-08:00: quiet_hours.start must be a time "HH:MM"',
        ),
        (
            ["update", "{known}", "--quiet-hours", "9:00-17:00"],
            {"quiet_hours": {"start": "9:00", "end": "17:00", **HOLD}},
            "got '9:00'",
        ),
        (
            ["create", "{t}", "--quiet-hours", "22:00-22:00"],
            {"quiet_hours": {"start": "22:00", "end": "22:00", **HOLD}},
            "the window would be empty",
        ),
        (
            ["create", "{t}", "--quiet-hours", "21:00-08:00", "--quiet-hours-policy", "Hold"],
            {"quiet_hours": {"start": "21:00", "end": "08:00", "policy": "Hold"}},
            "--quiet-hours-policy 'Hold': quiet_hours.policy must be 'hold' or 'refuse'",
        ),
        (
            ["update", "{known}", "--default-time-zone", "Mars/Olympus"],
            {"default_time_zone": "Mars/Olympus"},
            "--default-time-zone 'Mars/Olympus' unknown time zone",
        ),
        (
            ["create", "{t}", "--default-time-zone", "localtime"],
            {"default_time_zone": "localtime"},
            "unknown time zone 'localtime'",
        ),
        (["create", "{t}", "--quiet-hours", "2200"], None, "must be a window HH:MM-HH:MM"),
        (
            ["create", "{t}", "--quiet-hours-policy", "refuse"],
            None,
            "the tenant has no quiet hours: give --quiet-hours",
        ),
        (["update", "{known}", "--state-rules"], None, "the tenant has no quiet hours"),
        (
            ["update", "{known}", "--clear-quiet-hours", "--quiet-hours", "21:00-08:00"],
            None,
            "not both",
        ),
    ],
)
def test_quiet_hours_the_function_could_not_use_are_refused_with_its_reasons(
    admin: Admin,
    name: str,
    db: firestore.Client,
    *,
    argv: list[str],
    judged: dict[str, Any] | None,
    says: str,
) -> None:
    fresh = f"{name}n"
    before = db.document(f"tenants/{name}").get().to_dict()
    argv = [part.replace("{t}", fresh).replace("{known}", name) for part in argv]

    status, out, err = admin("tenants", *argv)

    assert (status, out) == (2, None)
    assert says in err
    assert "nothing was written" in err
    if judged is not None:  # the function's own reason, word for word
        [reason] = tenant_rules.refusals(judged).values()
        assert reason in err
    assert db.document(f"tenants/{name}").get().to_dict() == before
    assert not db.document(f"tenants/{fresh}").get().exists


# ---- every command explains itself, and waits on Firestore 10 s at most ----------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["webhooks"], ["webhooks", "add"], ["webhooks", "list"], ["webhooks", "rotate-secret"],
        ["webhooks", "enable"], ["webhooks", "disable"], ["webhooks", "remove"], ["events"],
        ["events", "replay"], ["events", "show"], ["chats"], ["chats", "list"],
        ["chats", "assign"],
    ],
)  # fmt: skip
def test_each_new_command_explains_itself(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])

    assert done.value.code == 0
    assert f"usage: python -m sms.admin {' '.join(argv)}" in capsys.readouterr().out


def test_every_firestore_call_of_these_commands_is_one_try_bounded_by_10_s(
    admin: Admin, name: str, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    client = firestore.Client(project=PROJECT)
    calls: list[tuple[str, Any, Any]] = []

    def spy(method_name: str, method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append((method_name, kwargs.get("timeout"), kwargs.get("retry", "default")))
            return method(*args, **kwargs)

        return call

    reach.wrap_generated_calls(client, spy)
    endpoint = admin("webhooks", "add", name, "https://hooks.example.invalid/a")[1]["id"]
    assert admin("opt-outs", "add", name, "+14155550100")[0] == 0
    [event] = bodies(db, name)
    for argv in (
        ["webhooks", "add", name, "https://hooks.example.invalid/b"],
        ["webhooks", "list", name],
        ["webhooks", "rotate-secret", name, endpoint],
        ["webhooks", "disable", name, endpoint],
        ["webhooks", "enable", name, endpoint],
        ["opt-outs", "remove", name, "+14155550100"],
        ["events", "show", name, event["id"]],
        ["events", "replay", name, "--type", model.CHAT_ENDED],
        ["chats", "list", name],
        ["tenants", "update", name, "--quiet-hours", "21:00-08:00"],
        ["webhooks", "remove", name, endpoint],
    ):
        assert main(argv, client=client) == 0, capsys.readouterr().err

    made = {call for call, _, _ in calls}
    assert {"batch_get_documents", "run_query", "commit", "begin_transaction"} <= made
    for call, timeout, retry in calls:
        assert retry is None, (call, retry)
        assert timeout is not None, call
        assert 0 < timeout <= 10, (call, timeout)
