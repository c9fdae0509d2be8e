"""Integration connections: the CRMs an organization's commands are applied to. Credentials are
write-only: sealed at rest, never returned (`has_credentials` says whether any are set)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Reader, get_integrations, get_settings
from api.destinations import refuse_unsafe
from api.problems import not_found
from drippulse.settings import Settings
from streams.integration_connections import IntegrationConnections, public_view

router = APIRouter(prefix="/api/v1/integration_connections", tags=["integrations"])
Connections = Annotated[IntegrationConnections, Depends(get_integrations)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["rest", "hubspot"]
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


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_connection(
    body: ConnectionCreate, principal: Admin, connections: Connections, settings: SettingsDep
) -> dict[str, Any]:
    await refuse_unsafe(body.base_url, settings, "base_url")
    fields = body.model_dump(exclude={"credentials"})
    return public_view(await connections.create(principal.org_id, fields, body.credentials))


@router.get("")
async def list_connections(principal: Reader, connections: Connections) -> dict[str, Any]:
    return {"items": [public_view(c) for c in await connections.list(principal.org_id)]}


async def _connection(connections: IntegrationConnections, org_id: str, connection_id: str) -> dict[str, Any]:
    record = await connections.get(org_id, connection_id)
    if record is None:
        raise not_found("integration connection", connection_id)
    return record


@router.get("/{connection_id}")
async def get_connection(connection_id: str, principal: Reader, connections: Connections) -> dict[str, Any]:
    return public_view(await _connection(connections, principal.org_id, connection_id))


@router.patch("/{connection_id}")
async def update_connection(
    connection_id: str, body: ConnectionUpdate, principal: Admin, connections: Connections, settings: SettingsDep
) -> dict[str, Any]:
    record = await _connection(connections, principal.org_id, connection_id)
    if body.base_url is not None:
        await refuse_unsafe(body.base_url, settings, "base_url")
    changes = body.model_dump(exclude_none=True, exclude={"credentials"})
    return public_view(await connections.update(principal.org_id, record, changes, body.credentials))


@router.delete("/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_connection(connection_id: str, principal: Admin, connections: Connections) -> Response:
    if not await connections.delete(principal.org_id, connection_id):
        raise not_found("integration connection", connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
