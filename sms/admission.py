"""Rate limits (SPEC 10.6): a request's place in its tenant's budget of requests per second.

Each authenticated request adds one to a counter of its tenant for the current second, with
a server-side increment: it reads nothing, so requests counted at once never abort each
other, and every instance counts into the same document. The count is sent alongside the
request's first read, not before it, so it costs no waiting; it is waited for only before
the request's first write and before its answer. A request beyond the limit answers 429 and
writes nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from sms import errors, logs

_current: contextvars.ContextVar[Admission | None] = contextvars.ContextVar(
    "admission", default=None
)


class Admission:
    """The pending count of one request, and the limit it is judged against."""

    def __init__(self, count: Future[int], limit: int, tenant_id: str) -> None:
        self._count = count
        self._limit = limit
        self._tenant_id = tenant_id

    def check(self, timeout: float) -> None:
        """Wait for the count; TooManyRequests where it is beyond the limit."""
        try:
            count = self._count.result(timeout=timeout)
        except Exception as exc:
            logs.note(rate_limit="not counted")
            logs.event("WARNING", f"rate limit not counted: {exc!r}", tenant=self._tenant_id)
            return
        if count > self._limit:
            raise errors.TooManyRequests()


class Counter:
    """Starts the counts of requests on a few threads of their own."""

    def __init__(self, count: Callable[[str], int], threads: int = 8) -> None:
        self.count = count
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="rate-count")

    @contextlib.contextmanager
    def admitting(self, tenant_id: str, limit: int) -> Iterator[None]:
        """Count this request now; writes and the answer wait for it within the block."""
        if limit <= 0:
            yield
            return
        context = contextvars.copy_context()  # the request's deadline bounds the call
        pending = self._pool.submit(context.run, self.count, tenant_id)
        token = _current.set(Admission(pending, limit, tenant_id))
        try:
            yield
        finally:
            _current.reset(token)


def check(timeout: float = 5.0) -> None:
    """Before a write or an answer: TooManyRequests where this request is over its limit."""
    admission = _current.get()
    if admission is not None:
        admission.check(timeout)
