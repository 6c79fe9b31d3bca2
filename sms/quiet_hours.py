"""Quiet hours (SPEC 10.8): may a message that opens a session go to a number now, and if not, when?

The model: a tenant's window `[start, end)` is a set of minutes of the consumer's local
wall-clock day (it wraps midnight when end < start); with `state_rules`, a number the geocoder
places in Florida, Oklahoma or Maryland is also quiet in [20:00, 08:00). A number has one or
more zones (phonenumbers' data, else the tenant's default zone). It is quiet at an instant when
the wall clock of ANY of its zones shows a quiet minute at that instant, and a hold lasts until
the first instant at which none does. Judging each instant by its wall clock handles DST gaps and
overlaps with no special case: quietness can change only where a zone's clock reaches the edge of
a quiet stretch or where its UTC offset changes, and `check` jumps from one such instant to the
next instead of walking minute by minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers

DEFAULT_TIME_ZONE = "America/New_York"
POLICIES = ("hold", "refuse")

#: States whose laws forbid such texts outside 08:00-20:00 local time (`state_rules`).
STATE_RULE_STATES = frozenset({"Florida", "Oklahoma", "Maryland"})

_DAY = 24 * 60
_STATE_QUIET_START = 20 * 60
_STATE_QUIET_END = 8 * 60
# A quiet stretch that never ends (the rules cover the whole day in some zone).
_ALL_DAY = -1
# How far `check` looks for a moment to send. A window is shorter than a day and the zones of one
# number differ by less than a day, so a moment to send, if there is any, comes well within this.
_HORIZON = 3 * _DAY
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MINUTE = timedelta(minutes=1)
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
# Names zoneinfo may know on a host that are not a place: the host's own zone and a placeholder.
_NOT_PLACES = frozenset({"localtime", "Factory"})
# For a number it cannot place more precisely, phonenumbers answers with every zone of the
# country code; for +1 (the North American Numbering Plan) that is 42 zones from Guam (UTC+10) to
# Pago Pago (UTC-11), which says nothing about where the consumer is.
_NANP_COUNTRY_CODE = 1


# phonenumbers' zone and place data are large (some 100 MB and a quarter of a second to load):
# they are loaded when a number is first judged, so that a process whose tenants keep no quiet
# hours never pays for them.
@lru_cache(maxsize=1)
def _nanp_wide_zones() -> tuple[str, ...]:
    from phonenumbers.tzdata import TIMEZONE_DATA  # noqa: PLC0415 see above

    return tuple(TIMEZONE_DATA.get(str(_NANP_COUNTRY_CODE), ()))


_STATE_CODES = {
    "AL": "Alabama",
    "AK": "Alaska",
    "AZ": "Arizona",
    "AR": "Arkansas",
    "CA": "California",
    "CO": "Colorado",
    "CT": "Connecticut",
    "DE": "Delaware",
    "DC": "District of Columbia",
    "FL": "Florida",
    "GA": "Georgia",
    "HI": "Hawaii",
    "ID": "Idaho",
    "IL": "Illinois",
    "IN": "Indiana",
    "IA": "Iowa",
    "KS": "Kansas",
    "KY": "Kentucky",
    "LA": "Louisiana",
    "ME": "Maine",
    "MD": "Maryland",
    "MA": "Massachusetts",
    "MI": "Michigan",
    "MN": "Minnesota",
    "MS": "Mississippi",
    "MO": "Missouri",
    "MT": "Montana",
    "NE": "Nebraska",
    "NV": "Nevada",
    "NH": "New Hampshire",
    "NJ": "New Jersey",
    "NM": "New Mexico",
    "NY": "New York",
    "NC": "North Carolina",
    "ND": "North Dakota",
    "OH": "Ohio",
    "OK": "Oklahoma",
    "OR": "Oregon",
    "PA": "Pennsylvania",
    "RI": "Rhode Island",
    "SC": "South Carolina",
    "SD": "South Dakota",
    "TN": "Tennessee",
    "TX": "Texas",
    "UT": "Utah",
    "VT": "Vermont",
    "VA": "Virginia",
    "WA": "Washington",
    "WV": "West Virginia",
    "WI": "Wisconsin",
    "WY": "Wyoming",
}
# The geocoder names a US number's place either "City, ST" or by the state's name alone, which
# for two places is not the plain name.
_STATE_NAMES = {name: name for name in _STATE_CODES.values()} | {
    "Washington State": "Washington",
    "Washington D.C.": "District of Columbia",
}


@dataclass(frozen=True)
class QuietHours:
    """A tenant's quiet hours: minutes after local midnight, the policy, and the state rules."""

    start: int
    end: int
    policy: str
    state_rules: bool = False

    def __post_init__(self) -> None:
        for name, minute in (("start", self.start), ("end", self.end)):
            if isinstance(minute, bool) or not isinstance(minute, int) or not 0 <= minute < _DAY:
                raise ValueError(f"quiet_hours.{name} must be a minute of the day 0..1439")
        if self.start == self.end:
            raise ValueError("quiet_hours.start and quiet_hours.end must differ")
        if self.policy not in POLICIES:
            raise ValueError(f"quiet_hours.policy must be 'hold' or 'refuse', got {self.policy!r}")
        if not isinstance(self.state_rules, bool):
            raise ValueError("quiet_hours.state_rules must be true or false")


@dataclass(frozen=True)
class Verdict:
    """Whether a number is in quiet hours now, until when, and the zones that decided it.

    `until` is None when not quiet; it is also None for a quiet number when no moment within
    three days is outside the rules in every zone (the rules leave that number no time to send,
    so a hold could never end).
    """

    quiet: bool
    until: datetime | None
    zones: tuple[str, ...]


def parse_hhmm(text: object) -> int:
    """Minutes after midnight of a "HH:MM" time from 00:00 to 23:59."""
    if not isinstance(text, str):
        raise ValueError(f'must be a time "HH:MM", got {type(text).__name__}')
    match = _HHMM.fullmatch(text)
    if match is None:
        raise ValueError(f'must be a time "HH:MM" from 00:00 to 23:59, got {text!r}')
    return int(match[1]) * 60 + int(match[2])


def judge_quiet_hours(value: object) -> QuietHours:
    """The QuietHours of a tenant document's `quiet_hours` map; ValueError naming what is wrong."""
    if not isinstance(value, dict):
        raise ValueError(f"quiet_hours must be a map, got {type(value).__name__}")
    minutes: dict[str, int] = {}
    for key in ("start", "end"):
        if key not in value:
            raise ValueError(f"quiet_hours.{key} is missing")
        try:
            minutes[key] = parse_hhmm(value[key])
        except ValueError as error:
            raise ValueError(f"quiet_hours.{key} {error}") from None
    if minutes["start"] == minutes["end"]:
        raise ValueError(
            f"quiet_hours.start and quiet_hours.end are both {value['start']}: "
            "the window would be empty"
        )
    policy = value.get("policy")
    if policy not in POLICIES:
        raise ValueError(f"quiet_hours.policy must be 'hold' or 'refuse', got {policy!r}")
    state_rules = value.get("state_rules", False)
    if not isinstance(state_rules, bool):
        raise ValueError(f"quiet_hours.state_rules must be true or false, got {state_rules!r}")
    return QuietHours(minutes["start"], minutes["end"], str(policy), state_rules)


@lru_cache(maxsize=1)
def _known_zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_PLACES


def judge_time_zone(value: object) -> str:
    """The name, when it is an IANA time zone name that zoneinfo knows; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"a time zone must be an IANA name, got {type(value).__name__}")
    if value not in _known_zone_names():
        raise ValueError(
            f"unknown time zone {value!r}: expected an IANA name like 'America/Chicago'"
        )
    _zone(value)
    return value


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _is_loadable(name: str) -> bool:
    try:
        _zone(name)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def zones_for(e164: str, default_zone: str) -> tuple[str, ...]:
    """The number's time zones from phonenumbers, or (default_zone,) where it knows none."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return (default_zone,)
    if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.TOLL_FREE:
        return (default_zone,)
    from phonenumbers import timezone as phone_time_zones  # noqa: PLC0415 see _nanp_wide_zones

    names = tuple(phone_time_zones.time_zones_for_number(number))
    if number.country_code == _NANP_COUNTRY_CODE and names == _nanp_wide_zones():
        return (default_zone,)
    known = tuple(name for name in names if _is_loadable(name))
    return known or (default_zone,)


@lru_cache(maxsize=65536)
def state_of(e164: str) -> str | None:
    """The US state (or "District of Columbia") the geocoder places the number in, else None."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.region_code_for_number(number) != "US":
        return None
    from phonenumbers import geocoder  # noqa: PLC0415 see _nanp_wide_zones

    place = geocoder.description_for_number(number, "en")
    if ", " in place:
        return _STATE_CODES.get(place.rsplit(", ", 1)[1])
    return _STATE_NAMES.get(place)


@lru_cache(maxsize=256)
def _stretches(start: int, end: int, state_rule: bool) -> tuple[int, ...]:
    """For each minute of the local day, how many minutes until the clock leaves the quiet minutes.

    0 for a minute that is not quiet, _ALL_DAY when every minute of the day is quiet.
    """
    quiet = [
        start <= minute < end if start < end else minute >= start or minute < end
        for minute in range(_DAY)
    ]
    if state_rule:
        quiet = [q or m >= _STATE_QUIET_START or m < _STATE_QUIET_END for m, q in enumerate(quiet)]
    if all(quiet):
        return (_ALL_DAY,) * _DAY
    left = [0] * _DAY
    # Walk the day backwards from a minute that is not quiet, counting down each quiet stretch.
    first_out = quiet.index(False)
    count = 0
    for step in range(_DAY):
        minute = (first_out - step) % _DAY
        count = count + 1 if quiet[minute] else 0
        left[minute] = count
    return tuple(left)


def _offset(zone: ZoneInfo, minute: int) -> timedelta | None:
    """The zone's UTC offset at a minute since the epoch."""
    return datetime.fromtimestamp(minute * 60, zone).utcoffset()


def _first_change(zone: ZoneInfo, before: int, after: int, offset: timedelta | None) -> int:
    """The first minute in (before, after] at which the zone's offset is no longer `offset`."""
    while after - before > 1:
        middle = (before + after) // 2
        if _offset(zone, middle) == offset:
            before = middle
        else:
            after = middle
    return after


def _exit(zone: ZoneInfo, stretches: tuple[int, ...], minute: int) -> int | None:
    """The first minute at or after `minute` that is not quiet in the zone; None if there is none.

    A zone's offset changes at most once within a day (real rules change it a few times a year),
    so a quiet stretch, shorter than a day, holds at most one change: when the offset is the
    same at both ends of the stretch, the stretch ends where the wall clock says.
    """
    local = datetime.fromtimestamp(minute * 60, zone)
    while (left := stretches[local.hour * 60 + local.minute]) != 0:
        if left == _ALL_DAY:
            return None
        end = minute + left
        offset = local.utcoffset()
        if _offset(zone, end) == offset:
            return end
        # The offset changes within the stretch: the clock jumps, maybe out of the quiet minutes.
        minute = _first_change(zone, minute, end, offset)
        local = datetime.fromtimestamp(minute * 60, zone)
    return minute


@lru_cache(maxsize=65536)
def _plan(
    e164: str, start: int, end: int, state_rules: bool, default_zone: str
) -> tuple[tuple[str, ...], tuple[ZoneInfo, ...], tuple[int, ...]]:
    """What `check` needs of a number and rules: the zone names, their zones, the stretches."""
    names = zones_for(e164, default_zone)
    state_rule = state_rules and state_of(e164) in STATE_RULE_STATES
    return names, tuple(_zone(name) for name in names), _stretches(start, end, state_rule)


@lru_cache(maxsize=1024)
def _not_quiet(names: tuple[str, ...]) -> Verdict:
    return Verdict(False, None, names)


def check(e164: str, rules: QuietHours, default_zone: str, now: datetime) -> Verdict:
    """Whether the number is in quiet hours at `now` (aware), and the first moment it is not.

    `default_zone` must be a zone zoneinfo knows (see judge_time_zone); ValueError otherwise.
    """
    names, zones, stretches = _plan(e164, rules.start, rules.end, rules.state_rules, default_zone)
    # Whole minutes since the epoch: offsets and their changes fall on whole minutes, so the
    # quietness of every instant within a minute is that of the minute's start.
    try:
        begin = (now - _EPOCH) // _MINUTE
    except TypeError:
        raise ValueError("now must be an aware datetime") from None
    minute = begin
    while True:
        # No moment before the latest exit of the zones quiet now is outside in every zone.
        latest = minute
        for zone in zones:
            exit_minute = _exit(zone, stretches, minute)
            if exit_minute is None:
                return Verdict(True, None, names)
            latest = max(latest, exit_minute)
        if latest == minute:
            break
        if latest - begin > _HORIZON:
            return Verdict(True, None, names)
        minute = latest
        if len(zones) == 1:
            break  # where one zone's quiet stretch ends, that zone is not quiet
    if minute == begin:
        return _not_quiet(names)
    return Verdict(True, _EPOCH + minute * _MINUTE, names)
