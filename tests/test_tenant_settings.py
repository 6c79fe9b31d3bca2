"""Settings written straight into a tenant's document are judged, not trusted.

A value the function cannot use (the wrong type, negative, huge, a malformed template)
falls back to the field's documented default, and the operator reads why in an ERROR line.
No tenant document, whatever it holds, makes a request answer 5xx.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SEED_BODY, SMS_PATH, Tenant, examples
from sms import tenants
from sms.devtools.seed import DEMO_AGENT


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("session_timeout_seconds", 10**12),
        ("session_timeout_seconds", -5),
        ("session_timeout_seconds", 0),
        ("session_timeout_seconds", "3600"),
        ("session_timeout_seconds", 3600.5),
        ("session_timeout_seconds", True),
        ("lang", 7),
        ("lang", "x" * 5000),
        ("lang", ""),
        ("allowed_regions", "US"),
        ("allowed_regions", []),
        ("allowed_regions", ["US", 1]),
        ("allowed_regions", ["XX"]),
        ("ticket_url_template", 42),
        ("ticket_url_template", "javascript:alert(1)/{ticket_id}"),
        ("ticket_url_template", "https://crm.example.com/" + "a" * 3000),
        ("rate_limit_per_second", -1),
        ("rate_limit_per_second", "10"),
        ("rate_limit_per_second", 10**15),
        ("sms_enabled", "true"),
    ],
)
def test_a_value_that_cannot_be_used_gives_the_default_and_names_itself(
    field: str, value: Any
) -> None:
    defaults = tenants.judge("t", {})
    judged = tenants.judge("t", {field: value})

    [problem] = judged.problems
    assert problem.startswith(f"{field}=")
    expected = {"sms_enabled": False, "allowed_regions": ("US",)}.get(field)
    attribute = "ticket_url_template" if field == "ticket_url_template" else field
    assert getattr(judged, attribute) == (
        expected if expected is not None else getattr(defaults, attribute)
    )


def test_good_values_are_used_as_they_are() -> None:
    judged = tenants.judge(
        "t",
        {
            "sms_enabled": True,
            "outbound_sms_enabled": True,
            "lang": "pt-BR",
            "session_timeout_seconds": 3600,
            "allowed_regions": ["us", "CA"],
            "ticket_url_template": "https://crm.example.com/t/{ticket_id}",
            "rate_limit_per_second": 10,
        },
    )

    assert judged.problems == ()
    assert (judged.lang, judged.session_timeout_seconds) == ("pt-BR", 3600)
    assert (judged.allowed_regions, judged.rate_limit_per_second) == (("US", "CA"), 10)


def test_a_huge_session_timeout_no_longer_answers_500_and_is_logged_for_the_operator(
    app_client: Any,
    make_tenant: Callable[..., Tenant],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True,
                  "session_timeout_seconds": 10**12},
        agents={1: dict(DEMO_AGENT)},
    )  # fmt: skip
    capsys.readouterr()
    first = app_client.post(SMS_PATH, json={**SEED_BODY, "agentId": 1}, headers=tenant.headers)
    second = app_client.post(SMS_PATH, json={**SEED_BODY, "agentId": 1}, headers=tenant.headers)
    chat = first.get_json()["id"]
    read = app_client.get(f"/apps/api/v1/chats/{chat}", headers=tenant.headers)
    ended = app_client.patch(
        f"/apps/api/v1/chats/{chat}", json={"status": "finished"}, headers=tenant.headers
    )

    assert [first.status_code, second.status_code, read.status_code, ended.status_code] == [
        200,
        200,
        200,
        200,
    ]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line[:1] == "{"]
    errors = [line for line in lines if line["severity"] == "ERROR"]
    assert errors, lines
    assert all("session_timeout_seconds=1000000000000" in line["message"] for line in errors)
    assert all(line["tenant"] == tenant.id for line in errors)


# ---- any tenant document at all ---------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.sampled_from([0, 1, -1, 10**12, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.sampled_from(["", "{ticket_id}", "https://x/{ticket_id}", "{", "%s", "x" * 3000]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), scalars, max_size=3),
)
FIELDS = [
    "sms_enabled", "outbound_sms_enabled", "lang", "session_timeout_seconds",
    "allowed_regions", "ticket_url_template", "rate_limit_per_second",
]  # fmt: skip
documents = st.fixed_dictionaries(
    {"sms_enabled": st.just(True), "outbound_sms_enabled": st.just(True)},
    optional=dict.fromkeys(FIELDS[2:], values),
)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents)
def test_no_tenant_document_makes_any_request_answer_5xx(
    app_client: Any, db: firestore.Client, document: dict[str, Any]
) -> None:
    tenant = Tenant(id=f"t{uuid.uuid4().hex[:16]}", settings=document, agents={1: dict(DEMO_AGENT)})
    tenant.write(db)
    body = {**SEED_BODY, "agentId": 1, "ticket_id": "T-1"}

    answers = [app_client.post(SMS_PATH, json=body, headers=tenant.headers) for _ in range(2)]
    chat = (answers[0].get_json() or {}).get("id", 1)
    answers.append(app_client.get(f"/apps/api/v1/chats/{chat}", headers=tenant.headers))
    answers.append(app_client.get(f"/apps/api/v1/chats/{chat}/messages", headers=tenant.headers))
    answers.append(
        app_client.patch(
            f"/apps/api/v1/chats/{chat}", json={"status": "finished"}, headers=tenant.headers
        )
    )

    for answer in answers:
        assert answer.status_code < 500, (document, answer.status_code, answer.get_json())
        assert answer.is_json
