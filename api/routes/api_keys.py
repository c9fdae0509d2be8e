"""API keys of the caller's organization, issued and revoked by Admins. The secret is returned once."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.control_plane import api_keys
from api.control_plane.tables import ApiKey
from api.cursors import PageCursor, PageLimit, after_cursor, row_page
from api.deps import ApiKeysManage, Db
from api.models import Page, ms, required_ms
from api.permissions import Role
from api.problems import responses

router = APIRouter(prefix="/api/v1/api_keys", tags=["api keys"], responses=responses(401, 403, 422))


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Role = Field(description="The key's one role.")
    project_id: str | None = Field(default=None, description="Scope the key to one project's resources.")
    expires_at: AwareDatetime | None = Field(default=None, description="After this, the key is refused.")
    agent: bool = Field(
        default=False, description="An external agent's key: its workflow activations always need an Approver."
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Role
    project_id: str | None
    agent: bool
    prefix: str = Field(description="The key's first characters, to recognise it.")
    issued_by: str
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None
    last_used_at_ms: int | None = Field(description="Updated at most once a minute.")


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret: `Authorization: Bearer <key>`. Shown once, stored only as a hash.")


def _out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        role=Role(key.role),
        project_id=key.project_id,
        agent=key.agent,
        prefix=key.prefix,
        issued_by=key.issued_by,
        created_at_ms=required_ms(key.created_at),
        expires_at_ms=ms(key.expires_at),
        revoked_at_ms=ms(key.revoked_at),
        last_used_at_ms=ms(key.last_used_at),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, responses=responses(404))
async def create_api_key(body: ApiKeyCreate, principal: ApiKeysManage, database: Db) -> ApiKeyCreated:
    expires_at: datetime | None = body.expires_at
    async with database.transaction() as session:
        key, secret = await api_keys.issue(
            session,
            principal.scope,
            principal.actor,
            body.name,
            body.role.value,
            body.project_id,
            expires_at,
            body.agent,
        )
    return ApiKeyCreated(**_out(key).model_dump(), key=secret)


@router.get("", response_model=Page[ApiKeyOut], responses=responses(400))
async def list_api_keys(
    principal: ApiKeysManage, database: Db, limit: PageLimit = 100, cursor: PageCursor = None
) -> Page[ApiKeyOut]:
    """Newest first."""
    async with database.transaction() as session:
        found = await api_keys.list_keys(session, principal.org_id, limit + 1, after_cursor(cursor))
    return row_page(found, limit, lambda k: (k.created_at, k.id), _out)


@router.get("/{key_id}", response_model=ApiKeyOut, responses=responses(404))
async def get_api_key(key_id: str, principal: ApiKeysManage, database: Db) -> ApiKeyOut:
    async with database.transaction() as session:
        return _out(await api_keys.get_key(session, principal.org_id, key_id))


@router.delete("/{key_id}", response_model=ApiKeyOut, responses=responses(404))
async def revoke_api_key(key_id: str, principal: ApiKeysManage, database: Db) -> ApiKeyOut:
    """Refused from the next request on. Revoking twice is harmless."""
    async with database.transaction() as session:
        return _out(await api_keys.revoke(session, principal.scope, principal.actor, key_id))
