"""Execution history from ClickHouse: list with filters and cursor pagination, one by id, summary.

History is keyed by workflow, not project, so a project's view (the `project_id` filter, or a
project-scoped key) is the list of its workflows' ids, read from the control plane first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.control_plane import workflows
from api.deps import Db, ExecutionsRead, get_executions
from api.executions_reader import ExecutionFilter, ExecutionsReader
from api.models import ExecutionOut, ExecutionStatus, Page, ms
from api.permissions import Principal
from api.problems import not_found, responses

router = APIRouter(prefix="/api/v1/executions", tags=["executions"], responses=responses(401, 403, 422))
Executions = Annotated[ExecutionsReader, Depends(get_executions)]


class ExecutionSummary(BaseModel):
    executions: int
    leads: int
    completed: int
    filtered_out: int
    awaiting_approval: int = Field(description="Paused at an approval step now.")
    waiting: int = Field(description="Paused at a wait step now.")
    latency_p50_ms: int = Field(description="Event time to row in ClickHouse, for the evaluation (not a resume).")
    latency_p99_ms: int
    per_tier: dict[str, int] = Field(description="Executions per tier, except those filtered out.")
    per_owner: dict[str, int] = Field(description="Executions per owner, except those filtered out.")


async def _workflow_ids(database: Db, principal: Principal, project_id: str | None) -> list[str] | None:
    """The workflows the caller may see history of, when narrowed to a project; None: the whole org."""
    project = principal.project_id or project_id
    if project is None:
        return None
    if principal.project_id is not None and project_id not in (None, principal.project_id):
        return []
    async with database.transaction() as session:
        return await workflows.workflow_ids(session, principal.org_id, project)


@router.get("", response_model=Page[ExecutionOut], responses=responses(400))
async def list_executions(
    principal: ExecutionsRead,
    database: Db,
    executions: Executions,
    workflow_id: str | None = None,
    project_id: str | None = None,
    status: ExecutionStatus | None = None,
    lead_id: str | None = None,
    since: Annotated[datetime | None, Query(description="Evaluated at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Evaluated before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[ExecutionOut]:
    """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
    allowed = await _workflow_ids(database, principal, project_id)
    where = ExecutionFilter(workflow_id, status, lead_id, ms(since), ms(until), allowed)
    items, next_cursor = await run_in_threadpool(executions.list, principal.org_id, where, limit, cursor)
    return Page(items=[ExecutionOut(**item) for item in items], next_cursor=next_cursor)


@router.get("/summary", response_model=ExecutionSummary)
async def executions_summary(
    principal: ExecutionsRead,
    database: Db,
    executions: Executions,
    workflow_id: str | None = None,
    project_id: str | None = None,
) -> ExecutionSummary:
    """Leads per tier and owner and end-to-end latency, straight from ClickHouse."""
    allowed = await _workflow_ids(database, principal, project_id)
    summary = await run_in_threadpool(executions.summary, principal.org_id, workflow_id, allowed)
    return ExecutionSummary(**summary)


@router.get("/{execution_id}", response_model=ExecutionOut, responses=responses(404))
async def get_execution(
    execution_id: str, principal: ExecutionsRead, database: Db, executions: Executions
) -> ExecutionOut:
    found = await run_in_threadpool(executions.get, principal.org_id, execution_id)
    allowed = await _workflow_ids(database, principal, None)
    if found is None or (allowed is not None and found["workflow_id"] not in allowed):
        raise not_found("execution", execution_id)
    return ExecutionOut(**found)
