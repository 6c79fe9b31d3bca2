"""Serve the tests' stand-in for Twilio's Messages API on its own, so that SMS_CARRIER=twilio
works locally with no Twilio account.

    python -m sms.devtools twilio-standin [--port 8099]

It takes the messages the function sends, reports each one sent, then delivered, to the
StatusCallback the function gave (signed as Twilio signs), and prints what it does and the
environment to give the function. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
from collections.abc import Mapping

from sms.devtools import webhook
from sms.devtools.twilio_standin import TwilioStandIn
from sms.devtools.twilio_standin import log as standin_log

DEFAULT_PORT = 8099
# How long the stand-in takes to report a message sent, then delivered.
DELIVER_AFTER_SECONDS = 1.0


def local_standin() -> TwilioStandIn:
    """The stand-in with the local run's account, reporting deliveries as Twilio does."""
    return TwilioStandIn(
        account_sid=webhook.LOCAL_ACCOUNT_SID,
        auth_token=webhook.LOCAL_AUTH_TOKEN,
        deliver_after=DELIVER_AFTER_SECONDS,
    )


def show_activity() -> None:
    """Print what the stand-in does (messages created, status callbacks) on stdout."""
    if not standin_log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("Twilio stand-in: %(message)s"))
        standin_log.addHandler(handler)
        standin_log.setLevel(logging.INFO)
        standin_log.propagate = False


def function_env(standin: TwilioStandIn, function_url: str) -> dict[str, str]:
    """The environment with which a function sends through ``standin`` and is reached by it
    at ``function_url``."""
    return {
        "SMS_CARRIER": "twilio",
        "TWILIO_ACCOUNT_SID": standin.account_sid,
        "TWILIO_AUTH_TOKEN": standin.auth_token,
        "TWILIO_API_BASE_URL": standin.url,
        "SMS_PUBLIC_BASE_URL": function_url,
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="the port to serve on (%(default)s)"
    )
    parser.add_argument(
        "--function-url",
        default=webhook.LOCAL_URL,
        help="where the function serves, for its SMS_PUBLIC_BASE_URL (%(default)s)",
    )


def _stop(signum: int, _: object) -> None:
    raise SystemExit(0)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    standin = local_standin()
    try:
        standin.start(port=args.port)
    except OSError as exc:
        print(f"Cannot serve on port {args.port} ({exc}): pass --port.", file=sys.stderr)
        return 2
    # Ctrl-C too: a shell that starts it in the background has it ignore SIGINT otherwise.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, _stop)
    try:
        show_activity()
        exports = " ".join(
            f"{name}={shlex.quote(value)}"
            for name, value in function_env(standin, args.function_url.rstrip("/")).items()
        )
        print(
            f"A stand-in for Twilio's Messages API is serving on {standin.url} (account "
            f"{standin.account_sid}).\nIt reports each message sent, then delivered, to the "
            f"message's StatusCallback.\n\nGive the function this environment (then start it, "
            f"e.g. bash scripts/run-local.sh):\n\n  export {exports}\n\nCtrl-C stops it.",
            flush=True,
        )
        signal.pause()
    finally:
        standin.stop()
        print("\nStopped the Twilio stand-in.", flush=True)
    return 0
