"""Until when each inbox partition has a backlog to handle, after this process took it over.

After a restart or a rebalance the inbox may hold messages the previous owner never handled:
- an exit that happened before the due times that passed meanwhile;
- a suspension whose table write the crash lost (faust flushes the changelog before it commits the
  inbox offset, so such a message is always in the backlog), whose approval a person may decide.
So the due timer and the decision poll hold a partition back until the agent has handled its inbox
up to where it ended at the takeover: a lead that converted while the orchestrator was down leaves
its wait instead of finishing it, and a decision finds its execution held.

Where the inbox ended is marked by a MARK message this process puts on each partition it takes
over, with a token of its own: the backlog is handled when the agent reaches that message. (The
broker's end offset would do on Kafka; the embedded broker reports a batch's first offset as the
end, so it cannot be relied on.) A partition is held back at most `MAX_HOLD_MS`, so nothing waits
on a backlog forever, even when a marker could not be produced.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.runtime.serde import AvroSerde

log = logging.getLogger(__name__)

MAX_HOLD_MS = 60_000
MARK = "MARK"


class InboxBacklog:
    def __init__(self) -> None:
        self._markers: dict[int, str] = {}
        self._until_ms = 0

    def taken_over(self, markers: dict[int, str], now_ms: int) -> None:
        """`markers`: per partition taken over, the token of the marker put at its end."""
        self._markers = dict(markers)
        self._until_ms = now_ms + MAX_HOLD_MS

    def reached(self, partition: int, token: str) -> None:
        """The agent handled everything before this marker: the partition's backlog is done."""
        if self._markers.get(partition) == token:
            del self._markers[partition]

    def behind(self, now_ms: int) -> frozenset[int]:
        if self._markers and now_ms >= self._until_ms:
            log.warning(
                "inbox partitions %s did not reach their markers in %d s; acting on them anyway",
                sorted(self._markers),
                MAX_HOLD_MS // 1000,
            )
            self._markers.clear()
        return frozenset(self._markers)


def put_markers(
    producer: Producer, topic: str, inbox: AvroSerde, partitions: Iterable[int], now_ms: int
) -> dict[int, str]:
    """One MARK message at the end of each partition, acknowledged; their tokens by partition."""
    markers = {partition: uuid.uuid4().hex for partition in partitions}
    failed: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failed.append(error)

    for partition, token in markers.items():
        value = inbox.encode({"kind": MARK, "org_id": "", "execution_id": token, "sent_at_ms": now_ms})
        producer.produce(topic, value, b"", partition=partition, on_delivery=delivered)
    if producer.flush(10) or failed:
        raise KafkaException(failed[0] if failed else KafkaError(KafkaError._MSG_TIMED_OUT))
    return markers
