"""python -m sms.admin: configure tenants in Firestore, as SPEC section 7 describes them.

Works against the Firestore emulator when FIRESTORE_EMULATOR_HOST is set, and against a real
project otherwise (Application Default Credentials: `gcloud auth application-default login`).
Every input is checked before anything is written: a command either does all it says or
changes nothing, and says why on stderr with a non-zero exit status. A command waits on
Firestore for COMMAND_SECONDS at most, all its calls together (the sweep and numbers reindex:
each step), then says where it tried and how to fix that.

Each GROUP of commands is a module of this package (tenants.py, numbers.py...) with
``add_commands(groups)``, built with sms/admin/commands.py; ``sms/admin/store.py`` is the
only module that calls Firestore itself. The commands that act as the function does (sweep,
chats, events, the events of opt-outs) go through the function's own use cases, repository
and transport, from ``sms/admin/service.py``. A new group is one such module, plus its
``add_commands`` in GROUPS below (the order of GROUPS is the order of ``--help``).

Exit status: 0 done; 2 bad input (nothing written); 1 the store is not as the command needs
(missing, exists, unreachable: nothing written), or the command did part of its work and says
what is left (a JSON report with "conflicts" or "unfinished", and a line on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore

from sms import deadline
from sms.admin import (
    agents,
    chats,
    credentials,
    events,
    numbers,
    opt_outs,
    sweep,
    tenants,
    webhooks,
)
from sms.admin.checks import Answered, Invalid
from sms.admin.commands import Actions
from sms.admin.store import COMMAND_SECONDS, ConfigStore, Exists, Missing, Unfit, Unreachable

EXIT_INVALID = 2  # bad input (argparse uses 2 as well)
EXIT_STATE = 1  # the store is not as the command needs (missing, exists, unreachable)

GROUPS: tuple[Callable[[Actions], None], ...] = (
    tenants.add_commands,
    numbers.add_commands,
    agents.add_commands,
    credentials.add_commands,
    webhooks.add_commands,
    opt_outs.add_commands,
    chats.add_commands,
    events.add_commands,
    sweep.add_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sms.admin",
        description="Configure the tenants of the Outbound SMS API in Firestore.",
        epilog="Against the emulator: set FIRESTORE_EMULATOR_HOST. Against a project: "
        "gcloud auth application-default login, then --project or GOOGLE_CLOUD_PROJECT.",
    )
    parser.add_argument("--project", help="Google Cloud project (default: GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--database", help="Firestore database (default: FIRESTORE_DATABASE)")
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    for add_commands in GROUPS:
        add_commands(groups)
    return parser


def _database(args: argparse.Namespace) -> str:
    return str(args.database or os.environ.get("FIRESTORE_DATABASE") or "(default)")


def _client(args: argparse.Namespace) -> firestore.Client:
    """The client of the project the command names: never one guessed from the machine (the
    emulator's default project is not the one the function reads)."""
    project = args.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
        where = f"the emulator at {emulator}" if emulator else "Firestore"
        raise Invalid(
            f"which project of {where}? Set GOOGLE_CLOUD_PROJECT or pass --project "
            "(the local run prints the exports to use)"
        )
    return firestore.Client(project=project, database=_database(args))


def _time_budget(args: argparse.Namespace) -> contextlib.AbstractContextManager[Any]:
    """One deadline for all the command's calls, unless it keeps deadlines of its own (the
    sweep gives each message one, numbers reindex each number)."""
    if getattr(args, "own_deadlines", False):
        return contextlib.nullcontext()
    return deadline.bounded(COMMAND_SECONDS)


def main(argv: Sequence[str] | None = None, client: firestore.Client | None = None) -> int:
    """Run one command; the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "before"):
            args.before(args)
        with _time_budget(args):
            store = ConfigStore(client or _client(args), _database(args))
            result = args.run(store, args)
    except Invalid as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_INVALID
    except (Missing, Exists, Unfit) as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_STATE
    except Answered as exc:  # the function's own refusal, in its API's words
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STATE if exc.state else EXIT_INVALID
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_STATE
    except (gexc.GoogleAPICallError, gexc.RetryError, auth_exceptions.GoogleAuthError) as exc:
        print(f"error: Firestore could not be used: {exc}", file=sys.stderr)
        return EXIT_STATE
    print(json.dumps(result, indent=2, default=str, ensure_ascii=False))
    if isinstance(result, dict) and "token" in result:
        print("The token is shown only this once: store it now.", file=sys.stderr)
    if isinstance(result, dict) and "secret" in result:
        print("The secret is shown only this once: store it now.", file=sys.stderr)
    if isinstance(result, dict) and result.get("unfinished"):
        print(f"error: {result['unfinished']}", file=sys.stderr)
        return EXIT_STATE
    if isinstance(result, dict) and result.get("conflicts"):
        print("error: numbers held by another tenant were left as they are", file=sys.stderr)
        return EXIT_STATE
    return 0
