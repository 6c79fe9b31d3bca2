"""The stand-in for Twilio's Messages API that the tests use, as they import it
(``from twilio_standin import ...``). It lives in the package sms/devtools/twilio_standin/,
which also runs it on its own for local runs (``python -m sms.devtools twilio-standin``)."""

from sms.devtools.twilio_standin import *  # noqa: F403
from sms.devtools.twilio_standin import __all__  # noqa: F401 what the tests may import, as the package says
