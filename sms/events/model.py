"""What an event is, as the tenant's systems receive it (SPEC 10.7).

An event is made by the use case that makes the change, with the change's data rendered as
the API renders it (the chat document of SPEC 5, the message of 10.5), and written by the
same commit. Its body is the JSON object delivered to webhooks and listed by
GET /apps/api/v1/events, keys in the documented order; it is serialised once and kept as
text, so that every delivery and every listing is the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sms import render
from sms.domain import Chat, Event, Message

CHAT_CREATED, CHAT_ASSIGNED, CHAT_ENDED = "chat.created", "chat.assigned", "chat.ended"
MESSAGE_RECEIVED = "message.received"
OPTED_OUT, OPTED_IN = "consumer.opted_out", "consumer.opted_in"
# An outbound message's statuses that are events, each as its type.
MESSAGE_STATUS_TYPES = {
    "sent": "message.sent",
    "delivered": "message.delivered",
    "undelivered": "message.undelivered",
    "failed": "message.failed",
}
TYPES = (
    CHAT_CREATED,
    CHAT_ASSIGNED,
    CHAT_ENDED,
    MESSAGE_RECEIVED,
    *MESSAGE_STATUS_TYPES.values(),
    OPTED_OUT,
    OPTED_IN,
)
# Where an opt-out or its lifting came from.
SOURCES = {"keyword": "keyword", "carrier": "carrier", "admin": "admin"}
# How long events are kept (a TTL on their documents) and retried.
KEPT = dt.timedelta(days=30)
RETRIED = dt.timedelta(days=3)


EVENT_ID = re.compile(r"evt_[0-9a-f]{32}")  # as new_id makes them


def new_id(at: dt.datetime) -> str:
    """A fresh event id: "evt_", the time in milliseconds, then randomness (sorts by time)."""
    millis = int(at.timestamp() * 1000)
    return f"evt_{millis:012x}{secrets.token_hex(10)}"


def event(kind: str, tenant: str, at: dt.datetime, data: dict[str, Any]) -> Event:
    """An event of type ``kind`` for a change made at ``at``."""
    assert kind in TYPES, kind
    return Event(id=new_id(at), type=kind, tenant=tenant, at=at, data=data)


def chat_event(kind: str, tenant: str, chat: Chat, at: dt.datetime) -> Event:
    """chat.created, chat.assigned or chat.ended: the chat document as the change left it."""
    return event(kind, tenant, at, render.chat_document(chat))


def message_events(
    tenant: str, before: Message | None, after: Message, at: dt.datetime
) -> list[Event]:
    """One event per status of 10.7 an outbound message reached in one change (a carrier that
    reports ``delivered`` first is ``sent`` on the way), each with the message after it."""
    reached = (
        after.reached(before) if before is not None else tuple(c.status for c in after.history)
    )
    data = render.message_document(after)
    return [
        event(MESSAGE_STATUS_TYPES[status], tenant, at, data)
        for status in reached
        if status in MESSAGE_STATUS_TYPES
    ]


def received_event(tenant: str, message: Message) -> Event:
    return event(MESSAGE_RECEIVED, tenant, message.created_at, render.message_document(message))


def consumer_event(kind: str, tenant: str, number: str, source: str, at: dt.datetime) -> Event:
    """consumer.opted_out or consumer.opted_in, and where it came from."""
    return event(kind, tenant, at, {"number": number, "source": SOURCES[source]})


def document(evt: Event) -> dict[str, Any]:
    """The event as delivered and listed: id, type, timestamp, tenant, data."""
    return {
        "id": evt.id,
        "type": evt.type,
        "timestamp": render.timestamp(evt.at),
        "tenant": evt.tenant,
        "data": evt.data,
    }


def body(evt: Event) -> str:
    """The event's JSON text, made once: what every delivery sends and every listing shows."""
    return json.dumps(document(evt), ensure_ascii=False, separators=(",", ":"))


# ---- what the dispatcher reads and records ----------------------------------------------

DELIVERED, FAILING, GONE, GIVEN_UP = "delivered", "failing", "gone", "given_up"
DONE = frozenset({DELIVERED, GONE, GIVEN_UP})  # an endpoint that will get no more attempts


@dataclass(frozen=True)
class Secret:
    secret: str
    expires_at: dt.datetime | None = None

    def signs_at(self, now: dt.datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Endpoint:
    """A tenant's webhook endpoint (SPEC section 7)."""

    id: str
    url: str
    types: tuple[str, ...] = ()  # empty: every type
    secrets: tuple[Secret, ...] = ()
    enabled: bool = True

    def takes(self, kind: str) -> bool:
        return self.enabled and (not self.types or kind in self.types)


@dataclass(frozen=True)
class HookState:
    """Where the delivery of one event to one endpoint stands."""

    state: str = FAILING  # delivered, failing, gone or given_up (and no record: not tried)
    attempts: int = 0
    claimed_until: dt.datetime | None = None  # an attempt may be under way until then
    last_attempt_at: dt.datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    # An operator replayed the event to this endpoint then: retried for RETRIED from then on.
    replayed_at: dt.datetime | None = None

    @property
    def gone(self) -> bool:
        return self.state == GONE


@dataclass(frozen=True)
class StoredEvent:
    """An event as recorded: its body as delivered, and its deliveries by endpoint id."""

    id: str
    type: str
    tenant: str
    at: dt.datetime
    body: str
    dispatched: bool = False
    deliveries: dict[str, HookState] = field(default_factory=dict)
    version: Any = None
