"""sweep: settle the messages senders left unsettled, as the sms_sweeper function does.

Unlike the other commands, a sweep is not held to the command line's one time budget: the
sweeper gives each message a deadline of its own, and each round a budget of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from typing import Any

from sms import errors
from sms.admin.checks import Invalid
from sms.admin.commands import Actions
from sms.admin.store import ConfigStore, unanswered
from sms.config import Settings


def _sweep_settings(args: argparse.Namespace) -> None:
    """The function's settings for a sweep, checked before anything connects."""
    try:
        config = dataclasses.replace(
            Settings.from_env(), project=args.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
        )
        if config.carrier == "twilio":
            from sms import carriers  # noqa: PLC0415 only this command sends

            carriers.from_settings(config)
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    if config.carrier == "log" and not os.environ.get("FIRESTORE_EMULATOR_HOST"):
        # The log carrier sends nothing: on a real project, a sweep would record unsent
        # messages as sent.
        raise Invalid(
            "SMS_CARRIER is 'log', which sends nothing: set SMS_CARRIER=twilio and the "
            "TWILIO_* variables the function runs with (the sweep may send SMS)"
        )
    args.settings = config


def sweep(store: ConfigStore, args: argparse.Namespace) -> Any:
    """Settle the messages senders left unsettled, as the sms_sweeper target does."""
    from sms import bootstrap, jobs  # noqa: PLC0415 only this command sends
    from sms.repository import FirestoreStore  # noqa: PLC0415

    config: Settings = args.settings
    app = bootstrap.build(config, store=FirestoreStore(store.client, config))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # its log lines; the report goes to stdout
            swept = app.sweeper.run()
    except errors.BackendUnavailable as exc:
        if not unanswered(exc):
            raise
        raise store.unreachable(config.request_deadline_seconds) from exc
    return jobs.sweep_report(swept)


def add_commands(groups: Actions) -> None:
    text = (
        "Settle the messages a crashed or timed-out sender left queued or sending "
        "(SMS_SWEEP_AFTER_SECONDS old), as the sms_sweeper function does; prints what it did."
    )
    groups.add_parser("sweep", help=text, description=text).set_defaults(
        run=sweep, before=_sweep_settings, own_deadlines=True
    )
