"""A workflow's history, metrics and costs (an agent's, through its backing workflow): its
executions' step logs and its metrics per period, from ClickHouse."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.control_plane import unit_prices, workflows
from api.cursors import PageCursor, PageLimit
from api.deps import Db, ExecutionsRead, get_executions, get_metrics
from api.executions_reader import ExecutionFilter, ExecutionsReader
from api.metrics_reader import BUCKET_MS, Bucket, MetricsReader
from api.models import ExecutionStatus, Page, ms
from api.permissions import Principal
from api.problems import Problem, responses
from processors.costs import UnitPrices
from processors.step_logs import step_log
from streams.clock import now_ms

router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], responses=responses(401, 403, 422))
MAX_PERIODS = 1500
"""A day of minutes, two months of hours, four years of days."""


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


async def _readable(database: Db, principal: Principal, workflow_id: str) -> UnitPrices:
    """404 unless the caller may see the workflow; its org's unit prices."""
    async with database.transaction() as session:
        await workflows.get_workflow(session, principal.scope, workflow_id)
        return await unit_prices.get(session, principal.org_id)


@router.get("/{workflow_id}/logs", response_model=Page[ExecutionLog], responses=responses(400, 404))
async def workflow_logs(
    workflow_id: str,
    principal: ExecutionsRead,
    database: Db,
    executions: Annotated[ExecutionsReader, Depends(get_executions)],
    status: ExecutionStatus | None = None,
    lead_id: str | None = None,
    since: Annotated[datetime | None, Query(description="Evaluated at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Evaluated before (ISO 8601).")] = None,
    limit: PageLimit = 100,
    cursor: PageCursor = None,
) -> Page[ExecutionLog]:
    """Each execution's steps as log entries; newest execution first, `limit` executions a page."""
    await _readable(database, principal, workflow_id)
    where = ExecutionFilter(workflow_id, status, lead_id, ms(since), ms(until))
    rows, next_cursor = await run_in_threadpool(executions.list, principal.org_id, where, limit, cursor)
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


@router.get("/{workflow_id}/metrics", response_model=MetricsReport, responses=responses(404))
async def workflow_metrics(
    workflow_id: str,
    principal: ExecutionsRead,
    database: Db,
    metrics: Annotated[MetricsReader, Depends(get_metrics)],
    bucket: Bucket = "hour",
    since: Annotated[datetime | None, Query(description="From (ISO 8601); default: 24 periods before `until`.")] = None,
    until: Annotated[datetime | None, Query(description="Until, excluded (ISO 8601); default: now.")] = None,
) -> MetricsReport:
    """Count, success rate, latency p50/p99 and cost per period, from ClickHouse (docs/agents.md)."""
    prices = await _readable(database, principal, workflow_id)
    step = BUCKET_MS[bucket]
    until_ms = ms(until) or now_ms()
    since_ms = ms(since)
    since_ms = (until_ms - 24 * step if since_ms is None else since_ms) // step * step
    if since_ms >= until_ms or (until_ms - since_ms) / step > MAX_PERIODS:
        raise Problem(
            422,
            "bad-range",
            "Unusable time range",
            f"`since` must be before `until`, at most {MAX_PERIODS} {bucket}s apart",
        )
    org_id = principal.org_id
    periods = await run_in_threadpool(metrics.periods, org_id, workflow_id, since_ms, until_ms, bucket, prices)
    return MetricsReport(
        workflow_id=workflow_id,
        bucket=bucket,
        since_ms=since_ms,
        until_ms=until_ms,
        unit_prices=prices,
        periods=[Period(**period) for period in periods],
    )
