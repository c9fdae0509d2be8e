"""Where each inbox partition's backlog ends when this process takes the partition over.

After a restart or a rebalance the inbox may hold messages the previous owner never handled:
- an exit that happened before the due times that passed meanwhile;
- a suspension whose table write the crash lost (faust flushes the changelog before it commits the
  inbox offset, so such a message is always in the backlog), whose approval a person may decide.
So the due timer and the decision poll hold a partition back until the agent has handled its inbox
up to the end offset seen at the takeover: a lead that converted while the orchestrator was down
leaves its wait instead of finishing it, and a decision finds its execution held. A partition is
held back at most `MAX_HOLD_MS`, so nothing waits on a backlog forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import OFFSET_INVALID, Consumer, TopicPartition

log = logging.getLogger(__name__)

MAX_HOLD_MS = 60_000
UNKNOWN_END = 2**63 - 1
"""The end of a partition whose backlog could not be read: held back the whole `MAX_HOLD_MS`."""


class InboxBacklog:
    def __init__(self) -> None:
        self._ends: dict[int, int] = {}
        self._until_ms = 0

    def taken_over(self, ends: dict[int, int], now_ms: int) -> None:
        """`ends`: per partition with a backlog, the offset after its last message."""
        self._ends = dict(ends)
        self._until_ms = now_ms + MAX_HOLD_MS

    def handled(self, partition: int, offset: int) -> None:
        if offset + 1 >= self._ends.get(partition, 0):
            self._ends.pop(partition, None)

    def behind(self, now_ms: int) -> frozenset[int]:
        if self._ends and now_ms >= self._until_ms:
            log.warning(
                "inbox partitions %s not caught up after %d s; firing their due times",
                sorted(self._ends),
                MAX_HOLD_MS // 1000,
            )
            self._ends.clear()
        return frozenset(self._ends)


def backlog_ends(bootstrap_servers: str, group: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
    """Per partition whose committed offset is behind its end, that end. Read without joining the
    group: a consumer that never subscribes is not a member."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        ends = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = low if tp.offset == OFFSET_INVALID or tp.offset < 0 else tp.offset
            if start < high:
                ends[tp.partition] = high
        return ends
    finally:
        consumer.close()
