"""Post a consumer's reply to the function as Twilio posts an incoming SMS ("A message comes
in" webhook, SPEC 10.5): form-encoded, signed with TWILIO_AUTH_TOKEN over
SMS_PUBLIC_BASE_URL/apps/api/v1/sms/inbound (unset: the local run's token, and --url).

    python -m sms.devtools reply +14155550100 "yes please" [--to +16285550199]
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Mapping

from sms.devtools import webhook
from sms.devtools.twilio_standin import num_segments

INBOUND_PATH = "/apps/api/v1/sms/inbound"
DEMO_NUMBER = "+16285550199"  # the demo tenant's number (run_local.py's DEMO_SETUP)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def e164(text: str) -> str:
    """A number as Twilio writes it: E.164 ('+1 415-555-0100' is taken as +14155550100)."""
    number = re.sub(r"[\s().-]", "", text)
    if not _E164.match(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not an E.164 number like +14155550100")
    return number


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sender", metavar="FROM", type=e164, help="the consumer's number")
    parser.add_argument("text", metavar="TEXT", help="what the consumer wrote")
    parser.add_argument(
        "--to",
        type=e164,
        default=DEMO_NUMBER,
        help="the tenant's number the reply came to (default: the demo tenant's, %(default)s)",
    )
    webhook.add_url_argument(parser)


def incoming_form(sender: str, to: str, text: str, account_sid: str) -> dict[str, str]:
    """The form Twilio posts for an incoming SMS (a fresh MessageSid each time)."""
    sid = "SM" + uuid.uuid4().hex
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "From": sender,
        "To": to,
        "Body": text,
        "NumMedia": "0",
        "NumSegments": str(num_segments(text)),
        "SmsStatus": "received",
        "ApiVersion": webhook.API_VERSION,
    }


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    account = webhook.Account.from_env(env, args.url)
    form = incoming_form(args.sender, args.to, args.text, account.account_sid)
    return webhook.post(args.url, INBOUND_PATH, form, account)
