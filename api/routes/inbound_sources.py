"""Inbound webhook sources of the caller's organization; the secret is returned once, at creation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Reader, get_inbound_sources
from api.inbound_sources import InboundSources, public_view
from api.problems import not_found
from processors.events import EventType

router = APIRouter(prefix="/api/v1/inbound_sources", tags=["inbound webhooks"])
Sources = Annotated[InboundSources, Depends(get_inbound_sources)]


class InboundSourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    event_type: EventType = Field(default=EventType.LEAD_CREATED, description="The type of every mapped event.")
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Event field -> dotted path in the payload, e.g. {\"lead.email\": \"data.contact.email\"}. "
        "Empty: the payload is a DripPulse event as POST /api/v1/events takes it.",
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_source(body: InboundSourceCreate, principal: Admin, sources: Sources) -> dict[str, Any]:
    """The verification secret (`whsec_…`) is in this response only."""
    record, secret = await sources.create(principal.org_id, body.model_dump(mode="json"))
    return {**public_view(record), "secret": secret}


@router.get("")
async def list_sources(principal: Reader, sources: Sources) -> dict[str, Any]:
    return {"items": [public_view(r) for r in await sources.list(principal.org_id)]}


@router.get("/{source_id}")
async def get_source(source_id: str, principal: Reader, sources: Sources) -> dict[str, Any]:
    record = await sources.get(principal.org_id, source_id)
    if record is None:
        raise not_found("inbound source", source_id)
    return public_view(record)


@router.delete("/{source_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_source(source_id: str, principal: Admin, sources: Sources) -> Response:
    if not await sources.delete(principal.org_id, source_id):
        raise not_found("inbound source", source_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: int = Field(default=24, ge=0, le=168, description="How long the previous secret stays valid.")


@router.post("/{source_id}/rotate_secret")
async def rotate_secret(
    source_id: str, principal: Admin, sources: Sources, body: RotateSecret | None = None
) -> dict[str, Any]:
    """A new secret, shown once; requests signed with the previous one are accepted for `overlap_hours`."""
    record = await sources.get(principal.org_id, source_id)
    if record is None:
        raise not_found("inbound source", source_id)
    rotated, secret = await sources.rotate_secret(record, (body.overlap_hours if body else 24) * 3600)
    return {**public_view(rotated), "secret": secret}
