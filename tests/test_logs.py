"""SPEC 10.4: one structured JSON line per request, with trace correlation and nothing secret."""

from __future__ import annotations

import json
import re
from typing import Any

import flask
import phonenumbers
import pytest

from conftest import PROJECT, SEED_BODY, SMS_PATH, Tenant, basic
from sms import bootstrap
from sms.api import Api
from sms.config import Settings
from sms.logs import mask, trace_fields


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def only_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    [line] = lines(capsys)
    return line


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

    def authenticate(self, tenant_id: str, token_sha256: str) -> None:
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
