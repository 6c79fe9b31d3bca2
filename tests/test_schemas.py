"""sms.schemas.load: the request fields of SPEC section 3 and the texts of their failures."""

from __future__ import annotations

from typing import Any

import pytest

from sms import errors
from sms.schemas import Loaded, load

US = ("US",)
GOOD: dict[str, Any] = {
    "chat_type": "Messaging (SMS)",
    "end_user_number": "+1 415-555-0100",
    "outbound_number": "+1 628-555-0199",
    "message": "lorem ipsum",
}
_ABSENT = object()


def loaded(**changes: Any) -> Loaded:
    body = {**GOOD, **changes}
    return load({k: v for k, v in body.items() if v is not _ABSENT}, US)


def failures(**changes: Any) -> tuple[str, ...]:
    return loaded(**changes).failures


def test_good_body_has_no_failures_and_normalised_values() -> None:
    result = loaded()
    assert result.failures == ()
    request = result.request()
    assert request.chat_type == "Messaging (SMS)"
    assert request.end_user_number == "+14155550100"
    assert request.outbound_number == "+16285550199"
    assert request.message == "lorem ipsum"
    assert (request.ticket_id, request.agent_id, request.agent_email) == (None, None, None)


def test_empty_body_reports_every_required_field() -> None:
    assert set(load({}, US).failures) == {
        errors.CHAT_TYPE_REQUIRED,
        errors.END_USER_NUMBER_REQUIRED,
        errors.OUTBOUND_NUMBER_REQUIRED,
        errors.MESSAGE_REQUIRED,
    }


def test_every_broken_field_is_reported_at_once() -> None:
    reported = failures(
        chat_type="In-app",
        end_user_number="12345",
        outbound_number="+82 000-000-0000",
        message="   ",
        ticket_id="x" * 256,
        agentId=True,
    )
    assert set(reported) == {
        errors.CHAT_TYPE_INVALID,
        errors.END_USER_NUMBER_INVALID,
        errors.NUMBER_FOREIGN,
        errors.MESSAGE_REQUIRED,
        errors.TICKET_ID_INVALID,
        errors.AGENT_INVALID,
    }


# -- chat_type


@pytest.mark.parametrize("value", ["Messaging (SMS)", "Messaging (API)", "SMS"])
def test_every_allowed_chat_type_loads_as_messaging_sms(value: str) -> None:
    result = loaded(chat_type=value)
    assert result.failures == ()
    assert result.values["chat_type"] == "Messaging (SMS)"


@pytest.mark.parametrize("value", [_ABSENT, None, ""])
def test_missing_chat_type_is_reported_as_required(value: Any) -> None:
    assert failures(chat_type=value) == (errors.CHAT_TYPE_REQUIRED,)


@pytest.mark.parametrize(
    "value", ["In-app", "sms", "Messaging (sms)", " SMS", 1, True, ["SMS"], {"a": 1}]
)
def test_unknown_or_non_string_chat_type_is_reported_as_invalid(value: Any) -> None:
    assert failures(chat_type=value) == (errors.CHAT_TYPE_INVALID,)


# -- phone numbers


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("end_user_number", _ABSENT, errors.END_USER_NUMBER_REQUIRED),
        ("end_user_number", None, errors.END_USER_NUMBER_REQUIRED),
        ("end_user_number", "", errors.END_USER_NUMBER_REQUIRED),
        ("end_user_number", "12345", errors.END_USER_NUMBER_INVALID),
        ("end_user_number", 4155550100, errors.END_USER_NUMBER_INVALID),
        ("end_user_number", "+82 000-000-0000", errors.NUMBER_FOREIGN),
        ("end_user_number", "+1 604 253 1234", errors.NUMBER_FOREIGN),
        ("outbound_number", _ABSENT, errors.OUTBOUND_NUMBER_REQUIRED),
        ("outbound_number", None, errors.OUTBOUND_NUMBER_REQUIRED),
        ("outbound_number", "", errors.OUTBOUND_NUMBER_REQUIRED),
        ("outbound_number", "12345", errors.OUTBOUND_NUMBER_INVALID),
        ("outbound_number", 16285550199, errors.OUTBOUND_NUMBER_INVALID),
        ("outbound_number", "+82 000-000-0000", errors.NUMBER_FOREIGN),
        ("outbound_number", "+1 604 253 1234", errors.NUMBER_FOREIGN),
    ],
)
def test_phone_number_failures_are_reported_per_field(field: str, value: Any, text: str) -> None:
    assert failures(**{field: value}) == (text,)


def test_canadian_numbers_load_when_the_tenant_allows_canada() -> None:
    body = {**GOOD, "end_user_number": "+1 604 253 1234"}
    result = load(body, ("US", "CA"))
    assert result.failures == ()
    assert result.values["end_user_number"] == "+16042531234"


@pytest.mark.parametrize("value", ["(415) 555-0100", "4155550100", "+1 415-555-0100"])
def test_end_user_number_loads_as_e164(value: str) -> None:
    assert loaded(end_user_number=value).values["end_user_number"] == "+14155550100"


# -- message


@pytest.mark.parametrize(
    "value", [_ABSENT, None, "", "   ", "\n\t ", 42, ["hi"], {"text": "hi"}, True]
)
def test_missing_blank_or_non_string_message_is_required(value: Any) -> None:
    assert failures(message=value) == (errors.MESSAGE_REQUIRED,)


def test_message_is_stripped_of_surrounding_whitespace() -> None:
    assert loaded(message="  \n hello there \t ").values["message"] == "hello there"


def test_message_of_1600_characters_is_accepted() -> None:
    result = loaded(message="x" * 1600)
    assert result.failures == ()
    assert result.values["message"] == "x" * 1600


def test_message_of_1601_characters_is_too_long() -> None:
    assert failures(message="x" * 1601) == (errors.MESSAGE_TOO_LONG,)


def test_surrounding_whitespace_does_not_count_towards_the_message_limit() -> None:
    assert failures(message="   " + "x" * 1600 + "\n\n") == ()


def test_message_limit_counts_characters_not_bytes() -> None:
    assert failures(message="é" * 1600) == ()
    assert failures(message="é" * 1601) == (errors.MESSAGE_TOO_LONG,)


# -- ticket_id


def test_ticket_id_of_255_characters_is_accepted() -> None:
    result = loaded(ticket_id="t" * 255)
    assert result.failures == ()
    assert result.values["ticket_id"] == "t" * 255


def test_ticket_id_of_256_characters_is_invalid() -> None:
    assert failures(ticket_id="t" * 256) == (errors.TICKET_ID_INVALID,)


@pytest.mark.parametrize("value", [12345, 1.5, True, ["a"], {"id": "a"}])
def test_non_string_ticket_id_is_invalid(value: Any) -> None:
    assert failures(ticket_id=value) == (errors.TICKET_ID_INVALID,)


@pytest.mark.parametrize("value", [_ABSENT, None])
def test_ticket_id_is_optional(value: Any) -> None:
    result = loaded(ticket_id=value)
    assert result.failures == ()
    assert result.values["ticket_id"] is None


# -- agent fields


@pytest.mark.parametrize("field", ["agent_id", "agentId"])
def test_both_spellings_of_agent_id_are_accepted(field: str) -> None:
    result = loaded(**{field: 7})
    assert result.failures == ()
    assert result.request().agent_id == 7


@pytest.mark.parametrize("field", ["agent_email", "agentEmail"])
def test_both_spellings_of_agent_email_are_accepted(field: str) -> None:
    result = loaded(**{field: "john.doe@foo.com"})
    assert result.failures == ()
    assert result.request().agent_email == "john.doe@foo.com"


@pytest.mark.parametrize("value", ["1", "42", "007"])
def test_agent_id_as_a_digit_string_is_an_integer(value: str) -> None:
    result = loaded(agentId=value)
    assert result.failures == ()
    assert result.request().agent_id == int(value)


@pytest.mark.parametrize(
    "value", [True, False, 1.0, 1.5, "1.0", "-1", "1e3", "abc", [1], {"id": 1}]
)
@pytest.mark.parametrize("field", ["agent_id", "agentId"])
def test_agent_id_of_the_wrong_type_is_invalid(field: str, value: Any) -> None:
    assert failures(**{field: value}) == (errors.AGENT_INVALID,)


@pytest.mark.parametrize("value", [1, True, ["a@b.c"], {"email": "a@b.c"}])
@pytest.mark.parametrize("field", ["agent_email", "agentEmail"])
def test_agent_email_that_is_not_a_string_is_invalid(field: str, value: Any) -> None:
    assert failures(**{field: value}) == (errors.AGENT_INVALID,)


def test_two_agent_ids_that_disagree_are_invalid() -> None:
    assert failures(agent_id=1, agentId=2) == (errors.AGENT_INVALID,)


def test_two_agent_ids_that_agree_are_one_agent() -> None:
    result = loaded(agent_id=1, agentId="1")
    assert result.failures == ()
    assert result.request().agent_id == 1


def test_two_agent_emails_that_disagree_are_invalid() -> None:
    assert failures(agent_email="john.doe@foo.com", agentEmail="jane.doe@foo.com") == (
        errors.AGENT_INVALID,
    )


def test_two_agent_emails_differing_only_in_case_agree() -> None:
    result = loaded(agent_email="John.Doe@foo.com", agentEmail="john.doe@FOO.com")
    assert result.failures == ()
    assert (result.request().agent_email or "").casefold() == "john.doe@foo.com"


def test_null_agent_fields_name_no_agent() -> None:
    result = loaded(agent_id=None, agentId=None, agent_email=None, agentEmail=None)
    assert result.failures == ()
    assert (result.request().agent_id, result.request().agent_email) == (None, None)


# -- other fields


def test_unknown_fields_are_ignored() -> None:
    result = loaded(foo="bar", priority=3, nested={"a": [1, 2]})
    assert result.failures == ()
    assert "foo" not in result.values
    assert "nested" not in result.values


def test_chat_subtype_is_kept() -> None:
    assert loaded(chat_subtype="api_initiated").request().chat_subtype == "api_initiated"
