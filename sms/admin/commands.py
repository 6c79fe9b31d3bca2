"""What the group modules build their commands with: a GROUP of ``python -m sms.admin``, its
ACTIONs, and how they show what they read.

A group module (tenants.py, numbers.py...) has ``add_commands(groups)``, which adds its group
with ``group()`` and each action with ``command()``. An action runs as
``run(store, args)`` (store: a ConfigStore) and returns what the command prints as JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Actions = Any  # what argparse's add_subparsers returns


def group(groups: Actions, name: str, help_text: str) -> Actions:
    """Add the group ``name``; where its actions are added."""
    parser = groups.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def command(
    actions: Actions, name: str, run: Callable[..., Any], help_text: str, *positionals: str
) -> argparse.ArgumentParser:
    """Add the action ``name`` that ``run`` carries out; its parser, for options."""
    sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
    sub.set_defaults(run=run)
    for positional in positionals:
        sub.add_argument(positional, metavar=positional.upper())
    return sub


def iso(value: Any) -> str | None:
    """A stored timestamp as printed: ISO 8601, or None."""
    return value.isoformat() if value is not None else None
