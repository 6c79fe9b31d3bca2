"""Judging a phone number field: missing, invalid, foreign, or good (and then its E.164)."""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import phonenumbers

DEFAULT_REGION = "US"


class Verdict(enum.Enum):
    MISSING = "missing"
    INVALID = "invalid"
    FOREIGN = "foreign"
    OK = "ok"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    e164: str | None = None


def region_of(number: phonenumbers.PhoneNumber) -> str | None:
    """The number's region, or the main region of its country code when it has none."""
    region: str | None = phonenumbers.region_code_for_number(number)
    return region or phonenumbers.region_code_for_country_code(number.country_code or 0)


def judge(value: Any, allowed_regions: Collection[str]) -> Judgement:
    """Judge one phone number field as SPEC section 4 describes.

    An invalid +1 number is invalid whatever the tenant allows (its region is taken as US),
    so that "12345" reads as a typo rather than as a foreign number.
    """
    if value is None or value == "":
        return Judgement(Verdict.MISSING)
    if not isinstance(value, str):
        return Judgement(Verdict.INVALID)
    reading = _read(value)
    if reading is None:
        return Judgement(Verdict.INVALID)
    if reading.e164 is None and reading.country_code == 1:
        return Judgement(Verdict.INVALID)
    if reading.region not in allowed_regions:
        return Judgement(Verdict.FOREIGN)
    if reading.e164 is None:
        return Judgement(Verdict.INVALID)
    return Judgement(Verdict.OK, reading.e164)


@dataclass(frozen=True)
class _Reading:
    country_code: int | None
    region: str | None
    e164: str | None  # None: not a valid number


@functools.lru_cache(maxsize=4096)
def _read(text: str) -> _Reading | None:
    """What phonenumbers makes of a text, None where it cannot parse it. Kept for the last
    few thousand texts: a tenant's own numbers come with nearly every request."""
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    valid = phonenumbers.is_valid_number(number) and not number.extension
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return _Reading(number.country_code, region_of(number), e164 if valid else None)
