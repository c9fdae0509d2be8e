"""A workflow's history, metrics and costs: its executions' step logs and its metrics per period,
from ClickHouse (the answers are built in api/history_views.py, shared with an agent's routes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.control_plane import unit_prices, workflows
from api.deps import Db, ExecutionsRead, get_executions, get_metrics
from api.executions_reader import ExecutionsReader
from api.history_views import (
    ExecutionLog,
    HistoryQuery,
    MetricsRange,
    MetricsReport,
    history_query,
    logs_page,
    metrics_range,
    metrics_report,
)
from api.metrics_reader import MetricsReader
from api.models import Page
from api.permissions import Principal
from api.problems import responses
from processors.costs import UnitPrices

router = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], responses=responses(401, 403, 422))


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
    query: Annotated[HistoryQuery, Depends(history_query)],
) -> Page[ExecutionLog]:
    """Each execution's steps as log entries; newest execution first, `limit` executions a page."""
    await _readable(database, principal, workflow_id)
    return await logs_page(executions, principal.org_id, workflow_id, query)


@router.get("/{workflow_id}/metrics", response_model=MetricsReport, responses=responses(404))
async def workflow_metrics(
    workflow_id: str,
    principal: ExecutionsRead,
    database: Db,
    metrics: Annotated[MetricsReader, Depends(get_metrics)],
    periods: Annotated[MetricsRange, Depends(metrics_range)],
) -> MetricsReport:
    """Count, success rate, latency p50/p99 and cost per period, from ClickHouse (docs/agents.md)."""
    prices = await _readable(database, principal, workflow_id)
    return await metrics_report(metrics, principal.org_id, workflow_id, prices, periods)
