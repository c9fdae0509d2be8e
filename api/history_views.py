"""What a workflow's history routes answer, whoever's workflow it is: a workflow's own
(`/workflows/{id}/…`) or an agent's backing workflow (`/agents/{id}/…`). The routes only decide
which workflow the caller may read; the query parameters, the readers' calls and the answers are
here, once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.cursors import PageCursor, PageLimit
from api.executions_reader import ExecutionFilter, ExecutionsReader
from api.metrics_reader import BUCKET_MS, Bucket, MetricsReader
from api.models import ExecutionOut, ExecutionStatus, Page, ms
from api.problems import Problem
from processors.costs import UnitPrices
from processors.step_logs import step_log
from streams.clock import now_ms

MAX_PERIODS = 1500
"""A day of minutes, two months of hours, four years of days."""
DEFAULT_PERIODS = 24


class LogEntry(BaseModel):
    execution_id: str
    lead_id: str
    at_ms: int = Field(
        description="When it happened; a decision has its phase's time, a log message its execution's latest phase's."
    )
    source: Literal["timeline", "decision", "log"]
    step: str | None = Field(description="The step's path (`3`, `4.0.1`); empty for the evaluation; null for a log.")
    kind: str = Field(
        description="timeline: evaluated, awaiting_approval, waiting, approved, rejected, timed_out, wait_elapsed, "
        "exited, resumed; decision: the step's kind (filter, tier, route, branch, approval, wait, exit); log: log"
    )
    outcome: str = Field(description="A decision's outcome (pass, fail, the tier, the route, approved, …).")
    message: str = Field(description="A log action's message, or a timeline entry's note.")
    actor: str = Field(description="Who decided, for a person's decision.")
    actions: list[str] = Field(description="A timeline entry's: the actions emitted in the phase it opens.")


class ExecutionLog(BaseModel):
    execution_id: str
    lead_id: str
    workflow_version: int
    status: str
    evaluated_at_ms: int
    entries: list[LogEntry] = Field(description="Oldest first.")


class UnitsOut(BaseModel):
    executions: int
    decisions: int = Field(description="Deciding steps evaluated (`decisions` tokens).")
    actions: int = Field(description="Actions emitted.")
    provider_calls: int = Field(description="Calls to an external summary provider.")


class Period(BaseModel):
    start_ms: int = Field(description="Periods start at multiples of the bucket's length (UTC).")
    executions: int = Field(description="Executions whose event occurred in the period.")
    completed: int
    terminal: int = Field(description="completed, filtered_out, rejected or exited: decided, not paused.")
    success_rate: float | None = Field(description="completed / terminal; null without terminal executions.")
    latency_p50_ms: int | None = Field(description="Event time -> first evaluation.")
    latency_p99_ms: int | None
    completion_p50_ms: int | None = Field(description="Event time -> latest phase, terminal executions only.")
    completion_p99_ms: int | None
    units: UnitsOut
    cost: float = Field(description="units x the org's unit prices, in its cost unit.")


class MetricsReport(BaseModel):
    workflow_id: str
    bucket: Bucket
    since_ms: int
    until_ms: int
    unit_prices: UnitPrices = Field(description="The prices `cost` applies (the org's current ones).")
    periods: list[Period] = Field(description="Oldest first, empty periods included.")


@dataclass(frozen=True)
class HistoryQuery:
    status: str | None
    lead_id: str | None
    since_ms: int | None
    until_ms: int | None
    limit: int
    cursor: str | None

    def where(self, workflow_id: str) -> ExecutionFilter:
        return ExecutionFilter(workflow_id, self.status, self.lead_id, self.since_ms, self.until_ms)


def history_query(
    status: ExecutionStatus | None = None,
    lead_id: str | None = None,
    since: Annotated[datetime | None, Query(description="Evaluated at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Evaluated before (ISO 8601).")] = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> HistoryQuery:
    """The filters and page of an executions or logs listing (a route's dependency)."""
    return HistoryQuery(status, lead_id, ms(since), ms(until), limit, cursor)


@dataclass(frozen=True)
class MetricsRange:
    bucket: Bucket
    since_ms: int
    until_ms: int


def metrics_range(
    bucket: Bucket = "hour",
    since: Annotated[datetime | None, Query(description="From (ISO 8601); default: 24 periods before `until`.")] = None,
    until: Annotated[datetime | None, Query(description="Until, excluded (ISO 8601); default: now.")] = None,
) -> MetricsRange:
    """The periods a metrics report covers (a route's dependency): `since` aligned down to the
    bucket; 422 `bad-range` for an empty range or one of more than MAX_PERIODS periods."""
    step = BUCKET_MS[bucket]
    until_ms = ms(until) or now_ms()
    since_ms = ms(since)
    since_ms = (until_ms - DEFAULT_PERIODS * step if since_ms is None else since_ms) // step * step
    if since_ms >= until_ms or (until_ms - since_ms) / step > MAX_PERIODS:
        raise Problem(
            422,
            "bad-range",
            "Unusable time range",
            f"`since` must be before `until`, at most {MAX_PERIODS} {bucket}s apart",
        )
    return MetricsRange(bucket, since_ms, until_ms)


async def executions_page(
    executions: ExecutionsReader, org_id: str, workflow_id: str, query: HistoryQuery
) -> Page[ExecutionOut]:
    """The workflow's executions, newest first."""
    rows, next_cursor = await run_in_threadpool(
        executions.list, org_id, query.where(workflow_id), query.limit, query.cursor
    )
    return Page(items=[ExecutionOut(**row) for row in rows], next_cursor=next_cursor)


async def logs_page(
    executions: ExecutionsReader, org_id: str, workflow_id: str, query: HistoryQuery
) -> Page[ExecutionLog]:
    """Each execution's steps as log entries; newest execution first, `limit` executions a page."""
    rows, next_cursor = await run_in_threadpool(
        executions.list, org_id, query.where(workflow_id), query.limit, query.cursor
    )
    return Page(
        items=[
            ExecutionLog(
                execution_id=row["execution_id"],
                lead_id=row["lead_id"],
                workflow_version=row["workflow_version"],
                status=row["status"],
                evaluated_at_ms=row["evaluated_at_ms"],
                entries=[LogEntry(**entry) for entry in step_log(row)],
            )
            for row in rows
        ],
        next_cursor=next_cursor,
    )


async def metrics_report(
    metrics: MetricsReader, org_id: str, workflow_id: str, prices: UnitPrices, periods: MetricsRange
) -> MetricsReport:
    """Count, success rate, latency p50/p99 and cost per period, from ClickHouse (docs/agents.md)."""
    found = await run_in_threadpool(
        metrics.periods, org_id, workflow_id, periods.since_ms, periods.until_ms, periods.bucket, prices
    )
    return MetricsReport(
        workflow_id=workflow_id,
        bucket=periods.bucket,
        since_ms=periods.since_ms,
        until_ms=periods.until_ms,
        unit_prices=prices,
        periods=[Period(**period) for period in found],
    )
