"""How the stand-in's next creates go, as a test scripts them (TwilioStandIn.script)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Accept:
    """Create the message normally (what an empty script does too)."""


@dataclass(frozen=True)
class Refuse:
    """Answer the create with this Twilio error and store nothing."""

    code: int
    status: int = 400
    message: str | None = None


@dataclass(frozen=True)
class ServerError:
    """Answer the create with error 20500, after storing the message if `record`."""

    record: bool
    status: int = 500


@dataclass(frozen=True)
class Hold:
    """Hold the create until release(), `seconds`, or stop; store it before, after or never."""

    record: Literal["before", "after", "never"] = "before"
    seconds: float | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer, after storing the message if `record`."""

    record: bool = False


Behaviour = Accept | Refuse | ServerError | Hold | Drop
