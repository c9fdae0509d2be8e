"""GET /api/v1/crm_commands: what became of each CRM command on each integration connection."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from api.crm_results_reader import CrmResultsReader
from api.deps import Reader, get_crm_results

router = APIRouter(prefix="/api/v1/crm_commands", tags=["integrations"])


@router.get("")
async def list_crm_results(
    principal: Reader,
    reader: Annotated[CrmResultsReader, Depends(get_crm_results)],
    connection_id: str | None = None,
    lead_id: str | None = None,
    command_id: str | None = None,
    status: Literal["applied", "failed", "retrying"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first, the latest status of each (command, connection). `failed` carries the CRM's
    reason in `error`; `retrying` means parked behind a failing CRM and retried on a schedule."""
    filters = {"connection_id": connection_id, "lead_id": lead_id, "command_id": command_id, "status": status}
    items, next_cursor = await run_in_threadpool(reader.results, principal.org_id, filters, limit, cursor)
    return {"items": items, "next_cursor": next_cursor}
