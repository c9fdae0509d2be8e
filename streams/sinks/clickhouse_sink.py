"""ClickHouseSink: one topic -> one ClickHouse table, one INSERT per batch.

The insert happens before the batch's offsets are committed, so a crash re-inserts rows that
ReplacingMergeTree collapses on the table's key. The sinks: executions, webhook attempts, CRM results,
and inbound history (drip.events.inbound -> `inbound_events`, for what-if replay), which keeps only
what the pipeline accepted, judged by the qualifier's own validation: a replay must not evaluate an
event the qualifier dead-lettered (and dead-letters already, so the sink only leaves it out).

A row ClickHouse refuses for what it holds (`RowsRefused`: a value its column cannot take) must not
stall the sink, which would retry the batch forever and hold back every tenant's history behind it.
The batch is split in halves until the refused rows are alone; each goes to the dead-letter topic
with ClickHouse's reason, and every other row is written. Any other failure (ClickHouse down, a
table missing) is not the rows' fault: the batch is retried whole, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from processors.events import EVENT_TYPE_BY_SYMBOL, lead_id_of, validation_problems
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.runtime.serde import AvroSerde, DecodeError
from streams.sinks.clickhouse import ClickHouse, RowsRefused

RowBuilder = Callable[[dict[str, Any]], dict[str, Any]]
Refusals = Callable[[dict[str, Any], bytes | None], list[str]]
"""Why a decoded record must not be stored (given its key), or nothing."""


def execution_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["event_occurred_at"] = row.pop("event_occurred_at_ms") / 1000
    row["evaluated_at"] = row.pop("evaluated_at_ms") / 1000
    due_at_ms = row.pop("due_at_ms")
    row["due_at"] = None if due_at_ms is None else due_at_ms / 1000
    timeline = row["timeline"]
    if timeline:
        row["timeline"] = [{**entry, "at": entry["at_ms"] / 1000} for entry in timeline]
        for entry in row["timeline"]:
            del entry["at_ms"]
    row["revision"] = len(timeline)
    return row


def webhook_attempt_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["attempted_at"] = row.pop("attempted_at_ms") / 1000
    next_at = row.pop("next_attempt_at_ms")
    row["next_attempt_at"] = None if next_at is None else next_at / 1000
    return row


def crm_result_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(record)
    row["applied_at"] = row.pop("applied_at_ms") / 1000
    return row


def inbound_event_row(record: dict[str, Any]) -> dict[str, Any]:
    """Stored as the engine sees it (dotted event type), so replay feeds it to the engine unchanged."""
    event_type = EVENT_TYPE_BY_SYMBOL.get(record["event_type"])
    event = {**record, "event_type": event_type.value if event_type else record["event_type"]}
    return {
        "org_id": record["org_id"],
        "event_id": record["event_id"],
        "event_type": event["event_type"],
        "lead_id": lead_id_of(record),
        "occurred_at": record["occurred_at_ms"] / 1000,
        "event_json": orjson.dumps(event).decode(),
    }


def inbound_refusals(record: dict[str, Any], key: bytes | None) -> list[str]:
    """The qualifier's validation of an inbound event, so history holds what it accepted."""
    event = {**record, "event_type": EVENT_TYPE_BY_SYMBOL.get(record["event_type"], record["event_type"])}
    return validation_problems(event, key.decode("utf-8", "replace") if key is not None else None)


class ClickHouseSink:
    def __init__(
        self,
        serde: AvroSerde,
        clickhouse: ClickHouse,
        table: str,
        to_row: RowBuilder,
        dead_letters: DeadLetters,
        refuses: Refusals | None = None,
    ) -> None:
        self._serde = serde
        self._clickhouse = clickhouse
        self._table = table
        self._to_row = to_row
        self._dead_letters = dead_letters
        self._refuses = refuses

    def on_rebalance(self) -> None:
        """Stateless between batches: nothing to drop."""

    def process(self, batch: Sequence[ConsumedRecord]) -> list[OutputRecord]:
        rows: list[tuple[ConsumedRecord, dict[str, Any]]] = []
        dead: list[OutputRecord] = []
        for consumed in batch:
            try:
                record = self._serde.decode(consumed.value)
            except DecodeError as exc:
                dead.append(self._dead_letters.record(consumed, "decode", str(exc)))
                continue
            if self._refuses is None or not self._refuses(record, consumed.key):
                rows.append((consumed, self._to_row(record)))
        return dead + self._insert(rows)

    def _insert(self, rows: list[tuple[ConsumedRecord, dict[str, Any]]]) -> list[OutputRecord]:
        """Inserts the rows; a dead letter for each one ClickHouse refuses (found by halving)."""
        try:
            self._clickhouse.insert_rows(self._table, [row for _, row in rows])
        except RowsRefused as refused:
            if len(rows) == 1:
                return [self._dead_letters.record(rows[0][0], "validation", f"ClickHouse refused the row: {refused}")]
            half = len(rows) // 2
            return self._insert(rows[:half]) + self._insert(rows[half:])
        return []
