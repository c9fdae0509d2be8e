"""What became of each CRM command on each integration connection, and retrying one that failed."""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.control_plane import integrations
from api.crm_results_reader import CrmResultsReader
from api.deps import CrmCommandsRead, CrmCommandsRetry, Db, get_crm_parking, get_crm_results, get_redis
from api.models import Page
from api.problems import Problem, not_found, responses
from streams.delivery.crm_parking import ParkedCommands
from streams.state import state_keys

router = APIRouter(prefix="/api/v1/crm_commands", tags=["integrations"], responses=responses(401, 403, 422))
ResultStatus = Literal["applied", "failed", "retrying"]


class CrmCommandResult(BaseModel):
    result_id: str = Field(description="command_id:connection_id")
    command_id: str
    connection_id: str
    connector: str
    execution_id: str
    lead_id: str
    operation: str
    status: ResultStatus
    attempts: int
    status_code: int | None
    error: str
    crm_object_id: str | None
    applied_at_ms: int


class RetryQueued(BaseModel):
    result_id: str
    command_id: str
    status: Literal["retrying"]


@router.get("", response_model=Page[CrmCommandResult], responses=responses(400))
async def list_crm_results(
    principal: CrmCommandsRead,
    reader: Annotated[CrmResultsReader, Depends(get_crm_results)],
    connection_id: str | None = None,
    lead_id: str | None = None,
    command_id: str | None = None,
    status: ResultStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[CrmCommandResult]:
    """Newest first, the latest status of each (command, connection). `failed` carries the CRM's
    reason in `error`; `retrying` means parked behind a failing CRM and retried on a schedule."""
    filters = {"connection_id": connection_id, "lead_id": lead_id, "command_id": command_id, "status": status}
    items, next_cursor = await run_in_threadpool(reader.results, principal.org_id, filters, limit, cursor)
    return Page(items=[CrmCommandResult(**item) for item in items], next_cursor=next_cursor)


@router.post(
    "/{result_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetryQueued,
    responses=responses(404, 409),
)
async def retry_failed_command(
    result_id: str,
    principal: CrmCommandsRetry,
    database: Db,
    client: Annotated[aioredis.Redis, Depends(get_redis)],
    parking: Annotated[ParkedCommands, Depends(get_crm_parking)],
) -> RetryQueued:
    """Queues a failed command (e.g. after fixing the CRM-side cause) behind any parked commands of
    its lead, for the CRM worker to apply now; its result row turns `applied` when it does. Failed
    commands are kept for DRIPPULSE_WEBHOOK_RETENTION_S."""
    key = state_keys.crm_failed(principal.org_id, result_id)
    raw = await client.get(key)
    if raw is None:
        raise not_found("failed CRM command", result_id)
    command = orjson.loads(raw)
    connection_id = result_id.rsplit(":", 1)[1]
    async with database.transaction() as session:
        connection = await integrations.get(session, principal.org_id, connection_id)
    if not connection.enabled:
        raise Problem(409, "connection-unavailable", "Connection unavailable", f"{connection_id} is disabled")
    await parking.park({(principal.org_id, connection_id, command["lead_id"]): [command]}, due_now=True)
    await client.delete(key)
    return RetryQueued(result_id=result_id, command_id=command["command_id"], status="retrying")
