"""The stand-in for Twilio's Messages API that the tests use, as they import it
(``from twilio_standin import ...``). It lives in the package sms/devtools/twilio_standin/,
which also runs it on its own for local runs (``python -m sms.devtools twilio-standin``)."""

from sms.devtools.twilio_standin import *  # noqa: F403
from sms.devtools.twilio_standin import (
    Accept,
    Behaviour,
    Drop,
    Hold,
    RecordedRequest,
    Refuse,
    ServerError,
    TwilioStandIn,
    num_segments,
    rfc2822,
    sign,
)

__all__ = [
    "Accept",
    "Behaviour",
    "Drop",
    "Hold",
    "RecordedRequest",
    "Refuse",
    "ServerError",
    "TwilioStandIn",
    "num_segments",
    "rfc2822",
    "sign",
]
