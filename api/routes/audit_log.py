"""The audit log: every control-plane write with its actor, before and after, and request id.
Read-only here, as everywhere: the application has no path that changes or deletes an entry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from api.control_plane import audit
from api.control_plane.tables import AuditEntry
from api.cursors import PageCursor, numbered_after_cursor, row_page
from api.deps import AuditRead, Db
from api.models import Page, required_ms
from api.problems import responses

router = APIRouter(prefix="/api/v1/audit_log", tags=["audit log"], responses=responses(401, 403, 422))


class AuditActor(BaseModel):
    type: Literal["user", "api_key", "system"]
    id: str
    label: str


class AuditEntryOut(BaseModel):
    id: int
    at_ms: int
    actor: AuditActor
    action: str = Field(description="resource.verb, e.g. workflow.activate, change_request.approve")
    resource_type: str
    resource_id: str
    project_id: str | None
    before: dict[str, Any] | None = Field(description="The changed fields before (secrets redacted); null on create.")
    after: dict[str, Any] | None = Field(description="The changed fields after (secrets redacted); null on delete.")
    request_id: str | None = Field(description="The X-Request-ID of the request that made the change.")


def _out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at_ms=required_ms(entry.at),
        actor=AuditActor(type=entry.actor_type, id=entry.actor_id, label=entry.actor_label),
        action=entry.action,
        resource_type=entry.resource_type,
        resource_id=entry.resource_id,
        project_id=entry.project_id,
        before=entry.before,
        after=entry.after,
        request_id=entry.request_id,
    )


@router.get("", response_model=Page[AuditEntryOut], responses=responses(400))
async def list_audit_log(
    principal: AuditRead,
    database: Db,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    actor_id: str | None = None,
    project_id: str | None = None,
    since: Annotated[AwareDatetime | None, Query(description="At or after (ISO 8601 with a zone).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before (ISO 8601 with a zone).")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: PageCursor = None,
) -> Page[AuditEntryOut]:
    """Newest first."""
    filters = {
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "actor_id": actor_id,
        "project_id": project_id,
    }
    async with database.transaction() as session:
        found = await audit.entries(
            session, principal.org_id, filters, since, until, limit + 1, numbered_after_cursor(cursor)
        )
    return row_page(found, limit, lambda e: (e.at, str(e.id)), _out)
