"""Integration connections: the CRMs an organization's commands are applied to. Credentials are
write-only: sealed at rest, never returned (`has_credentials` says whether any are set)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.control_plane import integrations
from api.control_plane.tables import IntegrationConnection
from api.deps import Box, Db, IntegrationsManage, IntegrationsRead, SettingsDep
from api.destinations import refuse_unsafe
from api.models import Items, required_ms
from api.problems import responses

router = APIRouter(prefix="/api/v1/integration_connections", tags=["integrations"], responses=responses(401, 403, 422))
ConnectorType = Literal["rest", "hubspot"]


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ConnectorType
    name: str = Field(min_length=1, max_length=200)
    base_url: str = Field(min_length=1, max_length=2000)
    credentials: str | None = Field(default=None, max_length=4000, description="A bearer token; write-only.")
    rate_limit_per_s: float = Field(default=10.0, gt=0, le=10_000, description="Requests per second, all workers.")
    burst: int = Field(default=10, ge=1, le=10_000)
    enabled: bool = True


class ConnectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: str | None = Field(default=None, min_length=1, max_length=2000)
    credentials: str | None = Field(default=None, max_length=4000, description="Empty string removes them.")
    rate_limit_per_s: float | None = Field(default=None, gt=0, le=10_000)
    burst: int | None = Field(default=None, ge=1, le=10_000)
    enabled: bool | None = None


class ConnectionOut(BaseModel):
    id: str
    type: ConnectorType
    name: str
    base_url: str
    has_credentials: bool
    rate_limit_per_s: float
    burst: int
    enabled: bool
    created_at_ms: int
    updated_at_ms: int


def _out(connection: IntegrationConnection) -> ConnectionOut:
    return ConnectionOut(
        id=connection.id,
        type=connection.type,
        name=connection.name,
        base_url=connection.base_url,
        has_credentials=connection.sealed_credentials is not None,
        rate_limit_per_s=connection.rate_limit_per_s,
        burst=connection.burst,
        enabled=connection.enabled,
        created_at_ms=required_ms(connection.created_at),
        updated_at_ms=required_ms(connection.updated_at),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConnectionOut)
async def create_connection(
    body: ConnectionCreate, principal: IntegrationsManage, database: Db, box: Box, settings: SettingsDep
) -> ConnectionOut:
    await refuse_unsafe(body.base_url, settings, "base_url")
    fields = body.model_dump(exclude={"credentials"})
    async with database.transaction() as session:
        return _out(await integrations.create(session, principal.scope, principal.actor, box, fields, body.credentials))


@router.get("", response_model=Items[ConnectionOut])
async def list_connections(principal: IntegrationsRead, database: Db) -> Items[ConnectionOut]:
    async with database.transaction() as session:
        return Items(items=[_out(c) for c in await integrations.list_all(session, principal.org_id)])


@router.get("/{connection_id}", response_model=ConnectionOut, responses=responses(404))
async def get_connection(connection_id: str, principal: IntegrationsRead, database: Db) -> ConnectionOut:
    async with database.transaction() as session:
        return _out(await integrations.get(session, principal.org_id, connection_id))


@router.patch("/{connection_id}", response_model=ConnectionOut, responses=responses(404))
async def update_connection(
    connection_id: str,
    body: ConnectionUpdate,
    principal: IntegrationsManage,
    database: Db,
    box: Box,
    settings: SettingsDep,
) -> ConnectionOut:
    """A new `base_url` for a connection with credentials needs `credentials` in the same request (a
    token, or "" to remove them), else 422: the stored token is never sent to a URL it was not given
    for. Audited as `integration.move`."""
    if body.base_url is not None:
        await refuse_unsafe(body.base_url, settings, "base_url")
    changes = body.model_dump(exclude_none=True, exclude={"credentials"})
    async with database.transaction() as session:
        return _out(
            await integrations.update(
                session, principal.scope, principal.actor, box, connection_id, changes, body.credentials
            )
        )


@router.delete(
    "/{connection_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=responses(404)
)
async def delete_connection(connection_id: str, principal: IntegrationsManage, database: Db) -> Response:
    async with database.transaction() as session:
        await integrations.delete(session, principal.scope, principal.actor, connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
