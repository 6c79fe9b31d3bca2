"""Play Twilio's part against a local run of the function.

    python -m sms.devtools reply +14155550100 "yes please"   a consumer's reply
    python -m sms.devtools status SM... delivered            a status callback
    python -m sms.devtools twilio-standin [--port 8099]      Twilio's Messages API, locally

``reply`` and ``status`` post to the function (--url, default the local run's) as Twilio
does: form-encoded and signed with TWILIO_AUTH_TOKEN over SMS_PUBLIC_BASE_URL and the path,
read from the environment, with the local run's values as defaults. They print what they
sent and the answer, and exit with status 1 unless the answer is a 2xx.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from sms.devtools import reply, run_standin, status

COMMANDS = (
    ("reply", reply, "Post a consumer's reply as Twilio's incoming-message webhook does."),
    ("status", status, "Post a status callback for a message as Twilio does."),
    ("twilio-standin", run_standin, "Serve a stand-in for Twilio's Messages API on this machine."),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sms.devtools",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, text in COMMANDS:
        sub = commands.add_parser(
            name,
            help=text,
            description=(module.__doc__ or text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run one command; its exit status. ``env`` stands for the environment (tests)."""
    args = build_parser().parse_args(argv)
    code: int = args.run(args, os.environ if env is None else env)
    return code


if __name__ == "__main__":
    sys.exit(main())
