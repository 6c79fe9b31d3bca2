"""Integer ids handed out from blocks reserved in the store.

Every request needs fresh ids; reserving each one in the store would make every request
write the same counter document. Instead a block of ids is reserved at once and handed out
from memory. Ids stay unique and are never reused (a block is never handed out twice);
the ids of a block that an instance does not use up are simply skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# reserve(tenant_id, kind, count) -> the first id of a fresh range of `count` ids
Reserve = Callable[[str, str, int], int]


class IdBlocks:
    def __init__(self, reserve: Reserve, block_size: int) -> None:
        self._reserve = reserve
        self._block_size = block_size
        self._ranges: dict[tuple[str, str], tuple[int, int]] = {}  # key -> [next, end)
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def take(self, tenant_id: str, kind: str, count: int = 1) -> list[int]:
        """``count`` fresh ids of one kind for one tenant."""
        key = (tenant_id, kind)
        taken: list[int] = []
        with self._lock(key):
            while len(taken) < count:
                start, end = self._ranges.get(key, (0, 0))
                if start >= end:
                    size = max(self._block_size, count - len(taken))
                    start = self._reserve(tenant_id, kind, size)
                    end = start + size
                grab = min(end - start, count - len(taken))
                taken.extend(range(start, start + grab))
                self._ranges[key] = (start + grab, end)
        return taken
