"""Execution history from ClickHouse: list with filters and cursor pagination, one by id, summary."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import Reader, get_executions
from api.executions_reader import ExecutionFilter, ExecutionsReader
from api.problems import not_found

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])
Executions = Annotated[ExecutionsReader, Depends(get_executions)]


def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


@router.get("")
def list_executions(
    principal: Reader,
    executions: Executions,
    workflow_id: str | None = None,
    status: Literal["completed", "filtered_out", "pending"] | None = None,
    lead_id: str | None = None,
    since: Annotated[datetime | None, Query(description="Evaluated at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Evaluated before (ISO 8601).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first. Pass `next_cursor` back as `cursor` for the next page."""
    where = ExecutionFilter(workflow_id, status, lead_id, _ms(since), _ms(until))
    items, next_cursor = executions.list(principal.org_id, where, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/summary")
def executions_summary(principal: Reader, executions: Executions, workflow_id: str | None = None) -> dict[str, Any]:
    """Leads per tier and owner and end-to-end latency, straight from ClickHouse."""
    return executions.summary(principal.org_id, workflow_id)


@router.get("/{execution_id}")
def get_execution(execution_id: str, principal: Reader, executions: Executions) -> dict[str, Any]:
    found = executions.get(principal.org_id, execution_id)
    if found is None:
        raise not_found("execution", execution_id)
    return found
