"""ExecutionSink: drip.executions -> ClickHouse `executions`, one INSERT per batch.

The insert happens before the batch's offsets are committed, so a crash re-inserts rows that
ReplacingMergeTree collapses by execution_id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import Message

from streams.batch_runtime import OutputRecord
from streams.clickhouse import ClickHouse
from streams.dlq import DeadLetters
from streams.serde import AvroSerde, DecodeError


def execution_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["event_occurred_at"] = row.pop("event_occurred_at_ms") / 1000
    row["evaluated_at"] = row.pop("evaluated_at_ms") / 1000
    return row


class ExecutionSink:
    def __init__(self, serde: AvroSerde, clickhouse: ClickHouse, dead_letters: DeadLetters) -> None:
        self._serde = serde
        self._clickhouse = clickhouse
        self._dead_letters = dead_letters

    def on_rebalance(self) -> None:
        """Stateless between batches: nothing to drop."""

    def process(self, messages: Sequence[Message]) -> list[OutputRecord]:
        rows = []
        dead: list[OutputRecord] = []
        for message in messages:
            try:
                rows.append(execution_row(self._serde.decode(message.value())))
            except DecodeError as exc:
                dead.append(self._dead_letters.record(message, "decode", str(exc)))
        self._clickhouse.insert_rows("executions", rows)
        return dead
