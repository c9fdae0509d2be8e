"""Reads an organization's inbound event history from ClickHouse, for what-if replay."""

from __future__ import annotations

from typing import Any

import orjson

from streams.sinks.clickhouse import ClickHouse


class InboundHistoryReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._table = f"{clickhouse.database}.inbound_events"

    def events(self, org_id: str, last: int, since_ms: int | None, until_ms: int | None) -> list[dict[str, Any]]:
        """The org's most recent `last` events in the window, oldest first (the order they were processed)."""
        clauses = ["org_id = {org_id:String}"]
        params: dict[str, Any] = {"org_id": org_id}
        if since_ms is not None:
            clauses.append("occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64})")
            params["since_ms"] = since_ms
        if until_ms is not None:
            clauses.append("occurred_at < fromUnixTimestamp64Milli({until_ms:Int64})")
            params["until_ms"] = until_ms
        rows = self._ch.query(
            f"SELECT event_json FROM {self._table} FINAL WHERE {' AND '.join(clauses)} "
            f"ORDER BY occurred_at DESC, event_id DESC LIMIT {int(last)}",
            params,
        )
        return [orjson.loads(row["event_json"]) for row in reversed(rows)]
