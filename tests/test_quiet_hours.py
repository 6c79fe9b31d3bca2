"""sms.quiet_hours: judging the settings, placing numbers, and the verdict over a whole year.

The exhaustive part checks every US prefix of phonenumbers' time zone data at every quarter hour
of 2026 against local times computed here from each zone's UTC offsets.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers import geocoder
from phonenumbers import timezone as phone_time_zones
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from sms.quiet_hours import (
    DEFAULT_TIME_ZONE,
    POLICIES,
    STATE_RULE_STATES,
    QuietHours,
    Verdict,
    check,
    judge_quiet_hours,
    judge_time_zone,
    parse_hhmm,
    state_of,
    zones_for,
)

UTC = timezone.utc
MINUTE = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 24 * 60
NY = "America/New_York"
CHICAGO = "America/Chicago"
LA = "America/Los_Angeles"


def at(text: str, zone: str = NY) -> datetime:
    """An aware local time, e.g. at("2026-03-08 01:45")."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def hhmm(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def rules(start: str, end: str, *, state_rules: bool = False) -> QuietHours:
    return QuietHours(hhmm(start), hhmm(end), "hold", state_rules)


def refusal(call: Any, *args: Any) -> str:
    """The message of the ValueError the call raises."""
    with pytest.raises(ValueError, match=r".+") as caught:
        call(*args)
    return str(caught.value)


# --- parse_hhmm -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "minutes"), [("00:00", 0), ("08:30", 510), ("12:00", 720), ("23:59", 1439)]
)
def test_parse_hhmm_gives_minutes_after_midnight(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes


@pytest.mark.parametrize(
    "text",
    ["24:00", "23:60", "7:00", "07:0", "0700", "07:00:00", " 07:00", "07:00 ", "07:00\n", "",
     "\uff10\uff17:\uff10\uff10", "07-00", "-1:00"],
)  # fmt: skip
def test_parse_hhmm_refuses_anything_but_two_digit_hours_and_minutes(text: str) -> None:
    assert refusal(parse_hhmm, text) == (
        f'must be a time "HH:MM" from 00:00 to 23:59, got {text!r}'
    )


@pytest.mark.parametrize(("value", "kind"), [(700, "int"), (None, "NoneType"), (True, "bool")])
def test_parse_hhmm_refuses_non_strings(value: object, kind: str) -> None:
    assert refusal(parse_hhmm, value) == f'must be a time "HH:MM", got {kind}'


# --- judge_quiet_hours ------------------------------------------------------------------------


def test_judge_quiet_hours_reads_the_tenant_map() -> None:
    judged = judge_quiet_hours(
        {"start": "21:00", "end": "08:00", "policy": "refuse", "state_rules": True}
    )
    assert judged == QuietHours(start=1260, end=480, policy="refuse", state_rules=True)


def test_judge_quiet_hours_defaults_state_rules_to_false_and_ignores_unknown_keys() -> None:
    judged = judge_quiet_hours({"start": "01:00", "end": "05:00", "policy": "hold", "note": 1})
    assert judged == QuietHours(start=60, end=300, policy="hold", state_rules=False)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "quiet_hours must be a map, got NoneType"),
        ("21:00-08:00", "quiet_hours must be a map, got str"),
        ([("start", "21:00")], "quiet_hours must be a map, got list"),
        ({"end": "08:00", "policy": "hold"}, "quiet_hours.start is missing"),
        ({"start": "21:00", "policy": "hold"}, "quiet_hours.end is missing"),
        (
            {"start": "9pm", "end": "08:00", "policy": "hold"},
            "quiet_hours.start must be a time \"HH:MM\" from 00:00 to 23:59, got '9pm'",
        ),
        (
            {"start": "21:00", "end": "24:00", "policy": "hold"},
            "quiet_hours.end must be a time \"HH:MM\" from 00:00 to 23:59, got '24:00'",
        ),
        (
            {"start": "21:00", "end": 800, "policy": "hold"},
            'quiet_hours.end must be a time "HH:MM", got int',
        ),
        (
            {"start": "22:00", "end": "22:00", "policy": "hold"},
            "quiet_hours.start and quiet_hours.end are both 22:00: the window would be empty",
        ),
        (
            {"start": "21:00", "end": "08:00", "policy": "delay"},
            "quiet_hours.policy must be 'hold' or 'refuse', got 'delay'",
        ),
        (
            {"start": "21:00", "end": "08:00", "policy": "Hold"},
            "quiet_hours.policy must be 'hold' or 'refuse', got 'Hold'",
        ),
        (
            {"start": "21:00", "end": "08:00"},
            "quiet_hours.policy must be 'hold' or 'refuse', got None",
        ),
        (
            {"start": "21:00", "end": "08:00", "policy": "hold", "state_rules": "true"},
            "quiet_hours.state_rules must be true or false, got 'true'",
        ),
        (
            {"start": "21:00", "end": "08:00", "policy": "hold", "state_rules": 1},
            "quiet_hours.state_rules must be true or false, got 1",
        ),
        (
            {"start": "21:00", "end": "08:00", "policy": "hold", "state_rules": None},
            "quiet_hours.state_rules must be true or false, got None",
        ),
    ],
)
def test_judge_quiet_hours_names_what_is_wrong(value: object, message: str) -> None:
    assert refusal(judge_quiet_hours, value) == message


def test_policies_are_hold_and_refuse() -> None:
    assert POLICIES == ("hold", "refuse")


@pytest.mark.parametrize(
    ("start", "end", "policy", "state_rules", "message"),
    [
        (60, 60, "hold", False, "quiet_hours.start and quiet_hours.end must differ"),
        (-1, 60, "hold", False, "quiet_hours.start must be a minute of the day 0..1439"),
        (60, 1440, "hold", False, "quiet_hours.end must be a minute of the day 0..1439"),
        (60, 120, "later", False, "quiet_hours.policy must be 'hold' or 'refuse', got 'later'"),
        (60, 120, "hold", 1, "quiet_hours.state_rules must be true or false"),
    ],
)
def test_quiet_hours_cannot_be_built_broken(
    start: int, end: int, policy: str, state_rules: Any, message: str
) -> None:
    assert refusal(QuietHours, start, end, policy, state_rules) == message


# --- judge_time_zone --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["America/Chicago", "UTC", "Europe/London", DEFAULT_TIME_ZONE])
def test_judge_time_zone_accepts_iana_names(name: str) -> None:
    assert judge_time_zone(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Etc/Unknown", "america/chicago", "Mars/Olympus", "/etc/localtime", "../../etc/passwd",
     "America/../America/Chicago", "localtime", "Factory", "America/Chicago ", "America/"],
)  # fmt: skip
def test_judge_time_zone_refuses_what_is_not_a_zone(name: str) -> None:
    assert refusal(judge_time_zone, name) == (
        f"unknown time zone {name!r}: expected an IANA name like 'America/Chicago'"
    )


@pytest.mark.parametrize(("value", "kind"), [(None, "NoneType"), (-5, "int"), (["UTC"], "list")])
def test_judge_time_zone_refuses_non_strings(value: object, kind: str) -> None:
    assert refusal(judge_time_zone, value) == f"a time zone must be an IANA name, got {kind}"


# --- zones_for --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "zones"),
    [
        ("+12125550123", (NY,)),  # New York
        ("+12135550123", (LA,)),  # Los Angeles
        ("+13105550123", (LA,)),  # Los Angeles (west side)
        ("+14055550123", (CHICAGO,)),  # Oklahoma
        ("+14165550123", ("America/Toronto",)),  # Toronto, Canada
        ("+442079460000", ("Europe/London",)),  # London
        # 850 is split between two zones by exchange: Pensacola and Tallahassee.
        ("+18504325555", (CHICAGO,)),
        ("+18502225555", (NY,)),
        # Prefixes the data gives several zones: Idaho, the Navajo Nation, North Dakota.
        ("+12085550123", ("America/Boise", LA)),
        ("+19282835555", ("America/Denver", "America/Phoenix")),
        ("+17015550123", ("America/Denver", "America/North_Dakota/Center")),
    ],
)
def test_zones_for_uses_the_longest_prefix_phonenumbers_knows(
    number: str, zones: tuple[str, ...]
) -> None:
    assert zones_for(number, "Europe/Paris") == zones


@pytest.mark.parametrize(
    ("number", "kind"),
    [
        ("+18005550123", phonenumbers.PhoneNumberType.TOLL_FREE),
        ("+18885550123", phonenumbers.PhoneNumberType.TOLL_FREE),
        ("+19005550123", phonenumbers.PhoneNumberType.PREMIUM_RATE),
        ("+15005550123", phonenumbers.PhoneNumberType.PERSONAL_NUMBER),
        # Toll-free elsewhere too, however many zones phonenumbers gives.
        ("+448001234567", phonenumbers.PhoneNumberType.TOLL_FREE),
        ("+611800123456", phonenumbers.PhoneNumberType.TOLL_FREE),
    ],
)
def test_zones_for_toll_free_and_numbers_placed_nowhere_in_particular_is_the_default(
    number: str, kind: int
) -> None:
    parsed = phonenumbers.parse(number)
    assert phonenumbers.number_type(parsed) == kind
    # phonenumbers answers with every zone of the country code (for +1, Guam to Pago Pago).
    assert len(phone_time_zones.time_zones_for_number(parsed)) > 1
    assert zones_for(number, "America/Denver") == ("America/Denver",)


@pytest.mark.parametrize("number", ["+1212555012", "+10005550123", "not a number", ""])
def test_zones_for_an_invalid_number_is_the_default(number: str) -> None:
    assert zones_for(number, CHICAGO) == (CHICAGO,)


@pytest.fixture
def fake_zone_data(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, ...]]]:
    """What phonenumbers answers for every number, while the test runs."""
    answer: list[tuple[str, ...]] = []
    monkeypatch.setattr(phone_time_zones, "time_zones_for_number", lambda number: answer[0])
    zones_for.cache_clear()
    yield answer
    zones_for.cache_clear()


@pytest.mark.parametrize(
    ("answer", "zones"),
    [
        (("Etc/Unknown",), (CHICAGO,)),
        (("Mars/Olympus",), (CHICAGO,)),
        ((), (CHICAGO,)),
        (("Mars/Olympus", "America/Denver"), ("America/Denver",)),
        (("America/Denver", "Etc/Unknown"), ("America/Denver",)),
    ],
)
def test_zones_for_drops_zones_zoneinfo_does_not_know(
    fake_zone_data: list[tuple[str, ...]], answer: tuple[str, ...], zones: tuple[str, ...]
) -> None:
    fake_zone_data.append(answer)
    assert zones_for("+12125550123", CHICAGO) == zones


# --- state_of ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "place", "state"),
    [
        # The geocoder names a whole area code by its state and many exchanges "City, ST".
        ("+13052005555", "Florida", "Florida"),
        ("+13053505555", "Miami, FL", "Florida"),
        ("+18504325555", "Pensacola, FL", "Florida"),  # 850 in Central time
        ("+18502225555", "Tallahassee, FL", "Florida"),  # 850 in Eastern time
        ("+14055550123", "Oklahoma", "Oklahoma"),
        ("+14052355555", "Oklahoma City, OK", "Oklahoma"),
        ("+14105550123", "Maryland", "Maryland"),
        ("+14102355555", "Baltimore, MD", "Maryland"),
        ("+12125550123", "New York, NY", "New York"),
        ("+12065550123", "Washington State", "Washington"),
        ("+12025550123", "Washington D.C.", "District of Columbia"),
        ("+12085550123", "Idaho", "Idaho"),
    ],
)
def test_state_of_reads_both_forms_the_geocoder_gives(number: str, place: str, state: str) -> None:
    assert geocoder.description_for_number(phonenumbers.parse(number), "en") == place
    assert state_of(number) == state


@pytest.mark.parametrize(
    "number", ["+18005550123", "+14165550123", "+17875550123", "+1212555012", "not a number"]
)
def test_state_of_is_none_where_no_us_state_is_given(number: str) -> None:
    assert state_of(number) is None


def test_state_rule_states_are_the_three_of_the_spec() -> None:
    assert frozenset({"Florida", "Oklahoma", "Maryland"}) == STATE_RULE_STATES


# --- check on chosen moments ------------------------------------------------------------------

NEW_YORK_NUMBER = "+12125550123"
FLORIDA_NUMBER = "+13055550123"  # Eastern
OKLAHOMA_NUMBER = "+14055550123"  # Central
IDAHO_NUMBER = "+12085550123"  # Boise (Mountain) and Los Angeles (Pacific)


def verdict(now: datetime, window: QuietHours, number: str = NEW_YORK_NUMBER) -> Verdict:
    return check(number, window, DEFAULT_TIME_ZONE, now)


def held_until(now: datetime, window: QuietHours, number: str = NEW_YORK_NUMBER) -> datetime:
    judged = verdict(now, window, number)
    assert judged.quiet
    assert judged.until is not None
    assert judged.until.tzinfo is UTC
    return judged.until


def test_a_window_that_wraps_midnight() -> None:
    night = rules("21:00", "08:00")
    assert not verdict(at("2026-01-15 20:59"), night).quiet
    assert held_until(at("2026-01-15 21:00"), night) == at("2026-01-16 08:00")
    assert held_until(at("2026-01-16 03:00"), night) == at("2026-01-16 08:00")
    assert held_until(at("2026-01-16 07:59:59.999999"), night) == at("2026-01-16 08:00")
    assert verdict(at("2026-01-16 08:00"), night) == Verdict(False, None, (NY,))
    assert verdict(at("2026-01-16 12:00"), night) == Verdict(False, None, (NY,))


def test_a_window_within_one_day() -> None:
    early = rules("01:00", "05:00")
    assert not verdict(at("2026-06-10 00:59"), early).quiet
    assert held_until(at("2026-06-10 01:00"), early) == at("2026-06-10 05:00")
    assert not verdict(at("2026-06-10 05:00"), early).quiet
    assert not verdict(at("2026-06-10 23:00"), early).quiet


def test_now_may_be_in_any_zone_and_until_is_utc_whole_minutes() -> None:
    night = rules("21:00", "08:00")
    moment = at("2026-01-16 07:30:15.5")
    for zone in (UTC, ZoneInfo("Asia/Kolkata"), ZoneInfo(CHICAGO)):
        until = held_until(moment.astimezone(zone), night)
        assert until == utc("2026-01-16 13:00")
        assert (until.second, until.microsecond) == (0, 0)


def test_now_must_be_aware() -> None:
    assert refusal(check, NEW_YORK_NUMBER, rules("21:00", "08:00"), NY, datetime(2026, 1, 1)) == (
        "now must be an aware datetime"
    )


def test_zones_are_those_of_the_number_or_the_default() -> None:
    night = rules("21:00", "08:00")
    assert check(IDAHO_NUMBER, night, NY, utc("2026-07-01 20:00")).zones == ("America/Boise", LA)
    assert check("+18005550123", night, CHICAGO, utc("2026-07-01 20:00")).zones == (CHICAGO,)


def test_the_default_zone_decides_for_a_toll_free_number() -> None:
    night = rules("21:00", "08:00")
    # 02:30 in Chicago, 09:30 in Guam (one of phonenumbers' zones for +1 800).
    assert check("+18005550123", night, CHICAGO, utc("2026-07-01 07:30")).until == at(
        "2026-07-01 08:00", CHICAGO
    )
    assert not check("+18005550123", night, "Pacific/Guam", utc("2026-07-01 07:30")).quiet


# Spring forward in New York, 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00 UTC.


def test_spring_forward_a_window_ending_in_the_gap_ends_at_the_jump() -> None:
    window = rules("22:00", "02:30")
    assert held_until(utc("2026-03-08 06:45"), window) == utc("2026-03-08 07:00")
    assert at("2026-03-08 03:00") == utc("2026-03-08 07:00")
    assert not verdict(utc("2026-03-08 07:00"), window).quiet


def test_spring_forward_a_window_starting_in_the_gap_starts_at_the_jump() -> None:
    window = rules("02:30", "06:00")
    assert not verdict(utc("2026-03-08 06:59"), window).quiet
    assert held_until(utc("2026-03-08 07:00"), window) == utc("2026-03-08 10:00")  # 06:00 EDT


def test_spring_forward_a_night_is_an_hour_shorter() -> None:
    window = rules("00:00", "05:00")
    assert held_until(utc("2026-03-08 05:00"), window) == utc("2026-03-08 09:00")  # 4 hours


# Fall back in New York, 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00 UTC, so 01:00-01:59
# happens twice: 05:00-05:59 UTC (EDT), then 06:00-06:59 UTC (EST).


def test_fall_back_a_window_ending_at_0130_ends_at_the_first_0130() -> None:
    window = rules("22:00", "01:30")
    assert held_until(utc("2026-11-01 04:00"), window) == utc("2026-11-01 05:30")
    # When the clock goes back to 01:00 it is inside the window again until the second 01:30.
    assert not verdict(utc("2026-11-01 05:30"), window).quiet
    assert not verdict(utc("2026-11-01 05:59"), window).quiet
    assert held_until(utc("2026-11-01 06:00"), window) == utc("2026-11-01 06:30")


def test_fall_back_a_window_starting_at_0130_is_judged_by_the_wall_clock() -> None:
    window = rules("01:30", "06:00")
    assert held_until(utc("2026-11-01 05:30"), window) == utc("2026-11-01 06:00")
    # 06:00-06:29 UTC is 01:00-01:29 EST: before the window's start on the wall clock.
    assert not verdict(utc("2026-11-01 06:15"), window).quiet
    assert held_until(utc("2026-11-01 06:30"), window) == utc("2026-11-01 11:00")  # 06:00 EST


def test_fall_back_a_night_is_an_hour_longer() -> None:
    window = rules("00:00", "05:00")
    assert held_until(utc("2026-11-01 04:00"), window) == utc("2026-11-01 10:00")  # 6 hours


def test_state_rules_add_the_night_for_florida_oklahoma_and_maryland() -> None:
    early = rules("01:00", "05:00", state_rules=True)
    assert held_until(at("2026-07-01 20:00"), early, FLORIDA_NUMBER) == at("2026-07-02 08:00")
    assert held_until(at("2026-07-01 07:59"), early, "+14105550123") == at("2026-07-01 08:00")
    assert not verdict(at("2026-07-01 19:59"), early, FLORIDA_NUMBER).quiet
    assert held_until(at("2026-07-01 20:00", CHICAGO), early, OKLAHOMA_NUMBER) == at(
        "2026-07-02 08:00", CHICAGO
    )
    # Without state_rules, or elsewhere, only the tenant's window counts.
    assert not verdict(at("2026-07-01 22:00"), rules("01:00", "05:00"), FLORIDA_NUMBER).quiet
    assert not verdict(at("2026-07-01 22:00"), early, NEW_YORK_NUMBER).quiet


def test_state_rules_add_to_a_window_that_reaches_past_them() -> None:
    late = rules("21:00", "09:30", state_rules=True)
    assert held_until(at("2026-07-01 20:30"), late, FLORIDA_NUMBER) == at("2026-07-02 09:30")


def test_several_zones_it_is_quiet_if_any_is_and_holds_until_all_are_out() -> None:
    night = rules("21:00", "08:00")
    # 21:30 in Boise is 20:30 in Los Angeles.
    assert held_until(utc("2026-01-16 04:30"), night, IDAHO_NUMBER) == utc("2026-01-16 16:00")
    # 07:30 in Boise, 06:30 in Los Angeles: the hold ends at 08:00 in Los Angeles.
    assert held_until(utc("2026-01-16 14:30"), night, IDAHO_NUMBER) == utc("2026-01-16 16:00")
    assert not verdict(utc("2026-01-16 16:00"), night, IDAHO_NUMBER).quiet
    assert not verdict(utc("2026-01-16 03:59"), night, IDAHO_NUMBER).quiet


def test_rules_that_leave_no_time_to_send_give_no_until() -> None:
    # 08:00-20:00 plus Florida's 20:00-08:00 is the whole day.
    day = rules("08:00", "20:00", state_rules=True)
    assert verdict(at("2026-07-01 12:00"), day, FLORIDA_NUMBER) == Verdict(True, None, (NY,))
    # 23.5 quiet hours in Boise and in Los Angeles, an hour apart, leave no moment in both.
    long = rules("00:00", "23:30")
    judged = verdict(utc("2026-07-01 12:00"), long, IDAHO_NUMBER)
    assert (judged.quiet, judged.until) == (True, None)
    # In one zone the half hour is there.
    assert held_until(utc("2026-07-01 12:00"), long) == at("2026-07-01 23:30")


# --- the whole year, every US prefix ----------------------------------------------------------

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
QUARTERS = 4 * 24 * 365  # every quarter hour of 2026: 35,040 moments
FIRST = (YEAR_START - EPOCH) // MINUTE  # the first moment, in minutes since the epoch
MOMENTS = [YEAR_START + 15 * i * MINUTE for i in range(QUARTERS)]
WINDOWS = [
    ("21:00", "08:00"),  # wraps midnight
    ("01:00", "05:00"),  # within one day
    ("02:30", "06:00"),  # starts in the spring-forward gap
    ("22:00", "01:30"),  # ends in the fall-back overlap
]


def longest_prefix(digits: str) -> str:
    """The key of phonenumbers' time zone data that a number's digits fall under."""
    for length in range(TIMEZONE_LONGEST_PREFIX, 0, -1):
        if digits[:length] in TIMEZONE_DATA:
            return digits[:length]
    raise AssertionError(digits)


def number_under(prefix: str) -> phonenumbers.PhoneNumber | None:
    """A valid +1 number whose longest prefix in the time zone data is `prefix`."""
    free = 7 - len(prefix)  # digits left before the four of the line number
    first = int("5" * free) if free else 0
    for filler in itertools.chain(range(first, 10**free), range(first)):
        digits = f"{prefix}{filler:0{free}d}" if free else prefix
        for line in ("0123", "4567", "8901"):
            number = phonenumbers.parse(f"+{digits}{line}")
            if phonenumbers.is_valid_number(number) and longest_prefix(digits + line) == prefix:
                return number
    return None


class Key(NamedTuple):
    """What a verdict depends on besides the rules and the time."""

    zones: tuple[str, ...]
    in_state: bool  # the geocoder places the number in a state with a state rule


@cache
def us_prefixes() -> dict[str, str]:
    """Every prefix of country code 1 in phonenumbers' time zone data that is in the US, with a
    valid number under it."""
    prefixes = sorted(key for key in TIMEZONE_DATA if key.startswith("1") and key != "1")
    assert 1800 <= len(prefixes) <= 2400
    found = {}
    for prefix in prefixes:
        assert len(prefix) <= 7, prefix  # area code plus exchange at most
        number = number_under(prefix)
        assert number is not None, f"no valid number under {prefix}"
        if phonenumbers.region_code_for_number(number) == "US":
            found[prefix] = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return found


@cache
def keys() -> dict[Key, list[str]]:
    """The US prefixes' numbers by the key of their verdicts."""
    grouped: dict[Key, list[str]] = {}
    for prefix, number in us_prefixes().items():
        zones = zones_for(number, "Europe/Paris")
        # Every US prefix has zones of its own, used as phonenumbers gives them.
        assert zones == TIMEZONE_DATA[prefix], (prefix, zones)
        state = state_of(number)
        assert state is not None, f"the geocoder places {number} in no state"
        grouped.setdefault(Key(zones, state in STATE_RULE_STATES), []).append(number)
    return grouped


def test_every_us_prefix_is_mapped_to_a_key() -> None:
    prefixes = us_prefixes()
    assert 1700 <= len(prefixes) <= 2100
    grouped = keys()
    assert sum(len(numbers) for numbers in grouped.values()) == len(prefixes)
    assert 8 <= len(grouped) <= 40
    assert any(len(key.zones) > 1 for key in grouped)
    assert {key.zones for key in grouped if key.in_state} >= {(NY,), (CHICAGO,)}
    # The data's own zones all load, so no US prefix falls back to a default.
    for key in grouped:
        for zone in key.zones:
            ZoneInfo(zone)


@cache
def offset_changes(zone_name: str) -> tuple[list[int], list[int]]:
    """The minutes (since the epoch) at which the zone's UTC offset changes around 2026, with the
    offset (in minutes) from each one on."""
    zone = ZoneInfo(zone_name)

    def offset(minute: int) -> int:
        delta = (EPOCH + minute * MINUTE).astimezone(zone).utcoffset()
        assert delta is not None
        assert delta % MINUTE == timedelta(0)
        return delta // MINUTE

    start = FIRST - 3 * DAY
    starts, offsets = [start], [offset(start)]
    for hour_end in range(start + 60, FIRST + QUARTERS * 15 + 4 * DAY, 60):
        if offset(hour_end) != offsets[-1]:
            low, high = hour_end - 60, hour_end  # the change is in (low, high]
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offsets[-1] else (low, middle)
            starts.append(high)
            offsets.append(offset(high))
    return starts, offsets


def offset_at(zone_name: str, minute: int) -> int:
    starts, offsets = offset_changes(zone_name)
    return offsets[bisect_right(starts, minute) - 1]


@cache
def quarter_offsets(zone_name: str) -> list[int]:
    """The zone's UTC offset at each of the year's quarter hours."""
    starts, offsets = offset_changes(zone_name)
    result = []
    change = 0
    for i in range(QUARTERS):
        minute = FIRST + 15 * i
        while change + 1 < len(starts) and starts[change + 1] <= minute:
            change += 1
        result.append(offsets[change])
    return result


def quiet_minutes(start: int, end: int, state_rule: bool) -> bytes:
    """For each minute of the local day, 1 when it is quiet."""

    def quiet(minute: int) -> bool:
        in_window = start <= minute < end if start < end else not end <= minute < start
        return in_window or (state_rule and not 8 * 60 <= minute < 20 * 60)

    return bytes(quiet(minute) for minute in range(DAY))


def longest_quiet_stretch(quiet: bytes) -> int:
    return max(len(list(run)) for value, run in itertools.groupby(quiet + quiet) if value)


def test_the_offsets_here_see_both_changes_of_2026() -> None:
    starts, offsets = offset_changes(NY)
    assert [
        (EPOCH + minute * MINUTE, offset)
        for minute, offset in zip(starts[1:], offsets[1:], strict=True)
    ] == [
        (utc("2026-03-08 07:00"), -240),
        (utc("2026-11-01 06:00"), -300),
    ]


def sweep(number: str, key: Key, window: QuietHours) -> tuple[int, list[str]]:
    """Check the number at every moment of the year; the count of quiet moments and problems."""
    quiet = quiet_minutes(window.start, window.end, window.state_rules and key.in_state)
    offsets = [quarter_offsets(zone) for zone in key.zones]
    # The longest hold: the longest quiet stretch of the local day (the window, joined with the
    # state rule's night where it applies), plus the hour a clock goes back in the fall, plus the
    # spread between the number's earliest and latest zones (their largest offset difference).
    spread = max(max(moment) - min(moment) for moment in zip(*offsets, strict=True))
    bound = longest_quiet_stretch(quiet) + 60 + spread
    expected = [
        any(quiet[(FIRST + 15 * i + offset) % DAY] for offset in moment)
        for i, moment in enumerate(zip(*offsets, strict=True))
    ]
    verdicts = [check(number, window, DEFAULT_TIME_ZONE, now) for now in MOMENTS]
    problems = [
        f"{now}: {judged}, expected quiet={quiet_now}"
        for now, judged, quiet_now in zip(MOMENTS, verdicts, expected, strict=True)
        if judged.quiet != quiet_now or (judged.until is None) == quiet_now
        or judged.zones != key.zones
    ]  # fmt: skip
    if problems:
        return 0, problems

    def quiet_in_some_zone(minute: int) -> bool:
        return any(quiet[(minute + offset_at(zone, minute)) % DAY] for zone in key.zones)

    ends: dict[datetime, int] = {}  # each `until` given, in minutes since the epoch
    for until in {judged.until for judged in verdicts if judged.until is not None}:
        end = ends[until] = (until - EPOCH) // MINUTE
        if until.tzinfo is not UTC or until != EPOCH + end * MINUTE:
            problems.append(f"until {until!r} is not a whole minute in UTC")
        elif quiet_in_some_zone(end):
            problems.append(f"until {until} is still quiet")
        elif not quiet_in_some_zone(end - 1):
            problems.append(f"until {until} is not the first minute out")
    quiet_moments = 0
    for i, judged in enumerate(verdicts):
        if judged.until is not None:
            quiet_moments += 1
            minute = FIRST + 15 * i
            if not minute < ends[judged.until] <= minute + bound:
                problems.append(f"{MOMENTS[i]}: until {judged.until} is not within {bound} minutes")
    return quiet_moments, problems


@cache
def sweeps() -> dict[Key, tuple[str, bool]]:
    """Each distinct key of verdicts, with a number and a state_rules setting that give it.

    Here `in_state` says whether the state rule applies: under state_rules off it never does;
    under on, for the numbers in the three states. A key where it does not apply is swept once:
    with a number in one of the states and the setting off where its zones have such a number
    (off must mean off), else with a number elsewhere and the setting on (on must not reach it).
    """
    chosen: dict[Key, tuple[str, bool]] = {}
    for key, numbers in keys().items():
        if key.in_state:
            chosen[key] = (numbers[0], True)
            chosen[Key(key.zones, False)] = (numbers[0], False)
        else:
            chosen.setdefault(key, (numbers[0], True))
    return chosen


def test_the_sweeps_cover_every_key_with_state_rules_on_and_off() -> None:
    chosen = sweeps()
    assert {(key.zones, key.in_state) for key in keys()} <= set(chosen)
    assert {key.zones for key in chosen} == {key.zones for key in keys()}
    settings = {(key.in_state, state_rules) for key, (_, state_rules) in chosen.items()}
    assert settings == {(True, True), (False, True), (False, False)}
    for key, (number, state_rules) in chosen.items():
        assert zones_for(number, DEFAULT_TIME_ZONE) == key.zones
        assert (state_rules and state_of(number) in STATE_RULE_STATES) == key.in_state


@pytest.mark.parametrize(("start", "end"), WINDOWS)
def test_every_us_prefix_every_quarter_hour_of_2026(start: str, end: str) -> None:
    # A verdict depends on the number only through its zones and whether the state rule applies
    # (the key): one number per key stands for all the prefixes with that key.
    for key, (number, state_rules) in sweeps().items():
        quiet_moments, problems = sweep(number, key, rules(start, end, state_rules=state_rules))
        assert problems == [], f"{number} {key}: {len(problems)} problems, first {problems[:5]}"
        # Every window is quiet for a good part of the year in every zone.
        assert QUARTERS // 8 < quiet_moments < QUARTERS * 3 // 4
