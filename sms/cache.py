"""What an instance may keep of the configuration it read, for a few seconds (SPEC 7).

A change to a tenant's documents (a credential disabled, a setting changed) must take effect
within 10 seconds, so an instance may reuse what it read for that long, and no longer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_SECONDS = 10.0
_MAX_ENTRIES = 10_000


class TtlCache(Generic[K, V]):
    """Values kept for ``seconds`` after they were read; 0 keeps nothing.

    A value's age counts from when its read began (``now()`` taken before reading, handed to
    ``put``): a change committed while the read was in flight is then seen within ``seconds``
    however long the read took.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= seconds <= MAX_SECONDS:
            raise ValueError(f"a cache may keep values 0 to {MAX_SECONDS:g} s, not {seconds}")
        self._seconds = seconds
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def now(self) -> float:
        """The time to hand to ``put`` for a read that begins now."""
        return self._clock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, key: K, value: V, read_at: float | None = None) -> None:
        """Keep ``value`` until ``seconds`` after ``read_at`` (by default, now)."""
        if self._seconds <= 0:
            return
        expires = (self._clock() if read_at is None else read_at) + self._seconds
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:  # bounded: forget what is past, or all
                now = self._clock()
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (expires, value)
