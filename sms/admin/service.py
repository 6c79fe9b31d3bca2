"""The function's own app, for the commands that act as the function does: they go through
its use cases, its repository and its event transport (built by sms.bootstrap), so that the
rules, the answers and the events are the API's.

Such a command reads the function's settings before it connects (``read_settings``, its
``before``), and gets the app on the command's Firestore client from ``app``. Their log lines
go to stderr (``quiet``): stdout is the command's JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator

from sms import bootstrap, errors
from sms.admin.checks import Invalid
from sms.admin.store import ConfigStore, Unreachable, unanswered
from sms.bootstrap import App
from sms.carriers.log import LogCarrier
from sms.config import Settings
from sms.events.outbox import PUBLISH_SECONDS, Transport, Unpublished

# How long a command waits for the transport to take an announcement (as the sweeper waits;
# a request waits PUBLISH_SECONDS).
ANNOUNCE_SECONDS = PUBLISH_SECONDS * 5


def read_settings(args: argparse.Namespace) -> None:
    """The function's settings, checked before anything connects (Invalid naming what is
    wrong): ``args.settings``."""
    try:
        config = Settings.from_env()
    except ValueError as exc:
        raise Invalid(str(exc)) from exc
    args.settings = dataclasses.replace(
        config,
        project=args.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or config.project,
        database=args.database or config.database,
    )


def app(store: ConfigStore, settings: Settings) -> App:
    """The function's app on the command's client. These commands send no SMS, so it has
    the log carrier whatever SMS_CARRIER says (a sweep is the command that sends)."""
    from sms.repository import FirestoreStore  # noqa: PLC0415 Firestore's client, when used

    config = dataclasses.replace(settings, project=store.client.project)
    return bootstrap.build(config, store=FirestoreStore(store.client, config), carrier=LogCarrier())


def transport(built: App) -> Transport | None:
    """Where the app announces events; None where it has none (the Firestore emulator with no
    Pub/Sub emulator: events are recorded, and listed, but not pushed)."""
    announcer = built.outbox.transport
    return None if isinstance(announcer, Unpublished) else announcer


def announce(announcer: Transport, refs: dict[str, list[str]]) -> bool:
    """Announce committed events (tenant: ids); whether the transport took them in time.
    What it did not take, the sweeper announces on its next run (they are undispatched)."""
    with quiet():
        return announcer.publish(refs, ANNOUNCE_SECONDS)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The use cases' log lines on stderr: stdout is the command's JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


@contextlib.contextmanager
def answered(store: ConfigStore, seconds: float) -> Iterator[None]:
    """The function's store giving up on Firestore, said as the other commands say it."""
    try:
        yield
    except errors.BackendUnavailable as exc:
        if unanswered(exc):
            raise store.unreachable(seconds) from exc
        raise Unreachable(str(exc)) from exc
