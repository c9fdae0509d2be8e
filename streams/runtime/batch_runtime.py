"""The batch loop every hot-path worker runs: consume, process, produce, wait for acks, commit.

A `BatchProcessor` decides what a batch of input records turns into; `BatchWorker` owns every Kafka
call and the order in which they happen, which is where the delivery guarantee lives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams.runtime.kafka import DeliveryFailed, deliver_all
from streams.runtime.readiness import ReadyFile
from streams.runtime.records import ConsumedRecord, OutputRecord

log = logging.getLogger(__name__)


class BatchProcessor(Protocol):
    def process(self, records: Sequence[ConsumedRecord]) -> list[OutputRecord]:
        """Turns a batch of input records into output records.

        Must not raise for one bad record: such records become DLQ outputs. Side effects (state
        writes, sink inserts) happen inside and must be idempotent, because a crash replays the batch.
        """

    def on_rebalance(self) -> None:
        """Partitions moved: drop any state cached on the assumption of owning them."""


@runtime_checkable
class KeepsPositions(Protocol):
    """A processor that records how far it got with its own state (the model trainer, in
    PostgreSQL) rather than in Kafka's committed offsets, which it would otherwise outrun or lag."""

    def positions(self, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """Where to read each newly assigned partition from; None: its beginning."""
        ...


MAX_BACKOFF_S = 10.0
"""The longest wait between two tries of a batch whose processing failed; short enough that the
consumer polls well within max.poll.interval.ms while a dependency is down."""


@dataclass
class BatchStats:
    batches: int = 0
    records_in: int = 0
    records_out: int = 0
    rewinds: int = 0
    failures_in_a_row: int = 0
    """Consecutive batches whose processing failed (a dependency down): 0 when the last one passed."""


class BatchWorker:
    def __init__(
        self,
        consumer: Consumer,
        producer: Producer | None,
        processor: BatchProcessor,
        topics: Sequence[str],
        batch_size: int,
        batch_timeout_s: float,
        name: str,
        ready: ReadyFile | None = None,
        process_idle: bool = False,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._processor = processor
        self._batch_size = batch_size
        self._batch_timeout_s = batch_timeout_s
        self.name = name
        self._ready = ready
        self._process_idle = process_idle
        """Call the processor on empty polls too, for work of its own that comes due (parked retries)."""
        self.stats = BatchStats()
        self._stop = threading.Event()
        consumer.subscribe(list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke)

    @property
    def processor(self) -> BatchProcessor:
        return self._processor

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The ready file tells a supervisor this worker owns partitions (a readiness probe)."""
        log.info("%s: assigned %d partitions", self.name, len(partitions))
        self._processor.on_rebalance()
        if isinstance(self._processor, KeepsPositions) and partitions:
            starts = self._processor.positions([(p.topic, p.partition) for p in partitions])
            for partition in partitions:
                start = starts.get((partition.topic, partition.partition))
                partition.offset = OFFSET_BEGINNING if start is None else start
            consumer.assign(partitions)
        if self._ready is not None and partitions:
            self._ready.owns_partitions(self.name)

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("%s: %d partitions revoked", self.name, len(partitions))
        self._processor.on_rebalance()

    def run(self, stop: threading.Event) -> None:
        log.info("%s: running", self.name)
        self._stop = stop
        try:
            while not stop.is_set():
                self.run_once()
        finally:
            self._consumer.close()
            if self._producer is not None:
                self._producer.flush(10)
            log.info("%s: stopped after %d records", self.name, self.stats.records_in)

    def run_once(self) -> int:
        """One checkpoint. The order of these steps is the delivery guarantee:

        1. Consume up to `batch_size` records.
        2. Process them (the processor writes its own idempotent side effects).
        3. Produce every output record.
        4. Flush the producer and wait until the broker acknowledged every output.
        5. Commit the offsets after the batch, synchronously (a refused commit leaves the batch to be
           replayed, see `_commit`).

        A crash anywhere before step 5 replays the batch from the last commit; because outputs are
        deterministic, the replay produces the same keys and ids and downstream dedup absorbs it. A
        failed delivery in step 4 rewinds the consumer to the batch start instead of committing, and
        so does a failure in step 2 (a processor turns bad records into dead letters, so what it
        raises is a dependency that is down: Redis, PostgreSQL, ClickHouse). Then the worker waits,
        longer after each failure in a row, and tries the batch again: nothing is committed past
        what was not done, and the worker lives to resume when the dependency is back.
        """
        records = self._consume()
        if not records and not self._process_idle:
            return 0
        try:
            outputs = self._processor.process(records)
            if outputs:
                self._produce_and_wait(outputs)
        except Exception as exc:
            self._back_off(records, exc)
            return 0
        self.stats.failures_in_a_row = 0
        if not records:
            return 0
        self._commit(records)
        self.stats.batches += 1
        self.stats.records_in += len(records)
        self.stats.records_out += len(outputs)
        return len(records)

    def _commit(self, records: Sequence[ConsumedRecord]) -> None:
        """Commits the offsets after a finished batch. A commit the group refuses (this member was
        evicted while the broker was unreachable: UNKNOWN_MEMBER_ID, a rebalance under way) or that
        times out leaves the batch uncommitted, not undone: its outputs are acknowledged, and whoever
        owns the partitions next replays it from the last commit, which downstream dedup absorbs. So
        only a fatal error stops the worker."""
        try:
            self._consumer.commit(offsets=next_offsets(records), asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.fatal():
                raise
            log.warning("%s: commit after a batch of %d failed; it may be replayed: %s", self.name, len(records), error)

    def _back_off(self, records: Sequence[ConsumedRecord], error: Exception) -> None:
        self.stats.failures_in_a_row += 1
        self.stats.rewinds += 1
        delay = min(MAX_BACKOFF_S, 0.25 * 2 ** (self.stats.failures_in_a_row - 1))
        log.error(
            "%s: batch of %d failed (%d in a row), retried in %.1f s: %s",
            self.name,
            len(records),
            self.stats.failures_in_a_row,
            delay,
            error,
            exc_info=self.stats.failures_in_a_row == 1 and not isinstance(error, DeliveryFailed),
        )
        self._rewind(records)
        self._stop.wait(delay)

    def _consume(self) -> list[ConsumedRecord]:
        """The batch, copied out of the client's messages: processors see plain records only."""
        records = []
        for message in self._consumer.consume(self._batch_size, self._batch_timeout_s):
            error = message.error()
            if error is None:
                records.append(
                    ConsumedRecord(
                        message.topic() or "",
                        message.partition() or 0,
                        message.offset() or 0,
                        message.key(),
                        message.value(),
                    )
                )
            elif error.code() != KafkaError._PARTITION_EOF:
                if error.fatal():
                    raise KafkaException(error)
                log.warning("%s: consumer error: %s", self.name, error)
        return records

    def _produce_and_wait(self, outputs: list[OutputRecord]) -> None:
        assert self._producer is not None, "a processor without a producer must not return outputs"
        deliver_all(self._producer, outputs)

    def _rewind(self, records: Sequence[ConsumedRecord]) -> None:
        first: dict[tuple[str, int], int] = {}
        for record in records:
            key, offset = _position(record)
            first[key] = min(first.get(key, offset), offset)
        for (topic, partition), offset in first.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException:
                log.info(
                    "%s: %s[%d] moved to another worker; it resumes from the last commit", self.name, topic, partition
                )


def _position(record: ConsumedRecord) -> tuple[tuple[str, int], int]:
    return (record.topic, record.partition), record.offset


def next_offsets(records: Sequence[ConsumedRecord]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for record in records:
        key, offset = _position(record)
        last[key] = max(last.get(key, -1), offset)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]
