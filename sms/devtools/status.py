"""Post a status callback for a message to the function as Twilio posts one to a message's
StatusCallback (SPEC 10.3): form-encoded, signed with TWILIO_AUTH_TOKEN over
SMS_PUBLIC_BASE_URL/apps/api/v1/sms/status (unset: the local run's token, and --url).

    python -m sms.devtools status SM0123456789abcdef0123456789abcdef delivered
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from sms.devtools import webhook

STATUS_PATH = "/apps/api/v1/sms/status"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sid",
        metavar="MESSAGE_SID",
        help="the message's id at the carrier: its carrier_id in the transcript "
        "(GET /apps/api/v1/chats/{id}/messages)",
    )
    parser.add_argument(
        "status",
        metavar="STATUS",
        help="Twilio's MessageStatus: queued, sent, delivered, undelivered, failed, read...",
    )
    parser.add_argument(
        "--error-code", type=int, help="Twilio's ErrorCode, e.g. 30003 (unreachable handset)"
    )
    webhook.add_url_argument(parser)


def status_form(sid: str, status: str, error_code: int | None, account_sid: str) -> dict[str, str]:
    """The form Twilio posts to a StatusCallback."""
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": account_sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": webhook.API_VERSION,
    }
    if error_code is not None:
        form["ErrorCode"] = str(error_code)
    return form


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    account = webhook.Account.from_env(env, args.url)
    form = status_form(args.sid, args.status, args.error_code, account.account_sid)
    return webhook.post(args.url, STATUS_PATH, form, account)
