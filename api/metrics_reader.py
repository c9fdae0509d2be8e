"""A workflow's metrics per period from ClickHouse, always scoped to one organization: how many
executions, how many succeeded, how long they took, what they cost.

Definitions (docs/agents.md, "History, metrics and costs"):
- an execution belongs to the period its event occurred in (an invocation's time), so it never moves
  to another period when it resumes later;
- success rate: `completed` / terminal (`completed`, `filtered_out`, `rejected`, `exited`); paused
  executions are not decided yet and count in neither;
- latency: event time -> the first evaluation (the timeline's `evaluated` entry), every execution;
  completion: event time -> its latest phase, terminal executions only (a person's or a wait's time
  included);
- quantiles are ClickHouse's `quantileExact`: of n values sorted ascending, the one at 0-based
  position floor(q * n).
FINAL keeps one row per execution however often a replay inserted it.
"""

from __future__ import annotations

from typing import Any, Literal

from processors.costs import UnitPrices, Units, cost
from streams.sinks.clickhouse import ClickHouse

Bucket = Literal["minute", "hour", "day"]
BUCKET_MS: dict[Bucket, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
TERMINAL = ["completed", "filtered_out", "rejected", "exited"]


def _scope(time: str) -> str:
    """The org's, the workflow's, in the time range: every query's WHERE, on `time`."""
    return (
        "org_id = {org_id:String} AND workflow_id = {workflow_id:String} "
        f"AND {time} >= fromUnixTimestamp64Milli({{since_ms:Int64}}) "
        f"AND {time} < fromUnixTimestamp64Milli({{until_ms:Int64}})"
    )


def _start(time: str) -> str:
    """The start of the period `time` falls in, epoch ms (periods are multiples of the bucket's length)."""
    return f"intDiv(toUnixTimestamp64Milli({time}), {{bucket_ms:Int64}}) * {{bucket_ms:Int64}}"


_EVALUATED_AT = (
    "if(arrayExists(e -> e.what = 'evaluated', timeline), "
    "tupleElement(arrayFirst(e -> e.what = 'evaluated', timeline), 'at'), evaluated_at)"
)


def _quantile(value: Any, rows: int) -> int | None:
    return int(float(value)) if rows else None


class MetricsReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._executions = f"{clickhouse.database}.executions"
        self._provider_calls = f"{clickhouse.database}.provider_calls"

    def periods(
        self,
        org_id: str,
        workflow_id: str,
        since_ms: int,
        until_ms: int,
        bucket: Bucket,
        prices: UnitPrices,
    ) -> list[dict[str, Any]]:
        """One entry per period of [since_ms, until_ms), empty periods included, oldest first.
        `since_ms` should be aligned to the bucket (periods start at multiples of its length)."""
        step = BUCKET_MS[bucket]
        params: dict[str, Any] = {
            "org_id": org_id,
            "workflow_id": workflow_id,
            "since_ms": since_ms,
            "until_ms": until_ms,
            "bucket_ms": step,
            "terminal": TERMINAL,
        }
        executed = self._ch.query(
            f"SELECT {_start('event_occurred_at')} AS start_ms, count() AS executions, "
            "countIf(status = 'completed') AS completed, countIf(status IN {terminal:Array(String)}) AS terminal, "
            "sum(length(decisions)) AS decisions, sum(length(actions)) AS actions, "
            "quantileExact(0.5)(latency_ms) AS latency_p50_ms, quantileExact(0.99)(latency_ms) AS latency_p99_ms, "
            "quantileExactIf(0.5)(completion_ms, status IN {terminal:Array(String)}) AS completion_p50_ms, "
            "quantileExactIf(0.99)(completion_ms, status IN {terminal:Array(String)}) AS completion_p99_ms "
            "FROM (SELECT event_occurred_at, status, decisions, actions, "
            f"toUnixTimestamp64Milli({_EVALUATED_AT}) - toUnixTimestamp64Milli(event_occurred_at) AS latency_ms, "
            "toUnixTimestamp64Milli(evaluated_at) - toUnixTimestamp64Milli(event_occurred_at) AS completion_ms "
            f"FROM {self._executions} FINAL WHERE {_scope('event_occurred_at')}) "
            "GROUP BY start_ms ORDER BY start_ms",
            params,
        )
        calls = self._provider_calls_per_period(params)
        found = {int(row["start_ms"]): row for row in executed}
        return [
            _period(start, found.get(start), calls.get(start, 0), prices)
            for start in range(since_ms - since_ms % step, until_ms, step)
        ]

    def units(self, org_id: str, workflow_id: str, since_ms: int, until_ms: int) -> Units:
        """What the workflow's executions whose events occurred in [since_ms, until_ms) used."""
        params = {"org_id": org_id, "workflow_id": workflow_id, "since_ms": since_ms, "until_ms": until_ms}
        row = self._ch.query(
            "SELECT count() AS executions, sum(length(decisions)) AS decisions, sum(length(actions)) AS actions "
            f"FROM {self._executions} FINAL WHERE {_scope('event_occurred_at')}",
            params,
        )[0]
        calls = self._ch.query(
            f"SELECT sum(calls) AS calls FROM {self._provider_calls} FINAL WHERE {_scope('at')}", params
        )[0]
        return Units(int(row["executions"]), int(row["decisions"]), int(row["actions"]), int(calls["calls"]))

    def _provider_calls_per_period(self, params: dict[str, Any]) -> dict[int, int]:
        rows = self._ch.query(
            f"SELECT {_start('at')} AS start_ms, sum(calls) AS calls "
            f"FROM {self._provider_calls} FINAL WHERE {_scope('at')} GROUP BY start_ms",
            params,
        )
        return {int(row["start_ms"]): int(row["calls"]) for row in rows}


def _period(start_ms: int, row: dict[str, Any] | None, provider_calls: int, prices: UnitPrices) -> dict[str, Any]:
    row = row or {"executions": 0, "completed": 0, "terminal": 0, "decisions": 0, "actions": 0}
    executions, terminal = int(row["executions"]), int(row["terminal"])
    units = Units(executions, int(row["decisions"]), int(row["actions"]), provider_calls)
    return {
        "start_ms": start_ms,
        "executions": executions,
        "completed": int(row["completed"]),
        "terminal": terminal,
        "success_rate": int(row["completed"]) / terminal if terminal else None,
        "latency_p50_ms": _quantile(row.get("latency_p50_ms"), executions),
        "latency_p99_ms": _quantile(row.get("latency_p99_ms"), executions),
        "completion_p50_ms": _quantile(row.get("completion_p50_ms"), terminal),
        "completion_p99_ms": _quantile(row.get("completion_p99_ms"), terminal),
        "units": {
            "executions": units.executions,
            "decisions": units.decisions,
            "actions": units.actions,
            "provider_calls": units.provider_calls,
        },
        "cost": cost(units, prices),
    }
