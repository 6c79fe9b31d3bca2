"""The composition root: the one place that builds the app from its settings.

Every entry point (the targets of main.py, the admin command line) gets what it needs from an
``App`` built here: the store, the carrier, the clock and the use cases on them. A test
builds through the same function, handing in a clock, a carrier or a store of its own,
instead of patching attributes afterwards.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from sms import carriers, idempotency, logs
from sms.carriers import Carrier
from sms.carriers.twilio import TwilioWebhooks
from sms.chat_list import ChatList
from sms.chats import ChatSessions
from sms.clock import Clock, utc_now
from sms.config import Settings
from sms.delivery import Delivery
from sms.events.dispatch import Dispatcher
from sms.events.egress import AllowHosts, Egress
from sms.events.feed import EventFeed
from sms.events.outbox import Outbox, Transport, Unpublished
from sms.idempotency import Idempotency
from sms.outbound import OutboundSms
from sms.replies import Replies
from sms.sweeper import Sweeper

# A delivery round posts to every endpoint at once, each attempt within 15 s.
DISPATCH_DEADLINE_SECONDS = 40.0


@dataclass(frozen=True)
class App:
    """Everything the entry points work with, built once per process (or per test)."""

    settings: Settings
    clock: Clock
    store: Any  # the store each use case is handed; its protocols say what they need of it
    carrier: Carrier
    twilio_webhooks: TwilioWebhooks
    outbox: Outbox
    delivery: Delivery
    outbound: OutboundSms
    chats: ChatSessions
    replies: Replies
    keys: Idempotency
    sweeper: Sweeper
    events: EventFeed
    dispatcher: Dispatcher
    chat_list: ChatList


def build(
    settings: Settings,
    *,
    store: Any = None,
    carrier: Carrier | None = None,
    clock: Clock = utc_now,
    transport: Transport | None = None,
    egress: Egress | None = None,
) -> App:
    """The app the settings describe; ``store``, ``carrier``, ``clock``, ``transport`` and
    ``egress`` replace the ones it would make."""
    if store is None:
        from sms.repository import FirestoreStore  # noqa: PLC0415 Firestore's client, when used

        store = FirestoreStore.from_settings(settings)
    carrier = carrier if carrier is not None else carriers.from_settings(settings)
    outbox = Outbox(transport if transport is not None else _transport(settings))
    deadline_seconds = settings.request_deadline_seconds
    delivery = Delivery(
        store,
        carrier,
        clock,
        outbox=outbox,
        deadline_seconds=deadline_seconds,
        grace_seconds=settings.sweep_after_seconds,
    )
    # A request writes nothing after its deadline (but for giving a claim up), so a claim
    # older than this belongs to one that died. Late writes could not harm anyway: they are
    # made on the condition that the claim is still the one read.
    lease = dt.timedelta(seconds=deadline_seconds + idempotency.RELEASE_SECONDS)
    return App(
        settings=settings,
        clock=clock,
        store=store,
        carrier=carrier,
        twilio_webhooks=TwilioWebhooks.from_settings(settings),
        outbox=outbox,
        delivery=delivery,
        outbound=OutboundSms(
            store,
            delivery,
            clock,
            outbox=outbox,
            deadline_seconds=deadline_seconds,
            lease=lease,
        ),
        chats=ChatSessions(store, clock, outbox, deadline_seconds),
        replies=Replies(store, clock, outbox, deadline_seconds),
        keys=Idempotency(store, clock, deadline_seconds, lease),
        sweeper=Sweeper(
            store,
            delivery,
            clock,
            outbox,
            grace_seconds=settings.sweep_after_seconds,
            deadline_seconds=deadline_seconds,
        ),
        events=EventFeed(store, deadline_seconds),
        chat_list=ChatList(store, clock, deadline_seconds),
        dispatcher=Dispatcher(
            store,
            egress or Egress(AllowHosts.parse(settings.webhooks_allow_hosts)),
            clock,
            deadline_seconds=DISPATCH_DEADLINE_SECONDS,
        ),
    )


def _transport(settings: Settings) -> Transport:
    """Pub/Sub on SMS_EVENTS_TOPIC; none with the Firestore emulator and no Pub/Sub one."""
    if not settings.publish_events:
        return Unpublished("FIRESTORE_EMULATOR_HOST is set and PUBSUB_EMULATOR_HOST is not")
    from sms.events.pubsub import PubSubTransport  # noqa: PLC0415 the client, when it is used

    return PubSubTransport(settings.project or "", settings.events_topic)


def check(settings: Settings) -> None:
    """Refuse, naming the setting, what the function could not serve with (SPEC 8): it must
    stop at start rather than answer every request with a 500."""
    if not settings.project:
        raise ValueError(
            "GOOGLE_CLOUD_PROJECT is not set: it names the project whose Firestore the "
            "function uses (locally, the one its emulator data belongs to)"
        )
    carriers.check(settings)
    AllowHosts.parse(settings.webhooks_allow_hosts)


def settings_or_exit() -> Settings:
    """The process's settings, checked; a setting the function cannot use stops the process,
    with a message that names it (on stderr, and as an ERROR line of the log)."""
    try:
        settings = Settings.from_env()
        check(settings)
    except ValueError as exc:
        logs.event("ERROR", f"the function cannot start: {exc}")
        raise SystemExit(f"the function cannot start: {exc}") from None
    return settings


@functools.cache
def app() -> App:
    """The process's app, from its environment, built on first use: importing needs no
    credentials, and one instance serves every request."""
    return build(Settings.from_env())
