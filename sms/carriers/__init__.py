"""Carriers: what hands an SMS to the phone network, behind one small interface.

The service is handed a ``Carrier`` as it is handed a store. A carrier either accepts a
message (a ``Receipt`` with its own id for it) or raises one of the project's carrier errors
(sms.errors): refused, unreachable (both: nothing was sent), or outcome unknown (it may have
gone out). ``find`` asks the carrier whether it holds a message already: after an unknown
outcome, that is what keeps "at most once" honest, since carriers keep no idempotency key.
It answers every record that may be the message, oldest first; the caller rules out those
it knows to be another message's.

    log      accepts every message at once and writes a log line (local runs, most tests)
    twilio   Twilio's Messages API, through the official ``twilio`` package
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from sms.config import Settings


@dataclass(frozen=True)
class Outgoing:
    """One SMS to hand over, and what recognises it among the carrier's records: the same
    numbers and text, created while it can have been handed over (``since`` to ``until``;
    until now, where ``until`` is None)."""

    to_number: str
    from_number: str
    text: str
    since: dt.datetime
    until: dt.datetime | None = None


@dataclass(frozen=True)
class Receipt:
    """A carrier's record of a message it took: its id and the status it reports."""

    carrier_id: str
    status: str  # in the service's words: sent, delivered, undelivered or failed
    error_code: str | None = None


class Carrier(Protocol):
    name: str

    @property
    def host(self) -> str | None:
        """Where its calls go (None: it calls nowhere)."""
        ...

    def send(self, sms: Outgoing, timeout: float) -> Receipt: ...

    def find(self, sms: Outgoing, timeout: float) -> list[Receipt]: ...


def check(settings: Settings) -> None:
    """Refuse carrier settings no carrier can be made from (ValueError naming the setting)."""
    if settings.carrier == "twilio" and not (
        settings.twilio_account_sid and settings.twilio_auth_token
    ):
        raise ValueError("SMS_CARRIER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")


def from_settings(settings: Settings) -> Carrier:
    """The carrier SMS_CARRIER names, configured from the environment (SPEC section 8)."""
    if settings.carrier == "twilio":
        from sms.carriers.twilio import TwilioCarrier  # noqa: PLC0415 imported only when used

        return TwilioCarrier.from_settings(settings)
    from sms.carriers.log import LogCarrier  # noqa: PLC0415

    return LogCarrier()
