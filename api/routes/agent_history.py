"""A deployed agent's history, logs and metrics: its backing workflow's, answered by the same
readers and views as a workflow's (api/history_views.py). The routes only find the agent in the
caller's scope (404 otherwise, another org's agent included) and read its backing workflow."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.control_plane import agents, unit_prices
from api.deps import AgentsRead, Db, get_executions, get_metrics
from api.executions_reader import ExecutionsReader
from api.history_views import (
    ExecutionLog,
    HistoryQuery,
    MetricsRange,
    MetricsReport,
    executions_page,
    history_query,
    logs_page,
    metrics_range,
    metrics_report,
)
from api.metrics_reader import MetricsReader
from api.models import ExecutionOut, Page
from api.permissions import Principal
from api.problems import responses
from processors.costs import UnitPrices

router = APIRouter(prefix="/api/v1/agents", tags=["agents"], responses=responses(401, 403, 404, 422))
Executions = Annotated[ExecutionsReader, Depends(get_executions)]


async def _backing_workflow(database: Db, principal: Principal, agent_id: str) -> tuple[str, UnitPrices]:
    """The agent's backing workflow, if the caller may read the agent; its org's unit prices."""
    async with database.transaction() as session:
        agent = await agents.get(session, principal.scope, agent_id)
        return agent.workflow_id, await unit_prices.get(session, principal.org_id)


@router.get("/{agent_id}/executions", response_model=Page[ExecutionOut], responses=responses(400))
async def agent_executions(
    agent_id: str,
    principal: AgentsRead,
    database: Db,
    executions: Executions,
    query: Annotated[HistoryQuery, Depends(history_query)],
) -> Page[ExecutionOut]:
    """Its executions (every version it ran), newest first."""
    workflow_id, _ = await _backing_workflow(database, principal, agent_id)
    return await executions_page(executions, principal.org_id, workflow_id, query)


@router.get("/{agent_id}/logs", response_model=Page[ExecutionLog], responses=responses(400))
async def agent_logs(
    agent_id: str,
    principal: AgentsRead,
    database: Db,
    executions: Executions,
    query: Annotated[HistoryQuery, Depends(history_query)],
) -> Page[ExecutionLog]:
    """Each execution's steps as log entries; newest execution first, `limit` executions a page."""
    workflow_id, _ = await _backing_workflow(database, principal, agent_id)
    return await logs_page(executions, principal.org_id, workflow_id, query)


@router.get("/{agent_id}/metrics", response_model=MetricsReport)
async def agent_metrics(
    agent_id: str,
    principal: AgentsRead,
    database: Db,
    metrics: Annotated[MetricsReader, Depends(get_metrics)],
    periods: Annotated[MetricsRange, Depends(metrics_range)],
) -> MetricsReport:
    """Count, success rate, latency p50/p99 and cost per period (provider calls of its summaries
    included), from ClickHouse (docs/agents.md)."""
    workflow_id, prices = await _backing_workflow(database, principal, agent_id)
    return await metrics_report(metrics, principal.org_id, workflow_id, prices, periods)
