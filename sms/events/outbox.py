"""After a commit, its events are announced to the transport that carries them to the
dispatcher: once per request, waiting at most a second (SPEC 10.7).

The events are already stored (in the commit of their change); announcing them only tells
the dispatcher to deliver them now. An announcement that fails or takes too long costs the
request at most ``PUBLISH_SECONDS`` and loses nothing: the sweeper announces what no
dispatcher has taken. Announcing twice is harmless: the dispatcher records each delivery.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Protocol

from sms import logs
from sms.domain import Event

PUBLISH_SECONDS = 1.0

_collected: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar(
    "committed_events", default=None
)


class Transport(Protocol):
    """Carries references to stored events to the dispatcher."""

    name: str

    def publish(self, refs: dict[str, list[str]], timeout: float) -> bool:
        """Announce events (tenant: event ids); whether it was done within ``timeout``."""
        ...


class Outbox:
    """Announces committed events: at the end of the request (or job) that committed them,
    in one publication."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def committed(self, events: Sequence[Event]) -> None:
        """Events whose commit succeeded: announced when the request ends (now, outside one)."""
        if not events:
            return
        collected = _collected.get()
        if collected is not None:
            collected.extend(events)
        else:
            self.announce(list(events))

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """Collect what the block commits, and announce it all when the block ends."""
        token = _collected.set([])
        try:
            yield
        finally:
            collected = _collected.get() or []
            _collected.reset(token)
            self.announce(collected)

    def announce(self, events: list[Event]) -> None:
        if not events:
            return
        refs: dict[str, list[str]] = {}
        for event in events:
            refs.setdefault(event.tenant, []).append(event.id)
        if self.transport.publish(refs, PUBLISH_SECONDS):
            logs.note(events_published=len(events))
        else:
            logs.note(events_published=0)


class Unpublished:
    """No transport (a local run with the Firestore emulator and no Pub/Sub emulator): events
    are recorded and listed, not pushed; the log says so once."""

    name = "none"

    def __init__(self, why: str) -> None:
        self._why = why
        self._said = False

    def publish(self, refs: dict[str, list[str]], timeout: float) -> bool:
        if not self._said:
            self._said = True
            logs.event("WARNING", f"events are recorded but not published: {self._why}")
        return False
