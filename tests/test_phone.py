"""sms.phone.judge: how a phone number field is judged (SPEC section 4)."""

from __future__ import annotations

from typing import Any

import pytest

from sms.phone import Verdict, judge

US = ("US",)
US_AND_CA = ("US", "CA")


@pytest.mark.parametrize(
    "value",
    ["(415) 555-0100", "4155550100", "+1 415-555-0100", "+14155550100", "415.555.0100"],
)
def test_common_us_formats_are_ok_and_give_e164(value: str) -> None:
    judgement = judge(value, US)
    assert judgement.verdict is Verdict.OK
    assert judgement.e164 == "+14155550100"


def test_seed_outbound_number_is_ok_as_e164() -> None:
    assert judge("+1 628-555-0199", US).e164 == "+16285550199"


@pytest.mark.parametrize("value", [None, ""])
def test_absent_values_are_missing(value: Any) -> None:
    judgement = judge(value, US)
    assert judgement.verdict is Verdict.MISSING
    assert judgement.e164 is None


@pytest.mark.parametrize("value", ["12345", "abc", "   ", "+1 000-000-0000", "415-555-010"])
def test_unparseable_or_invalid_strings_are_invalid(value: str) -> None:
    judgement = judge(value, US)
    assert judgement.verdict is Verdict.INVALID
    assert judgement.e164 is None


def test_invalid_plus_one_number_stays_invalid_even_when_canada_is_allowed() -> None:
    assert judge("12345", US_AND_CA).verdict is Verdict.INVALID


@pytest.mark.parametrize(
    "value", [4155550100, 14155550100, 1.5, True, False, [], {}, ["4155550100"]]
)
def test_non_strings_are_invalid(value: Any) -> None:
    judgement = judge(value, US)
    assert judgement.verdict is Verdict.INVALID
    assert judgement.e164 is None


@pytest.mark.parametrize(
    "value", ["+1 415-555-0100 ext. 12", "4155550100 x12", "(415) 555-0100 ext 7"]
)
def test_numbers_with_an_extension_are_invalid(value: str) -> None:
    assert judge(value, US).verdict is Verdict.INVALID


@pytest.mark.parametrize("value", ["+82 000-000-0000", "+44 20 7946 0958", "+82 2-312-3456"])
def test_numbers_of_other_countries_are_foreign(value: str) -> None:
    judgement = judge(value, US)
    assert judgement.verdict is Verdict.FOREIGN
    assert judgement.e164 is None


def test_canadian_number_is_foreign_with_default_regions() -> None:
    assert judge("+1 604 253 1234", US).verdict is Verdict.FOREIGN


def test_canadian_number_is_ok_when_canada_is_allowed() -> None:
    judgement = judge("+1 604 253 1234", US_AND_CA)
    assert judgement.verdict is Verdict.OK
    assert judgement.e164 == "+16042531234"


def test_us_number_is_foreign_for_a_tenant_allowing_only_canada() -> None:
    assert judge("+1 415-555-0100", ("CA",)).verdict is Verdict.FOREIGN


def test_invalid_number_of_an_allowed_foreign_region_is_invalid() -> None:
    assert judge("+82 000-000-0000", ("US", "KR")).verdict is Verdict.INVALID


def test_valid_number_of_an_allowed_foreign_region_is_ok() -> None:
    judgement = judge("+82 2-312-3456", ("US", "KR"))
    assert judgement.verdict is Verdict.OK
    assert judgement.e164 == "+8223123456"
