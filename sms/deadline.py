"""The time one request may spend waiting on the backend before it answers 503.

Each entry point opens a deadline for the work it does; the use cases retry through it; the
repository reads what remains of it to bound every Firestore call. So however Firestore
fails (refusing, hanging, aborting), a request answers within its deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from sms import errors

_T = TypeVar("_T")
_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("deadline", default=None)

# The shortest time a backend call is given, even when the deadline has (nearly) passed: it
# then fails fast, and the retry loop gives up with the failure it saw.
MIN_CALL_SECONDS = 0.05


class Deadline:
    def __init__(self, seconds: float) -> None:
        self._ends = time.monotonic() + seconds
        self._delay = 0.05

    def remaining(self) -> float:
        return self._ends - time.monotonic()

    def pause(self, cause: errors.Transient | None = None) -> None:
        """Back off before another try (jittered, growing). When no time is left, give up:
        with ``cause``, the failure that made the wait necessary, else BackendUnavailable."""
        remaining = self.remaining()
        if remaining <= 0:
            if cause is not None:
                raise cause
            raise errors.BackendUnavailable("the deadline passed while the documents kept changing")
        jitter = random.uniform(0, self._delay)  # noqa: S311 jitter, not secrets
        time.sleep(min(remaining, jitter))
        self._delay = min(self._delay * 2, 1.0)

    def retry(self, call: Callable[[], _T]) -> _T:
        """Run ``call``, trying again while the backend is unavailable and time remains."""
        while True:
            try:
                return call()
            except errors.BackendUnavailable as exc:
                self.pause(exc)


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[Deadline]:
    """Run the block under a fresh deadline of ``seconds``."""
    token = _current.set(Deadline(seconds))
    try:
        yield current(default_seconds=seconds)
    finally:
        _current.reset(token)


def current(default_seconds: float) -> Deadline:
    """The deadline of the request being served, or a fresh one outside any request."""
    deadline = _current.get()
    return deadline if deadline is not None else Deadline(default_seconds)


def call_timeout(cap: float) -> float:
    """The timeout for one backend call: at most ``cap``, and no later than the deadline."""
    deadline = _current.get()
    if deadline is None:
        return cap
    return max(MIN_CALL_SECONDS, min(cap, deadline.remaining()))
