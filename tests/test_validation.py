"""The 400 answers of SPEC section 4 through the HTTP function, their precedence, and that
a refused request writes nothing. Tenants are configured only through the section 7 documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from conftest import SEED_BODY, SMS_PATH, count_documents
from sms.devtools.seed import DEMO_AGENT

BODY_NOT_OBJECT = "request body must be a JSON object"
CHAT_TYPE_REQUIRED = "chat_type needs to be provided"
CHAT_TYPE_INVALID = "valid chat type needs to be provided"
SMS_DISABLED = "SMS is not enabled"
OUTBOUND_SMS_DISABLED = "Outbound SMS is not enabled"
END_USER_REQUIRED = "end_user_number is required"
END_USER_INVALID = "end_user_number is invalid"
FOREIGN = "Non-US phone number not allowed"
OUTBOUND_REQUIRED = "outbound_number is required"
OUTBOUND_INVALID = "outbound_number is invalid"
OUTBOUND_NOT_FOUND = "outbound_number is not found"
MESSAGE_REQUIRED = "message is required"
MESSAGE_TOO_LONG = "message is too long"
TICKET_INVALID = "ticket_id is invalid"
AGENT_INVALID = "agent is invalid"
AGENT_NOT_FOUND = "agent is not found"
ACTIVE_SESSION = "Outbound SMS failed. Consumer is already in an active SMS session."

SMS_OFF = {"sms_enabled": False, "outbound_sms_enabled": True}
OUTBOUND_OFF = {"sms_enabled": True, "outbound_sms_enabled": False}
CANADA = "+1 604 253 1234"
UNKNOWN_US_NUMBER = "+1 212-555-0123"  # valid, but not one of the tenant's numbers


def body(*drop: str, **changes: Any) -> dict[str, Any]:
    """The seed's request body, with some fields removed or changed."""
    result = {**SEED_BODY, **changes}
    for name in drop:
        result.pop(name)
    return result


@pytest.fixture
def refused(send: Callable[..., Any], db: Any, tenant: Any) -> Callable[..., None]:
    """Assert a body answers exactly 400 {"message": text} and writes nothing."""

    def check(payload: Any, text: str, as_: Any = None) -> None:
        who = as_ or tenant
        before = count_documents(db, who.id)
        response = send(payload, as_=who)
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.get_json() == {"message": text}
        assert response.mimetype == "application/json"
        assert count_documents(db, who.id) == before

    return check


# ---- every row of SPEC section 4, one at a time -------------------------------------


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        pytest.param([SEED_BODY], BODY_NOT_OBJECT, id="1-array"),
        pytest.param("lorem ipsum", BODY_NOT_OBJECT, id="1-string"),
        pytest.param(body("chat_type"), CHAT_TYPE_REQUIRED, id="2-absent"),
        pytest.param(body(chat_type=None), CHAT_TYPE_REQUIRED, id="2-null"),
        pytest.param(body(chat_type=""), CHAT_TYPE_REQUIRED, id="2-empty"),
        pytest.param(body(chat_type="In-app"), CHAT_TYPE_INVALID, id="3-unknown"),
        pytest.param(body(chat_type=1), CHAT_TYPE_INVALID, id="3-number"),
        pytest.param(body(chat_type=["SMS"]), CHAT_TYPE_INVALID, id="3-list"),
        pytest.param(body("end_user_number"), END_USER_REQUIRED, id="6-absent"),
        pytest.param(body(end_user_number=None), END_USER_REQUIRED, id="6-null"),
        pytest.param(body(end_user_number=""), END_USER_REQUIRED, id="6-empty"),
        pytest.param(body(end_user_number="12345"), END_USER_INVALID, id="7-short"),
        pytest.param(body(end_user_number=4155550100), END_USER_INVALID, id="7-number"),
        pytest.param(body(end_user_number="+1 415-555-0100 ext. 9"), END_USER_INVALID, id="7-ext"),
        pytest.param(body(end_user_number="+82 000-000-0000"), FOREIGN, id="8-end-user-kr"),
        pytest.param(body(end_user_number=CANADA), FOREIGN, id="8-end-user-ca"),
        pytest.param(body(outbound_number="+82 000-000-0000"), FOREIGN, id="8-outbound-kr"),
        pytest.param(body("outbound_number"), OUTBOUND_REQUIRED, id="9-absent"),
        pytest.param(body(outbound_number=None), OUTBOUND_REQUIRED, id="9-null"),
        pytest.param(body(outbound_number=""), OUTBOUND_REQUIRED, id="9-empty"),
        pytest.param(body(outbound_number="12345"), OUTBOUND_INVALID, id="10-short"),
        pytest.param(body(outbound_number=16285550199), OUTBOUND_INVALID, id="10-number"),
        pytest.param(body(outbound_number=UNKNOWN_US_NUMBER), OUTBOUND_NOT_FOUND, id="11-unknown"),
        pytest.param(body("message"), MESSAGE_REQUIRED, id="12-absent"),
        pytest.param(body(message=None), MESSAGE_REQUIRED, id="12-null"),
        pytest.param(body(message=""), MESSAGE_REQUIRED, id="12-empty"),
        pytest.param(body(message=" \n\t "), MESSAGE_REQUIRED, id="12-blank"),
        pytest.param(body(message=42), MESSAGE_REQUIRED, id="12-number"),
        pytest.param(body(message="x" * 1601), MESSAGE_TOO_LONG, id="13"),
        pytest.param(body(ticket_id="t" * 256), TICKET_INVALID, id="14-long"),
        pytest.param(body(ticket_id=5006), TICKET_INVALID, id="14-number"),
        pytest.param(body(agentId=True), AGENT_INVALID, id="15-bool"),
        pytest.param(body(agentId=1.5), AGENT_INVALID, id="15-float"),
        pytest.param(body(agent_id="one"), AGENT_INVALID, id="15-word"),
        pytest.param(body(agentEmail=7), AGENT_INVALID, id="15-email-number"),
        pytest.param(body(agent_id=1, agentId=2), AGENT_INVALID, id="15-ids-disagree"),
        pytest.param(
            body(agent_email="john.doe@foo.com", agentEmail="jane@foo.com"),
            AGENT_INVALID,
            id="15-emails-disagree",
        ),
        pytest.param(body(agentId=999), AGENT_NOT_FOUND, id="16-id"),
        pytest.param(body(agent_id="999"), AGENT_NOT_FOUND, id="16-digit-string"),
        pytest.param(body(agentEmail="nobody@foo.com"), AGENT_NOT_FOUND, id="16-email"),
    ],
)
def test_each_broken_rule_returns_400_with_its_message(
    refused: Callable[..., None], payload: Any, text: str
) -> None:
    refused(payload, text)


@pytest.mark.parametrize("settings", [SMS_OFF, {"outbound_sms_enabled": True}])
def test_tenant_with_sms_off_or_unset_returns_400_sms_not_enabled(
    make_tenant: Callable[..., Any], refused: Callable[..., None], settings: dict[str, Any]
) -> None:
    refused(body(), SMS_DISABLED, as_=make_tenant(settings=settings))


@pytest.mark.parametrize("settings", [OUTBOUND_OFF, {"sms_enabled": True}])
def test_tenant_with_outbound_sms_off_or_unset_returns_400_outbound_not_enabled(
    make_tenant: Callable[..., Any], refused: Callable[..., None], settings: dict[str, Any]
) -> None:
    refused(body(), OUTBOUND_SMS_DISABLED, as_=make_tenant(settings=settings))


def test_outbound_number_with_sms_disabled_is_not_found(
    make_tenant: Callable[..., Any], refused: Callable[..., None]
) -> None:
    tenant = make_tenant(outbound_numbers={"+16285550199": {"sms_enabled": False}})
    refused(body(), OUTBOUND_NOT_FOUND, as_=tenant)


def test_another_tenants_outbound_number_is_not_found(
    make_tenant: Callable[..., Any], refused: Callable[..., None]
) -> None:
    tenant = make_tenant(outbound_numbers={"+12125550123": {"sms_enabled": True}})
    refused(body(), OUTBOUND_NOT_FOUND, as_=tenant)


def test_outbound_number_document_without_sms_enabled_may_send(
    make_tenant: Callable[..., Any], send: Callable[..., Any]
) -> None:
    tenant = make_tenant(outbound_numbers={"+16285550199": {}})
    response = send(body(), as_=tenant)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_consumer_in_an_active_session_returns_400_and_writes_nothing(
    send: Callable[..., Any], refused: Callable[..., None]
) -> None:
    assert send().status_code == 200
    refused(body(), ACTIVE_SESSION)


def test_active_session_is_per_consumer_whatever_the_outbound_number(
    make_tenant: Callable[..., Any], send: Callable[..., Any], refused: Callable[..., None]
) -> None:
    tenant = make_tenant(outbound_numbers={"+16285550199": {}, "+16285550198": {}})
    assert send(body(), as_=tenant).status_code == 200
    refused(body(outbound_number="+1 628-555-0198"), ACTIVE_SESSION, as_=tenant)


def test_active_session_is_found_whatever_the_format_of_the_consumer_number(
    send: Callable[..., Any], refused: Callable[..., None]
) -> None:
    assert send(body(end_user_number="(415) 555-0100")).status_code == 200
    refused(body(end_user_number="4155550100"), ACTIVE_SESSION)


# ---- allowed regions ------------------------------------------------------------------


def test_canadian_end_user_number_is_refused_as_non_us(refused: Callable[..., None]) -> None:
    refused(body(end_user_number=CANADA), FOREIGN)


def test_canadian_end_user_number_is_accepted_by_a_tenant_allowing_canada(
    make_tenant: Callable[..., Any], send: Callable[..., Any]
) -> None:
    tenant = make_tenant(
        settings={
            "sms_enabled": True,
            "outbound_sms_enabled": True,
            "allowed_regions": ["US", "CA"],
        }
    )
    response = send(body(end_user_number=CANADA), as_=tenant)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outbound_number"] == "+16285550199"


def test_us_number_is_foreign_for_a_tenant_allowing_only_canada(
    make_tenant: Callable[..., Any], refused: Callable[..., None]
) -> None:
    tenant = make_tenant(
        settings={"sms_enabled": True, "outbound_sms_enabled": True, "allowed_regions": ["CA"]},
        outbound_numbers={"+16045550199": {}},
    )
    refused(body(outbound_number="+1 604 555 0199"), FOREIGN, as_=tenant)


# ---- precedence: two rules broken at once, the first in the table answers -------------


@pytest.mark.parametrize(
    ("settings", "payload", "text"),
    [
        pytest.param(SMS_OFF, ["not", "an", "object"], BODY_NOT_OBJECT, id="1-before-4"),
        pytest.param(SMS_OFF, body("chat_type"), CHAT_TYPE_REQUIRED, id="2-before-4"),
        pytest.param(SMS_OFF, body(chat_type="In-app"), CHAT_TYPE_INVALID, id="3-before-4"),
        pytest.param(OUTBOUND_OFF, body(chat_type=None), CHAT_TYPE_REQUIRED, id="2-before-5"),
        pytest.param(
            {"sms_enabled": False, "outbound_sms_enabled": False},
            body(),
            SMS_DISABLED,
            id="4-before-5",
        ),
        pytest.param(SMS_OFF, body("end_user_number"), SMS_DISABLED, id="4-before-6"),
        pytest.param(SMS_OFF, body(message=""), SMS_DISABLED, id="4-before-12"),
        pytest.param(
            OUTBOUND_OFF, body(end_user_number="12345"), OUTBOUND_SMS_DISABLED, id="5-before-7"
        ),
        pytest.param(
            OUTBOUND_OFF,
            body(outbound_number=UNKNOWN_US_NUMBER),
            OUTBOUND_SMS_DISABLED,
            id="5-before-11",
        ),
    ],
)
def test_tenant_switches_rank_between_chat_type_and_the_fields(
    make_tenant: Callable[..., Any],
    refused: Callable[..., None],
    settings: dict[str, Any],
    payload: Any,
    text: str,
) -> None:
    refused(payload, text, as_=make_tenant(settings=settings))


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        pytest.param(body("chat_type", "message"), CHAT_TYPE_REQUIRED, id="2-before-12"),
        pytest.param(body(chat_type="x", end_user_number=""), CHAT_TYPE_INVALID, id="3-before-6"),
        pytest.param(
            body("end_user_number", "outbound_number"), END_USER_REQUIRED, id="6-before-9"
        ),
        pytest.param(
            body("end_user_number", outbound_number="+82 000-000-0000"),
            END_USER_REQUIRED,
            id="6-before-8",
        ),
        pytest.param(
            body(end_user_number="12345", outbound_number="+82 000-000-0000"),
            END_USER_INVALID,
            id="7-before-8",
        ),
        pytest.param(
            body(end_user_number="12345", outbound_number=UNKNOWN_US_NUMBER),
            END_USER_INVALID,
            id="7-before-11",
        ),
        pytest.param(body("outbound_number", end_user_number=CANADA), FOREIGN, id="8-before-9"),
        pytest.param(
            body(end_user_number=CANADA, outbound_number="12345"), FOREIGN, id="8-before-10"
        ),
        pytest.param(
            body("message", outbound_number="+82 000-000-0000"), FOREIGN, id="8-outbound-before-12"
        ),
        pytest.param(body(outbound_number="", message=""), OUTBOUND_REQUIRED, id="9-before-12"),
        pytest.param(
            body(outbound_number="12345", message=None), OUTBOUND_INVALID, id="10-before-12"
        ),
        pytest.param(
            body("message", outbound_number=UNKNOWN_US_NUMBER),
            OUTBOUND_NOT_FOUND,
            id="11-before-12",
        ),
        pytest.param(
            body(outbound_number=UNKNOWN_US_NUMBER, agentId=True),
            OUTBOUND_NOT_FOUND,
            id="11-before-15",
        ),
        pytest.param(
            body(outbound_number=UNKNOWN_US_NUMBER, agentId=999),
            OUTBOUND_NOT_FOUND,
            id="11-before-16",
        ),
        pytest.param(body(message="x" * 1601, ticket_id=7), MESSAGE_TOO_LONG, id="13-before-14"),
        pytest.param(body("message", agentId=True), MESSAGE_REQUIRED, id="12-before-15"),
        pytest.param(body(message=" ", agentId=999), MESSAGE_REQUIRED, id="12-before-16"),
        pytest.param(body(ticket_id=["x"], agentId="one"), TICKET_INVALID, id="14-before-15"),
        pytest.param(body(ticket_id="t" * 256, agentId=999), TICKET_INVALID, id="14-before-16"),
        pytest.param(
            body(agentId=True, agentEmail="nobody@foo.com"), AGENT_INVALID, id="15-before-16"
        ),
        pytest.param(body(agent_id=998, agentId=999), AGENT_INVALID, id="15-disagree-before-16"),
    ],
)
def test_when_two_rules_fail_the_first_in_precedence_answers(
    refused: Callable[..., None], payload: Any, text: str
) -> None:
    refused(payload, text)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        pytest.param(body(message=""), MESSAGE_REQUIRED, id="12-before-17"),
        pytest.param(body(ticket_id=12), TICKET_INVALID, id="14-before-17"),
        pytest.param(body(agentId=False), AGENT_INVALID, id="15-before-17"),
        pytest.param(body(agentId=999), AGENT_NOT_FOUND, id="16-before-17"),
        pytest.param(
            body(outbound_number=UNKNOWN_US_NUMBER), OUTBOUND_NOT_FOUND, id="11-before-17"
        ),
    ],
)
def test_rules_before_17_answer_for_a_consumer_in_an_active_session(
    send: Callable[..., Any], refused: Callable[..., None], payload: Any, text: str
) -> None:
    assert send().status_code == 200
    refused(payload, text)


# ---- the seed's error examples ----------------------------------------------------------

SEED_ERRORS = [
    (None, body("chat_type"), CHAT_TYPE_REQUIRED),
    (None, body(chat_type="In-app"), CHAT_TYPE_INVALID),
    (SMS_OFF, body(), SMS_DISABLED),
    (OUTBOUND_OFF, body(), OUTBOUND_SMS_DISABLED),
    (None, body("end_user_number"), END_USER_REQUIRED),
    (None, body(end_user_number="12345"), END_USER_INVALID),
    (None, body(outbound_number="+82 000-000-0000"), FOREIGN),
    (None, body("outbound_number"), OUTBOUND_REQUIRED),
    (None, body(outbound_number="12345"), OUTBOUND_INVALID),
    (None, body(message=""), MESSAGE_REQUIRED),
]


@pytest.mark.parametrize(
    ("settings", "payload", "text"), SEED_ERRORS, ids=[t for _, _, t in SEED_ERRORS]
)
def test_seed_error_examples_answer_as_documented(
    make_tenant: Callable[..., Any],
    refused: Callable[..., None],
    settings: dict[str, Any] | None,
    payload: dict[str, Any],
    text: str,
) -> None:
    tenant = make_tenant(settings=settings) if settings else None
    refused(payload, text, as_=tenant)


def test_seed_not_found_example_for_a_tenant_without_that_number(
    make_tenant: Callable[..., Any], refused: Callable[..., None]
) -> None:
    refused(body(), OUTBOUND_NOT_FOUND, as_=make_tenant(outbound_numbers={}))


# ---- accepted formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    "outbound",
    ["+1 628-555-0199", "(628) 555-0199", "6285550199", "+16285550199", "1 628 555 0199"],
)
def test_outbound_number_in_any_common_format_is_returned_as_e164(
    send: Callable[..., Any], outbound: str
) -> None:
    response = send(body(outbound_number=outbound))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["outbound_number"] == "+16285550199"


@pytest.mark.parametrize("end_user", ["+1 415-555-0100", "(415) 555-0100", "4155550100"])
def test_end_user_number_in_any_common_format_is_accepted(
    send: Callable[..., Any], end_user: str
) -> None:
    response = send(body(end_user_number=end_user))
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("chat_type", ["Messaging (SMS)", "Messaging (API)", "SMS"])
def test_every_allowed_chat_type_is_answered_as_messaging_sms(
    send: Callable[..., Any], chat_type: str
) -> None:
    response = send(body(chat_type=chat_type))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["chat_type"] == "Messaging (SMS)"


def test_message_of_exactly_1600_characters_is_accepted(send: Callable[..., Any]) -> None:
    assert send(body(message="x" * 1600)).status_code == 200


def test_ticket_id_of_exactly_255_characters_is_accepted(send: Callable[..., Any]) -> None:
    response = send(body(ticket_id="t" * 255))
    assert response.status_code == 200
    assert response.get_json()["out_ticket_id"] == "t" * 255


@pytest.mark.parametrize(
    "agent_fields",
    [
        {"agentId": 1},
        {"agent_id": "1"},
        {"agentEmail": "JOHN.DOE@foo.com"},
        {"agent_id": 1, "agentId": "1"},
    ],
)
def test_agent_named_by_either_field_is_assigned(
    send: Callable[..., Any], agent_fields: dict[str, Any]
) -> None:
    response = send(body(**agent_fields))
    assert response.status_code == 200, response.get_data(as_text=True)
    document = response.get_json()
    assert document["status"] == "assigned"
    assert document["agent_info"] == {"id": 1, **DEMO_AGENT}


def test_unknown_fields_are_ignored(send: Callable[..., Any]) -> None:
    response = send(body(priority="high", extra={"nested": [1, 2]}))
    assert response.status_code == 200, response.get_data(as_text=True)


# ---- an agent named twice -----------------------------------------------------------------

JANE = {**DEMO_AGENT, "agent_number": 10, "email": "jane.roe@foo.com", "name": "Jane Roe"}


def test_agent_id_and_email_of_two_different_agents_return_agent_invalid(
    make_tenant: Callable[..., Any], refused: Callable[..., None]
) -> None:
    tenant = make_tenant(agents={1: dict(DEMO_AGENT), 2: JANE})
    refused(body(agentId=1, agentEmail="jane.roe@foo.com"), AGENT_INVALID, as_=tenant)


def test_agent_id_and_email_of_the_same_agent_assign_that_agent(send: Callable[..., Any]) -> None:
    response = send(body(agentId=1, agentEmail="John.Doe@foo.com"))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["agent_info"]["id"] == 1


def test_unknown_agent_id_with_another_agents_email_ranks_invalid_before_not_found(
    refused: Callable[..., None],
) -> None:
    # The two fields name different agents (rule 15), and one of them does not exist (rule 16).
    refused(body(agentId=999, agentEmail="john.doe@foo.com"), AGENT_INVALID)


@pytest.mark.parametrize(
    "agent",
    [
        {"agent_id": 2**63},  # one past the largest id Firestore can store
        {"agentId": 2**70},
        {"agent_id": "9223372036854775808"},
        {"agentId": "1234567890123456789"},  # 19 digits: storable, but no such agent
        {"agent_id": "9" * 5000},
        {"agentEmail": "big@foo.com"},  # stored under an id no agent can have
    ],
)
def test_agent_ids_beyond_what_firestore_stores_name_no_agent(
    refused: Callable[..., None], make_tenant: Callable[..., Any], agent: dict[str, Any]
) -> None:
    odd = make_tenant(
        agents={0: dict(DEMO_AGENT), 2**63: {**DEMO_AGENT, "email": "big@foo.com"}},
    )
    refused(body(**agent), AGENT_NOT_FOUND, as_=odd)


def test_an_integer_too_long_for_python_in_an_unknown_field_is_still_ignored(
    app_client: Any, tenant: Any
) -> None:
    # 5000 digits: more than Python converts to int by default (4300).
    raw = json.dumps(SEED_BODY)[:-1] + ', "extra": ' + "9" * 5000 + "}"
    answer = app_client.post(SMS_PATH, data=raw, headers=tenant.headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
