"""SPEC 10.4: one structured JSON line per request, with trace correlation and nothing secret."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import flask
import phonenumbers
import pytest
from google.cloud import firestore
from twilio_standin import TwilioStandIn, sign

from conftest import PROJECT, SEED_BODY, SMS_PATH, MovableClock, Tenant, basic, in_process
from sms import bootstrap, credentials
from sms.api import Api
from sms.carriers.twilio import TwilioCarrier
from sms.config import Settings
from sms.devtools.emulator import free_port
from sms.domain import SUBDOMAIN
from sms.logs import clean_path, mask, trace_fields
from sms.repository import FirestoreStore


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def only_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    [line] = lines(capsys)
    return line


@pytest.fixture(scope="module", autouse=True)
def _started(app_client: Any, db: firestore.Client) -> None:
    """The function has opened a session already: the line it writes once, at its first
    events (not published with the tests' emulators), is no test's."""
    tenant = Tenant(id=f"t{uuid.uuid4().hex[:16]}")
    tenant.write(db)
    assert app_client.post(SMS_PATH, json=SEED_BODY, headers=tenant.headers).status_code == 200


def request_line(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The request's own line among the lines a test read (one per request)."""
    [line] = [one for one in found if "httpRequest" in one]
    return line


def other_lines(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines of their own written while a request was served, but the one a function
    writes at its first events (not published with the tests' emulators)."""
    return [
        one for one in found if "httpRequest" not in one and "not published" not in one["message"]
    ]


def test_a_session_opened_is_one_info_line_with_the_request_and_its_outcome(
    app_client: Any, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    answer = app_client.post(SMS_PATH, json={**SEED_BODY, "agentId": 1}, headers=tenant.headers)
    line = only_line(capsys)

    assert line["severity"] == "INFO"
    assert line["message"] == f"POST {SMS_PATH} 200 session_opened"
    request = line["httpRequest"]
    assert (request["requestMethod"], request["requestUrl"], request["status"]) == (
        "POST",
        SMS_PATH,
        200,
    )
    assert re.fullmatch(r"\d+\.\d{3}s", request["latency"])
    assert line["tenant"] == tenant.id
    assert line["chat_id"] == answer.get_json()["id"]
    assert line["outcome"] == "session_opened"
    assert line["end_user_number"] == "+1********00"
    assert line["outbound_number"] == "+1********99"


def test_lines_never_hold_the_message_text_the_token_or_a_whole_number(
    app_client: Any, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    secret_text = "Your one-time code is 493817"
    app_client.post(SMS_PATH, json={**SEED_BODY, "message": secret_text}, headers=tenant.headers)
    app_client.post(SMS_PATH, json={**SEED_BODY, "message": secret_text}, headers=tenant.headers)
    app_client.post(SMS_PATH, json=SEED_BODY, headers=basic(tenant.id, tenant.token + "x"))
    text = capsys.readouterr().out

    assert len([line for line in text.splitlines() if line.startswith("{")]) == 3
    for forbidden in (secret_text, "493817", tenant.token, "4155550100", "6285550199"):
        assert forbidden not in text


def test_a_refused_request_logs_its_error_text(
    app_client: Any, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    app_client.post(SMS_PATH, json={**SEED_BODY, "agentId": 999}, headers=tenant.headers)
    line = only_line(capsys)

    assert line["severity"] == "INFO"
    assert line["httpRequest"]["status"] == 400
    assert line["outcome"] == "rejected"
    assert line["error"] == "agent is not found"
    assert line["tenant"] == tenant.id


def test_an_unauthorized_request_logs_no_tenant_and_no_credentials(
    app_client: Any, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    app_client.post(SMS_PATH, json=SEED_BODY, headers=basic(tenant.id, "wrong-token"))
    line = only_line(capsys)

    assert line["outcome"] == "unauthorized"
    assert "tenant" not in line
    assert "wrong-token" not in json.dumps(line)


def test_cloud_trace_context_is_correlated(
    app_client: Any, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    headers = {**tenant.headers, "X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"}
    app_client.post(SMS_PATH, json=[], headers=headers)
    line = only_line(capsys)

    assert line["logging.googleapis.com/trace"] == (
        f"projects/{PROJECT}/traces/105445aa7843bc8bf206b12000100000"
    )
    assert line["logging.googleapis.com/spanId"] == "0000000000000001"
    assert line["logging.googleapis.com/trace_sampled"] is True


def test_w3c_traceparent_is_correlated(app_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    app_client.get("/nowhere", headers={"traceparent": traceparent})
    line = only_line(capsys)

    assert line["httpRequest"]["status"] == 404
    assert line["logging.googleapis.com/trace"] == (
        f"projects/{PROJECT}/traces/4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert line["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("cloud_trace", "traceparent"),
    [(None, None), ("not a trace", None), (None, "00-zz-yy-01"), ("", "")],
)
def test_missing_or_malformed_trace_headers_add_no_trace(
    cloud_trace: str | None, traceparent: str | None
) -> None:
    assert trace_fields(PROJECT, cloud_trace, traceparent) == {}


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+14155550100", "+1********00"),
        ("+447911123456", "+44********56"),
        ("+35312345678", "+353******78"),
        ("+2125551234", "+212*****34"),
        ("+99912345", "*******45"),  # no country's code
        ("4155550100", "********00"),
        (None, None),
    ],
)
def test_numbers_are_masked_to_country_code_and_last_two_digits(
    number: str | None, masked: str | None
) -> None:
    assert mask(number) == masked


class _BrokenStore:
    """A store that fails in a way nobody planned for."""

    def sign_in(self, tenant_id: str, token_sha256: str) -> None:
        raise RuntimeError("internal detail: connection string secret-42")

    def count_request(self, tenant_id: str) -> int:
        return 0


def test_an_unexpected_exception_is_logged_with_its_traceback_and_answered_without_internals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(project=PROJECT, request_deadline_seconds=2)
    api = Api(bootstrap.build(settings, store=_BrokenStore()))
    app = flask.Flask(__name__)
    with app.test_request_context(SMS_PATH, method="POST", json={}, headers=basic("acme", "t")):
        answer = api.handle(flask.request)
    line = only_line(capsys)

    assert answer.status_code == 500
    assert answer.get_json() == {"message": "Internal Server Error"}
    assert "secret-42" not in answer.get_data(as_text=True)
    assert line["severity"] == "ERROR"
    assert line["outcome"] == "error"
    assert "Traceback (most recent call last)" in line["stack_trace"]
    assert "RuntimeError: internal detail" in line["stack_trace"]


def test_a_huge_path_makes_a_bounded_line(
    app_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    path = "/apps/" + "x" * 5_000_000
    answer = app_client.get("/", environ_overrides={"PATH_INFO": path})

    assert answer.status_code == 404
    line = only_line(capsys)
    assert len(json.dumps(line)) < 2000
    assert line["httpRequest"]["requestUrl"].endswith(f"... ({len(path)} characters)")


def test_a_phone_number_and_a_credential_in_a_path_are_not_logged(
    app_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    path = "/apps/api/v1/sms/+14155550100/Basic dGVzdDpzM2NyZXQtdG9rZW4tdmFsdWU="
    app_client.get("/", environ_overrides={"PATH_INFO": path})
    text = capsys.readouterr().out

    for secret in ("4155550100", "dGVzdDpzM2NyZXQtdG9rZW4tdmFsdWU", "Basic dGVz"):
        assert secret not in text
    assert "********00" in text


@pytest.mark.parametrize("path", ["/favicon.ico", "/robots.txt", "/apps/a\nb"])
def test_answers_the_framework_gives_by_itself_are_logged_too(
    app_client: Any, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    capsys.readouterr()
    answer = app_client.get("/", environ_overrides={"PATH_INFO": path})

    assert (answer.status_code, answer.get_json()) == (404, {"message": "Not Found"})
    line = only_line(capsys)
    assert line["httpRequest"]["status"] == 404
    assert "\n" not in line["httpRequest"]["requestUrl"]


def test_the_country_code_shown_is_the_one_phonenumbers_parses_for_every_region() -> None:
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example is None:
            continue
        e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
        shown = mask(e164)
        assert shown is not None
        country = str(phonenumbers.parse(e164).country_code)
        assert shown == f"+{country}{'*' * (len(e164) - 3 - len(country))}{e164[-2:]}", region


# ---- why a request was refused: in its line, never in its answer (SPEC 2, 10.4) -----------

UNAUTHORIZED = (401, {"message": "Unauthorized"}, 'Basic realm="sms"')
TRACE = "105445aa7843bc8bf206b12000100000/1;o=1"


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def refusal(answer: Any) -> tuple[int, Any, str | None]:
    return answer.status_code, answer.get_json(), answer.headers.get("WWW-Authenticate")


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing Authorization"),
        ("  ", "missing Authorization"),
        ("Bearer abc", "malformed Authorization: not Basic"),
        ("Basic !!!", "malformed Authorization: not base64 of UTF-8 text"),
        ("Basic " + encoded("no-colon"), "malformed Authorization: no username:password"),
        ("Basic " + encoded("acme:"), "malformed Authorization: no username:password"),
        (
            "Basic " + encoded("a/b:t"),
            "malformed Authorization: the username is no tenant subdomain",
        ),
    ],
)
def test_a_401_for_missing_or_malformed_credentials_logs_why(
    app_client: Any, capsys: pytest.CaptureFixture[str], authorization: str | None, reason: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    capsys.readouterr()
    answer = app_client.post(SMS_PATH, json=SEED_BODY, headers=headers)
    line = only_line(capsys)

    assert refusal(answer) == UNAUTHORIZED
    assert (line["outcome"], line["reason"]) == ("unauthorized", reason)
    assert "tenant" not in line


def test_a_401_for_a_tenants_credential_logs_why_and_answers_the_same(
    app_client: Any, tenant: Tenant, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    retired = f"retired-{uuid.uuid4().hex}"
    db.document(f"tenants/{tenant.id}/api_credentials/retired").set(
        {"name": "retired", "token_sha256": credentials.hash_token(retired), "enabled": False}
    )
    # The name tried is logged as a path is: nine digits in a row are masked, as a number's
    # are. The unknown name has letters only, so it is logged as it is; the tenant's own id
    # (random hex) may have such a run.
    nobody = "t" + uuid.uuid4().hex[:16].translate(str.maketrans("0123456789", "ghijklmnop"))
    shown = clean_path(tenant.id)
    assert shown == tenant.id or "*" in shown
    cases = [
        ("unknown tenant", nobody, tenant.token, nobody),
        ("disabled credential", tenant.id, retired, shown),
        ("bad token (no credential of the tenant matches)", tenant.id, "wrong-token", shown),
    ]
    for reason, name, token, logged in cases:
        capsys.readouterr()
        answer = app_client.post(SMS_PATH, json=SEED_BODY, headers=basic(name, token))
        line = only_line(capsys)

        assert refusal(answer) == UNAUTHORIZED, reason
        assert (line["outcome"], line["reason"], line["claimed_tenant"]) == (
            "unauthorized",
            reason,
            logged,
        )
        assert "tenant" not in line
        assert token not in json.dumps(line)


@pytest.mark.parametrize("shape", ["as issued", "subdomain-shaped"])
def test_a_token_given_as_the_username_is_not_logged(
    app_client: Any, tenant: Tenant, capsys: pytest.CaptureFixture[str], shape: str
) -> None:
    # An issued token is base64url: it passes for a subdomain unless it starts or ends
    # with "-" or "_". The second shape always passes, so the lookup's line is checked too.
    username = tenant.token
    if shape == "subdomain-shaped":
        username = "k" + username.replace("_", "x").replace("-", "x") + "k"
    capsys.readouterr()
    answer = app_client.post(SMS_PATH, json=SEED_BODY, headers=basic(username, tenant.id))
    line = only_line(capsys)

    assert refusal(answer) == UNAUTHORIZED
    shaped = SUBDOMAIN.fullmatch(username) is not None
    assert shaped or shape == "as issued"
    malformed = "malformed Authorization: the username is no tenant subdomain"
    assert line["reason"] == ("unknown tenant" if shaped else malformed)
    assert username not in json.dumps(line)


@pytest.mark.parametrize(
    "case",  # whether the tenant exists, the token matches, the credential is enabled; why not
    [
        (False, True, True, "unknown tenant"),
        (True, True, False, "disabled credential"),
        (True, False, True, "bad token (no credential of the tenant matches)"),
        (True, True, True, None),
    ],
)
def test_signing_in_reads_both_documents_whatever_the_first_finds(
    db: firestore.Client,
    make_tenant: Callable[..., Tenant],
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[bool, bool, bool, str | None],
) -> None:
    tenant_exists, token_matches, enabled, reason = case
    tenant = make_tenant()
    if not enabled:
        db.document(f"tenants/{tenant.id}/api_credentials/default").update({"enabled": False})
    name = tenant.id if tenant_exists else f"t{uuid.uuid4().hex[:16]}"
    token = tenant.token if token_matches else "wrong-token"
    store = FirestoreStore(db, Settings(project=PROJECT))
    reads: list[str] = []

    def counted(call: str) -> Callable[[Any], Any]:
        real = getattr(store.db, call)

        def read(arg: Any) -> Any:
            reads.append(call)
            return real(arg)

        return read

    for call in ("get", "stream"):
        monkeypatch.setattr(store.db, call, counted(call))

    signed = store.tenants.sign_in(name, credentials.hash_token(token))

    assert reads == ["get", "stream"]  # an unknown tenant answers no sooner
    assert signed.reason == reason
    assert (signed.tenant is not None) is (reason is None)
    assert store.authenticate(name, credentials.hash_token(token)) == signed.tenant


WEBHOOK_TOKEN = "webhook-auth-token"
BASE = "https://sms.example.com"
STATUS = SMS_PATH + "/status"
INBOUND = SMS_PATH + "/inbound"
FORBIDDEN = (403, {"message": "Forbidden"})
MISMATCH = (
    "X-Twilio-Signature matches none of the URLs checked: Twilio called another URL than "
    "SMS_PUBLIC_BASE_URL makes, or signed with another TWILIO_AUTH_TOKEN"
)


def function(**settings: Any) -> Any:
    """The function in-process, with these settings: a Flask test client."""
    chosen = Settings(project=PROJECT, publish_events=False, config_cache_seconds=0, **settings)
    return in_process(chosen, MovableClock()).test_client()


@pytest.fixture
def hooks(emulator_host: str) -> Any:
    """The function with Twilio's webhooks configured (and the log carrier)."""
    return function(twilio_auth_token=WEBHOOK_TOKEN, public_base_url=BASE)


CALLBACK = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}


ELSEWHERE = "https://elsewhere.example.com"


@pytest.mark.parametrize(
    ("sent", "reason", "checked"),  # sent: the path and the signature (None: no header)
    [
        ((STATUS, None), "no X-Twilio-Signature", [BASE + STATUS]),
        ((STATUS, ""), "no X-Twilio-Signature", [BASE + STATUS]),
        ((STATUS, sign(ELSEWHERE + STATUS, CALLBACK, WEBHOOK_TOKEN)), MISMATCH, [BASE + STATUS]),
        ((STATUS, sign(BASE + STATUS, CALLBACK, "another-token")), MISMATCH, [BASE + STATUS]),
        ((STATUS + "/?x=1", "forged"), MISMATCH, [BASE + STATUS + "?x=1", BASE + STATUS + "/?x=1"]),
        ((INBOUND, "forged"), MISMATCH, [BASE + INBOUND]),
    ],
)
def test_a_webhook_403_logs_why_and_the_urls_the_signature_was_checked_against(
    hooks: Any,
    capsys: pytest.CaptureFixture[str],
    sent: tuple[str, str | None],
    reason: str,
    checked: list[str],
) -> None:
    path, signature = sent
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    capsys.readouterr()
    answer = hooks.post(path, data=CALLBACK, headers=headers)
    line = only_line(capsys)

    assert (answer.status_code, answer.get_json()) == FORBIDDEN
    assert (line["outcome"], line["reason"], line["checked_urls"]) == ("forbidden", reason, checked)


def test_a_webhook_signed_as_twilio_signs_it_is_not_refused(
    hooks: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control of the test above: the same form, signed over the URL it was sent to."""
    signature = sign(BASE + STATUS, CALLBACK, WEBHOOK_TOKEN)
    capsys.readouterr()
    answer = hooks.post(STATUS, data=CALLBACK, headers={"X-Twilio-Signature": signature})

    assert answer.status_code == 204  # a message unknown here
    assert only_line(capsys)["outcome"] == "status_unknown"


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({}, "TWILIO_AUTH_TOKEN and no SMS_PUBLIC_BASE_URL"),
        ({"twilio_auth_token": WEBHOOK_TOKEN}, "SMS_PUBLIC_BASE_URL"),
        ({"public_base_url": BASE}, "TWILIO_AUTH_TOKEN"),
    ],
)
def test_a_webhook_403_of_a_function_not_set_up_for_twilio_logs_what_is_missing(
    emulator_host: str, capsys: pytest.CaptureFixture[str], settings: Any, missing: str
) -> None:
    client = function(**settings)
    signature = sign(BASE + STATUS, CALLBACK, WEBHOOK_TOKEN)
    capsys.readouterr()
    answer = client.post(STATUS, data=CALLBACK, headers={"X-Twilio-Signature": signature})
    line = only_line(capsys)

    assert (answer.status_code, answer.get_json()) == FORBIDDEN
    assert line["outcome"] == "forbidden"
    assert line["reason"] == f"webhooks are not configured: no {missing}"
    assert "checked_urls" not in line


def test_a_webhook_403_for_a_form_that_is_not_text_logs_why(
    hooks: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    answer = hooks.post(STATUS, data=b"MessageSid=\xff", headers={"X-Twilio-Signature": "x"})
    line = only_line(capsys)

    assert (answer.status_code, answer.get_json()) == FORBIDDEN
    assert (line["outcome"], line["reason"]) == ("forbidden", "the form is not UTF-8 text")


# ---- the carrier and the backend, when they fail ------------------------------------------


def chat_and_messages(
    db: firestore.Client, tenant: Tenant, chat_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    chat = db.document(f"tenants/{tenant.id}/chats/{chat_id}").get().to_dict() or {}
    messages = db.collection(f"tenants/{tenant.id}/chats/{chat_id}/messages").stream()
    return chat, [message.to_dict() or {} for message in messages]


def test_an_unreachable_carrier_is_logged_with_the_tenant_the_chat_the_trace_and_its_host(
    tenant: Tenant, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    carrier = TwilioCarrier("AC" + "0" * 32, "token", api_base_url=f"http://{host}")
    settings = Settings(project=PROJECT, publish_events=False, config_cache_seconds=0)
    client = in_process(settings, MovableClock(), carrier=carrier).test_client()
    headers = {**tenant.headers, "X-Cloud-Trace-Context": TRACE}
    capsys.readouterr()
    answer = client.post(SMS_PATH, json=SEED_BODY, headers=headers)
    found = lines(capsys)
    line = request_line(found)
    [warning] = other_lines(found)

    assert answer.status_code == 502
    assert (line["severity"], line["outcome"], line["tenant"]) == (
        "WARNING",
        "sms_not_sent",
        tenant.id,
    )
    assert line["carrier_unreachable"] == host
    assert line["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE[:32]}"
    assert warning["severity"] == "WARNING"
    assert warning["message"].startswith("carrier unreachable: ")
    assert host in warning["message"]
    assert (warning["tenant"], warning["chat_id"], warning["carrier"], warning["carrier_host"]) == (
        tenant.id,
        line["chat_id"],
        "twilio",
        host,
    )
    chat, [message] = chat_and_messages(db, tenant, line["chat_id"])
    assert (chat["status"], message["status"]) == ("failed", "failed")  # nothing was sent


def test_twilio_refusing_the_accounts_credentials_is_an_error_that_says_what_to_check(
    tenant: Tenant,
    standin: TwilioStandIn,
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    carrier = TwilioCarrier(standin.account_sid, "not-the-auth-token", api_base_url=standin.url)
    settings = Settings(project=PROJECT, publish_events=False, config_cache_seconds=0)
    client = in_process(settings, MovableClock(), carrier=carrier).test_client()
    capsys.readouterr()
    answer = client.post(SMS_PATH, json=SEED_BODY, headers=tenant.headers)
    found = lines(capsys)
    line = request_line(found)
    [error] = other_lines(found)

    assert (answer.status_code, answer.get_json()) == (502, {"message": "SMS could not be sent"})
    assert error["severity"] == "ERROR"
    assert error["message"] == (
        "Twilio refused the account's credentials (20003): check TWILIO_ACCOUNT_SID and "
        "TWILIO_AUTH_TOKEN"
    )
    assert error["carrier_host"] == standin.url.split("://", 1)[1]
    assert (line["outcome"], line["carrier_error"], line["carrier_problem"]) == (
        "sms_not_sent",
        "20003",
        "credentials refused",
    )
    assert "not-the-auth-token" not in json.dumps(found)
    # Nothing was sent: refused as any refusal is (SPEC 10.3), the message failed with
    # Twilio's code and its session ended failed, freeing the consumer.
    chat, [message] = chat_and_messages(db, tenant, line["chat_id"])
    assert (chat["status"], chat["fail_reason"]) == ("failed", "unknown")
    assert (message["status"], message["error_code"]) == ("failed", "20003")


def test_a_firestore_outage_is_a_503_whose_line_says_what_could_not_be_reached(
    emulator_host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", unreachable)
    client = function(request_deadline_seconds=1.5)
    capsys.readouterr()
    answer = client.post(SMS_PATH, json=SEED_BODY, headers=basic("acme", "token"))
    line = only_line(capsys)

    assert answer.status_code == 503
    assert (line["severity"], line["outcome"]) == ("WARNING", "unavailable")
    where = f"Firestore at {unreachable} (the emulator), project {PROJECT}"
    assert line["error"].startswith(f"{where} could not be used: ")


# ---- replies ------------------------------------------------------------------------------


def test_a_stop_reply_logs_its_opt_out_and_the_chat_it_opened(
    hooks: Any,
    make_tenant: Callable[..., Tenant],
    db: firestore.Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    number = f"+1628555{3000 + uuid.uuid4().int % 1000}"
    tenant = make_tenant(outbound_numbers={number: {"sms_enabled": True}}, index_numbers=True)
    consumer = f"+1415555{3000 + uuid.uuid4().int % 1000}"

    def reply(text: str) -> dict[str, Any]:
        form = {"MessageSid": "SM" + uuid.uuid4().hex, "From": consumer, "To": number, "Body": text}
        signature = sign(BASE + INBOUND, form, WEBHOOK_TOKEN)
        capsys.readouterr()
        assert (
            hooks.post(INBOUND, data=form, headers={"X-Twilio-Signature": signature}).status_code
            == 200
        )
        return request_line(lines(capsys))

    stop, start = reply("STOP"), reply(" start ")

    [chat] = [snap.to_dict() or {} for snap in db.collection(f"tenants/{tenant.id}/chats").stream()]
    assert (stop["outcome"], stop["opt_out"], stop["chat_id"]) == (
        "reply_opened",
        "keyword",
        chat["id"],
    )
    assert (start["outcome"], start["opt_in"], start["chat_id"]) == (
        "reply_joined",
        "keyword",
        chat["id"],
    )
    assert stop["tenant"] == start["tenant"] == tenant.id
    assert "opt_in" not in stop
    assert "opt_out" not in start
