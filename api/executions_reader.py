"""Reads of execution history from ClickHouse, always scoped to one organization.

FINAL makes every read see one row per execution_id even before background merges collapsed the
duplicates a replay may have inserted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from api.cursors import decode_cursor, encode_cursor
from streams.sinks.clickhouse import ClickHouse

_COLUMNS = """execution_id, org_id, workflow_id, workflow_version, event_id, event_type, lead_id, status,
    status_reason, score, score_breakdown, tier, owner, routing_reason, actions, logs, decisions, trigger,
    timeline, arrayMap(entry -> toUnixTimestamp64Milli(entry.1), timeline) AS timeline_at_ms, paused_step,
    if(isNull(due_at), NULL, toUnixTimestamp64Milli(assumeNotNull(due_at))) AS due_at_ms,
    toUnixTimestamp64Milli(event_occurred_at) AS event_occurred_at_ms,
    toUnixTimestamp64Milli(evaluated_at) AS evaluated_at_ms,
    toUnixTimestamp64Milli(ingested_at) AS ingested_at_ms"""


@dataclass(frozen=True)
class ExecutionFilter:
    workflow_id: str | None = None
    status: str | None = None
    lead_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    workflow_ids: list[str] | None = None
    """Only these workflows (a project's); None: every workflow of the org."""


def _normalize(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("event_occurred_at_ms", "evaluated_at_ms", "ingested_at_ms", "workflow_version", "score"):
        row[key] = int(row[key])
    if row["due_at_ms"] is not None:
        row["due_at_ms"] = int(row["due_at_ms"])
    at_ms = row.pop("timeline_at_ms")
    row["timeline"] = [
        {**{k: v for k, v in entry.items() if k != "at"}, "at_ms": int(moment)}
        for entry, moment in zip(row["timeline"], at_ms, strict=True)
    ]
    return row


def _whole(value: Any) -> int:
    """Counts and quantiles as integers; a quantile over no rows is NaN, reported as 0."""
    number = float(value)
    return int(number) if number == number else 0


class ExecutionsReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._table = f"{clickhouse.database}.executions"

    def enrollments(
        self, org_id: str, workflow_id: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The workflow's paused executions (leads still enrolled), soonest due first, keyset-paginated
        on (due_at, execution_id)."""
        params: dict[str, Any] = {"org_id": org_id, "workflow_id": workflow_id}
        after = ""
        if cursor is not None:
            params["cursor_ms"], params["cursor_id"] = decode_cursor(cursor)
            after = "AND (due_ms, execution_id) > ({cursor_ms:Int64}, {cursor_id:String})"
        rows = self._ch.query(
            "SELECT execution_id, lead_id, workflow_version, status, paused_step, trigger, due_ms AS due_at_ms, "
            "toUnixTimestamp64Milli(evaluated_at) AS since_ms FROM ("
            "SELECT *, toUnixTimestamp64Milli(assumeNotNull(due_at)) AS due_ms "
            f"FROM {self._table} FINAL WHERE org_id = {{org_id:String}} AND workflow_id = {{workflow_id:String}} "
            f"AND status IN ('awaiting_approval', 'waiting')) WHERE 1 {after} "
            f"ORDER BY due_ms, execution_id LIMIT {int(limit) + 1}",
            params,
        )
        page = [
            {**row, **{key: int(row[key]) for key in ("workflow_version", "due_at_ms", "since_ms")}}
            for row in rows[:limit]
        ]
        last = page[-1] if len(rows) > limit else None
        return page, encode_cursor(last["due_at_ms"], last["execution_id"]) if last else None

    def list(
        self, org_id: str, where: ExecutionFilter, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, keyset-paginated on (evaluated_at, execution_id)."""
        clauses = ["org_id = {org_id:String}"]
        params: dict[str, Any] = {"org_id": org_id}
        for column in ("workflow_id", "status", "lead_id"):
            value = getattr(where, column)
            if value is not None:
                clauses.append(f"{column} = {{{column}:String}}")
                params[column] = value
        if where.workflow_ids is not None:
            clauses.append("workflow_id IN {workflow_ids:Array(String)}")
            params["workflow_ids"] = where.workflow_ids
        if where.since_ms is not None:
            clauses.append("evaluated_at >= fromUnixTimestamp64Milli({since_ms:Int64})")
            params["since_ms"] = where.since_ms
        if where.until_ms is not None:
            clauses.append("evaluated_at < fromUnixTimestamp64Milli({until_ms:Int64})")
            params["until_ms"] = where.until_ms
        if cursor is not None:
            params["cursor_ms"], params["cursor_id"] = decode_cursor(cursor)
            clauses.append(
                "(toUnixTimestamp64Milli(evaluated_at), execution_id) < ({cursor_ms:Int64}, {cursor_id:String})"
            )
        rows = self._ch.query(
            f"SELECT {_COLUMNS} FROM {self._table} FINAL WHERE {' AND '.join(clauses)} "
            f"ORDER BY evaluated_at DESC, execution_id DESC LIMIT {int(limit) + 1}",
            params,
        )
        page = [_normalize(row) for row in rows[:limit]]
        last = page[-1] if len(rows) > limit else None
        next_cursor = encode_cursor(last["evaluated_at_ms"], last["execution_id"]) if last else None
        return page, next_cursor

    def get(self, org_id: str, execution_id: str) -> dict[str, Any] | None:
        rows = self._ch.query(
            f"SELECT {_COLUMNS} FROM {self._table} FINAL "
            "WHERE org_id = {org_id:String} AND execution_id = {execution_id:String}",
            {"org_id": org_id, "execution_id": execution_id},
        )
        return _normalize(rows[0]) if rows else None

    def summary(
        self, org_id: str, workflow_id: str | None, workflow_ids: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Totals, leads per tier and owner, and end-to-end latency (event time -> row in ClickHouse) of
        the evaluation: the row of an execution that resumed later (revision above 2) says how long a
        person or a wait took, not the pipeline, and is left out."""
        where = "org_id = {org_id:String}" + (" AND workflow_id = {workflow_id:String}" if workflow_id else "")
        if workflow_ids is not None:
            where += " AND workflow_id IN {workflow_ids:Array(String)}"
        params = {"org_id": org_id, "workflow_id": workflow_id or "", "workflow_ids": list(workflow_ids or [])}
        source = f"(SELECT * FROM {self._table} FINAL WHERE {where})"
        totals = self._ch.query(
            "SELECT count() AS executions, uniqExact(lead_id) AS leads, countIf(status = 'completed') AS completed, "
            "countIf(status = 'filtered_out') AS filtered_out, "
            "countIf(status = 'awaiting_approval') AS awaiting_approval, countIf(status = 'waiting') AS waiting, "
            "quantileExactIf(0.5)(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(event_occurred_at), "
            "revision <= 2) "
            "AS latency_p50_ms, "
            "quantileExactIf(0.99)(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(event_occurred_at), "
            "revision <= 2) "
            f"AS latency_p99_ms FROM {source}",
            params,
        )[0]
        tiers = self._ch.query(
            f"SELECT tier, count() AS leads FROM {source} WHERE status != 'filtered_out' GROUP BY tier ORDER BY tier",
            params,
        )
        owners = self._ch.query(
            f"SELECT owner, count() AS leads FROM {source} WHERE status != 'filtered_out' "
            "GROUP BY owner ORDER BY leads DESC, owner",
            params,
        )
        return {
            **{key: _whole(value) for key, value in totals.items()},
            "per_tier": {row["tier"]: int(row["leads"]) for row in tiers},
            "per_owner": {row["owner"]: int(row["leads"]) for row in owners},
        }
