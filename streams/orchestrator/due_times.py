"""When each held execution falls due: a heap beside the faust table, so a timer tick costs the
number of due entries, not a walk over every paused execution.

The table is the truth; the heap is an index that may hold stale entries (an execution that resumed
on a decision before its timeout). A popped entry counts only if the table still holds the
execution with that due time. The index is rebuilt from the table after every rebalance.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DueTimes:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str, int]] = []

    def add(self, due_at_ms: int, execution_id: str, partition: int) -> None:
        heapq.heappush(self._heap, (due_at_ms, execution_id, partition))

    def rebuild(self, entries: Iterable[tuple[int, str, int]]) -> None:
        self._heap = list(entries)
        heapq.heapify(self._heap)

    def pop_due(self, now_ms: int, limit: int, held_back: frozenset[int] = frozenset()) -> list[tuple[int, str, int]]:
        """Up to `limit` entries due at or before `now_ms`, earliest first; those of the `held_back`
        partitions stay in the heap."""
        due: list[tuple[int, str, int]] = []
        kept: list[tuple[int, str, int]] = []
        while self._heap and self._heap[0][0] <= now_ms and len(due) < limit:
            entry = heapq.heappop(self._heap)
            (kept if entry[2] in held_back else due).append(entry)
        for entry in kept:
            heapq.heappush(self._heap, entry)
        return due

    def __len__(self) -> int:
        return len(self._heap)
