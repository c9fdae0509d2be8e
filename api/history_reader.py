"""Reads an organization's inbound event history from ClickHouse, for what-if replay."""

from __future__ import annotations

from typing import Any

import orjson

from streams.sinks.clickhouse import ClickHouse


def occurred_window(org_id: str, since_ms: int | None, until_ms: int | None) -> tuple[list[str], dict[str, Any]]:
    """The clauses (and their parameters) that keep one org's inbound events in a time window."""
    clauses = ["org_id = {org_id:String}"]
    params: dict[str, Any] = {"org_id": org_id}
    if since_ms is not None:
        clauses.append("occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64})")
        params["since_ms"] = since_ms
    if until_ms is not None:
        clauses.append("occurred_at < fromUnixTimestamp64Milli({until_ms:Int64})")
        params["until_ms"] = until_ms
    return clauses, params


class InboundHistoryReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._table = f"{clickhouse.database}.inbound_events"

    def events(self, org_id: str, last: int, since_ms: int | None, until_ms: int | None) -> list[dict[str, Any]]:
        """The org's most recent `last` events in the window, oldest first (the order they were processed)."""
        clauses, params = occurred_window(org_id, since_ms, until_ms)
        rows = self._ch.query(
            f"SELECT event_json FROM {self._table} FINAL WHERE {' AND '.join(clauses)} "
            f"ORDER BY occurred_at DESC, event_id DESC LIMIT {int(last)}",
            params,
        )
        return [orjson.loads(row["event_json"]) for row in reversed(rows)]

    def latest_leads(self, org_id: str, lead_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each lead as its latest lead event carried it; leads never seen are absent."""
        if not lead_ids:
            return {}
        rows = self._ch.query(
            "SELECT lead_id, argMax(event_json, occurred_at) AS event_json "
            f"FROM {self._table} FINAL WHERE org_id = {{org_id:String}} AND lead_id IN {{lead_ids:Array(String)}} "
            "AND startsWith(event_type, 'lead.') GROUP BY lead_id",
            {"org_id": org_id, "lead_ids": lead_ids},
        )
        return {row["lead_id"]: orjson.loads(row["event_json"])["lead"] for row in rows}
