"""A stand-in for Twilio's REST API (the Messages resource of API version 2010-04-01).

The tests run it on 127.0.0.1, and the function reaches it through TWILIO_API_BASE_URL (its
Twilio carrier sends the official client's requests there). It answers creates,
fetches and filtered, paged lists as Twilio documents them, with Twilio's error bodies; tests
can script how the next creates go (refused, failing, held, dropped), change a message's
status, and post status callbacks signed as Twilio signs them.

It also runs on its own, so that SMS_CARRIER=twilio works locally with no Twilio account:
``python -m sms.devtools twilio-standin`` (sms/devtools/run_standin.py), and the local run
starts it itself. There it is made with ``deliver_after``: each message created with a
StatusCallback is then reported ``sent``, then ``delivered``, as Twilio reports an SMS that
reached the phone. The function never imports this package.

Its parts: ``messages`` (the resource: rules, error bodies, lists and pages), ``scripts``
(how the next creates go) and ``server`` (HTTP, holds, callbacks).
"""

from sms.devtools.twilio_standin.messages import num_segments, rfc2822, sign
from sms.devtools.twilio_standin.scripts import Accept, Behaviour, Drop, Hold, Refuse, ServerError
from sms.devtools.twilio_standin.server import RecordedRequest, TwilioStandIn, log

__all__ = [
    "Accept",
    "Behaviour",
    "Drop",
    "Hold",
    "RecordedRequest",
    "Refuse",
    "ServerError",
    "TwilioStandIn",
    "log",
    "num_segments",
    "rfc2822",
    "sign",
]
