"""Integer ids handed out from blocks reserved in the store.

Every request needs fresh ids; reserving each one in the store would make every request
write the same counter document. Instead a block of ids is reserved at once and handed out
from memory. Ids stay unique and are never reused (a block is never handed out twice);
the ids of a block that an instance does not use up are simply skipped.

A block costs no call of its own in steady state: when a tenant's ids run low, the next
block is reserved by the next session commit, as one more write of that commit (a
server-side increment, which reads nothing and so locks nothing). Only an instance's first
request for a tenant reserves on its own, every kind at once, in one write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# reserve(tenant_id, {kind: count}) -> {kind: the first id of a fresh range of count ids}
Reserve = Callable[[str, dict[str, int]], dict[str, int]]
KINDS = ("end_users", "chats", "participants")


class IdBlocks:
    def __init__(self, reserve: Reserve, block_size: int, kinds: tuple[str, ...] = KINDS) -> None:
        self._reserve = reserve
        self._block_size = block_size
        self._kinds = kinds
        self._ranges: dict[tuple[str, str], list[tuple[int, int]]] = {}  # [start, end) each
        self._pending: set[tuple[str, str]] = set()  # a commit is reserving the next block
        self._lock = threading.Lock()
        self._refills: dict[str, threading.Lock] = {}

    def take(self, tenant_id: str, kind: str, count: int = 1) -> list[int]:
        """``count`` fresh ids of one kind for one tenant."""
        taken: list[int] = []
        while len(taken) < count:
            with self._lock:
                taken += self._grab((tenant_id, kind), count - len(taken))
            if len(taken) < count:
                self._refill(tenant_id, kind, count - len(taken))
        return taken

    def to_prefetch(self, tenant_id: str) -> dict[str, int]:
        """The blocks a commit for this tenant may reserve along with its own writes: kinds
        running low (half a block left) with no block on the way. Report what became of
        them with ``prefetched``."""
        wanted: dict[str, int] = {}
        with self._lock:
            for kind in self._kinds:
                key = (tenant_id, kind)
                known = key in self._ranges and key not in self._pending
                if known and self._left(key) < self._block_size // 2:
                    wanted[kind] = self._block_size
                    self._pending.add(key)
        return wanted

    def prefetched(
        self, tenant_id: str, wanted: dict[str, int], firsts: dict[str, int] | None
    ) -> None:
        """The outcome of a commit that reserved ``wanted``: the first ids, or None if it
        failed (or may have: its ids are then skipped)."""
        with self._lock:
            for kind, size in wanted.items():
                key = (tenant_id, kind)
                self._pending.discard(key)
                if firsts is not None:
                    self._ranges.setdefault(key, []).append((firsts[kind], firsts[kind] + size))

    def _grab(self, key: tuple[str, str], count: int) -> list[int]:
        ranges = self._ranges.get(key, [])
        while ranges and ranges[0][0] >= ranges[0][1]:
            ranges.pop(0)
        if not ranges:
            return []
        start, end = ranges[0]
        grab = min(end - start, count)
        ranges[0] = (start + grab, end)
        return list(range(start, start + grab))

    def _left(self, key: tuple[str, str]) -> int:
        return sum(end - start for start, end in self._ranges.get(key, []))

    def _refill(self, tenant_id: str, kind: str, needed: int) -> None:
        """Reserve a block of ``kind``, and of every other kind of the tenant that is low,
        in one write. One thread per tenant does it; the others wait for its blocks."""
        with self._lock:
            refill = self._refills.setdefault(tenant_id, threading.Lock())
        with refill:
            with self._lock:
                if self._left((tenant_id, kind)) >= needed:
                    return  # another thread refilled it meanwhile
                sizes = {kind: max(self._block_size, needed)}
                for other in self._kinds:
                    key = (tenant_id, other)
                    low = self._left(key) < self._block_size // 2
                    if other != kind and key not in self._pending and low:
                        sizes[other] = self._block_size
            firsts = self._reserve(tenant_id, sizes)
            with self._lock:
                for name, size in sizes.items():
                    key = (tenant_id, name)
                    self._ranges.setdefault(key, []).append((firsts[name], firsts[name] + size))
