"""Post a webhook to the local function as Twilio posts it: form-encoded, with
``X-Twilio-Signature`` computed by the ``twilio`` package's RequestValidator over
``{SMS_PUBLIC_BASE_URL}{path}`` and the form, with the account's auth token (SPEC 10.3, 10.5).

What the reply and status commands share, and the Twilio account of a local run: the local
run (run_local.py) and the Twilio stand-in (run_standin.py) use these defaults unless the
environment names others, so the commands work against them with no setting at all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from twilio.request_validator import RequestValidator

# The Twilio account of a local run: not a real one, and good only on this machine.
LOCAL_ACCOUNT_SID = "AC" + "0" * 32
LOCAL_AUTH_TOKEN = "local-twilio-auth-token"  # noqa: S105 a stand-in's, public on purpose
# Where the local run serves the function (bash scripts/run-local.sh, PORT unset).
LOCAL_URL = "http://127.0.0.1:8080"
API_VERSION = "2010-04-01"


@dataclass(frozen=True)
class Account:
    """What a webhook is signed and sent with, as the environment says (or the local run's)."""

    account_sid: str
    auth_token: str
    token_source: str  # where the token came from, for the 403 hint (never the token)
    public_base_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], url: str) -> Account:
        """TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and SMS_PUBLIC_BASE_URL, defaulting to the
        local run's account and to ``url`` (the local run gives the function its own URL)."""
        token = env.get("TWILIO_AUTH_TOKEN")
        return cls(
            account_sid=env.get("TWILIO_ACCOUNT_SID") or LOCAL_ACCOUNT_SID,
            auth_token=token or LOCAL_AUTH_TOKEN,
            token_source="TWILIO_AUTH_TOKEN" if token else "the local run's auth token",
            public_base_url=(env.get("SMS_PUBLIC_BASE_URL") or url).rstrip("/"),
        )


def add_url_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=LOCAL_URL,
        help="where the function serves (default: %(default)s, the local run's)",
    )


def post(url: str, path: str, form: dict[str, str], account: Account) -> int:
    """POST the signed form to ``url`` + ``path``; print what was sent and the answer. The exit
    status: 0 for a 2xx answer, else 1 (with a hint when the signature was refused)."""
    target = url.rstrip("/") + path
    signed_over = account.public_base_url + path
    signature: str = RequestValidator(account.auth_token).compute_signature(signed_over, form)
    print(f"POST {target}")
    print(
        f"X-Twilio-Signature: {signature} (signed with {account.token_source} over {signed_over})"
    )
    for name, value in form.items():
        print(f"  {name}={value}")
    headers = {"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"}
    try:
        answer = requests.post(target, data=form, headers=headers, timeout=30)
    except requests.RequestException as exc:
        print(
            f"\nNo answer from {url}: {exc}\nIs the function serving there "
            "(bash scripts/run-local.sh)? --url names another address.",
            file=sys.stderr,
        )
        return 1
    print(f"\n{answer.status_code} {answer.reason}")
    if answer.text:
        print(answer.text)
    if 200 <= answer.status_code < 300:
        return 0
    if answer.status_code == 403:
        print(
            f"\nThe function refused the signature: the auth token or the base URL differ from "
            f"the server's. This was signed with {account.token_source} over {signed_over}; "
            "the server checks with the TWILIO_AUTH_TOKEN and SMS_PUBLIC_BASE_URL it runs with. "
            "Set both here as the server has them (the local run sets them unless they were "
            "set already: the token to its own, the base URL to its own URL).",
            file=sys.stderr,
        )
    return 1
