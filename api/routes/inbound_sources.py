"""Inbound webhook sources of the caller's organization; the secret is returned once, at creation."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.control_plane import inbound_sources
from api.control_plane.tables import InboundSource
from api.deps import Box, Db, InboundSourcesManage, InboundSourcesRead
from api.models import Items, required_ms
from api.problems import responses
from processors.events import EventType
from processors.payload_mapping import nested_target
from streams.delivery.signing_secrets import rotation_view, valid

AGENT_CALL_TYPES = (EventType.LEAD_CREATED, EventType.LEAD_UPDATED)
"""What an agent is called with: a lead, as `POST /agents/{id}/execute` takes it."""

router = APIRouter(prefix="/api/v1/inbound_sources", tags=["inbound webhooks"], responses=responses(401, 403, 422))


class InboundSourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    agent_id: str | None = Field(
        default=None,
        max_length=64,
        description="A deployed agent of the organization: every event is a call of this agent (its input schema "
        "checked, refused while it is paused) and no workflow of the org sees it. Null: the org's workflows.",
    )
    event_type: EventType = Field(default=EventType.LEAD_CREATED, description="The type of every mapped event.")
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description='Event field -> dotted path in the payload, e.g. {"lead.email": "data.contact.email"}. '
        "Empty: the payload is a DripPulse event as POST /api/v1/events takes it.",
    )

    @field_validator("event_type")
    @classmethod
    def _an_agent_takes_leads(cls, event_type: EventType, info: ValidationInfo) -> EventType:
        if info.data.get("agent_id") is not None and event_type not in AGENT_CALL_TYPES:
            raise ValueError(f"a source calling an agent sends {' or '.join(AGENT_CALL_TYPES)} events")
        return event_type

    @field_validator("mapping")
    @classmethod
    def _targets_do_not_nest(cls, mapping: dict[str, str]) -> dict[str, str]:
        nested = nested_target(mapping)
        if nested is not None:
            raise ValueError(f"{nested[0]!r} cannot be both a value and hold {nested[1]!r}")
        return mapping


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_hours: int = Field(default=24, ge=0, le=168, description="How long the previous secret stays valid.")


class InboundSourceOut(BaseModel):
    id: str
    name: str
    agent_id: str | None = Field(description="The agent its events call; null: the org's workflows.")
    event_type: EventType
    mapping: dict[str, str]
    hook_path: str = Field(description="Where the sender posts: POST {hook_path}, signed with the secret.")
    signing_secrets: int
    previous_secret_valid_until_ms: int | None
    created_at_ms: int


class InboundSourceWithSecret(InboundSourceOut):
    secret: str = Field(description="The `whsec_…` verification secret. Shown once, stored encrypted.")


def _out(source: InboundSource) -> InboundSourceOut:
    return InboundSourceOut(
        id=source.id,
        name=source.name,
        agent_id=source.agent_id,
        event_type=EventType(source.event_type),
        mapping=source.mapping,
        hook_path=f"/api/v1/hooks/{source.id}",
        **rotation_view(valid(source.secrets)),
        created_at_ms=required_ms(source.created_at),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=InboundSourceWithSecret)
async def create_source(
    body: InboundSourceCreate, principal: InboundSourcesManage, database: Db, box: Box
) -> InboundSourceWithSecret:
    """The verification secret (`whsec_…`) is in this response only."""
    async with database.transaction() as session:
        source, secret = await inbound_sources.create(
            session, principal.scope, principal.actor, box, body.model_dump(mode="json")
        )
    return InboundSourceWithSecret(**_out(source).model_dump(), secret=secret)


@router.get("", response_model=Items[InboundSourceOut])
async def list_sources(principal: InboundSourcesRead, database: Db) -> Items[InboundSourceOut]:
    async with database.transaction() as session:
        return Items(items=[_out(s) for s in await inbound_sources.list_all(session, principal.org_id)])


@router.get("/{source_id}", response_model=InboundSourceOut, responses=responses(404))
async def get_source(source_id: str, principal: InboundSourcesRead, database: Db) -> InboundSourceOut:
    async with database.transaction() as session:
        return _out(await inbound_sources.get(session, principal.org_id, source_id))


@router.delete(
    "/{source_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=responses(404)
)
async def delete_source(source_id: str, principal: InboundSourcesManage, database: Db) -> Response:
    async with database.transaction() as session:
        await inbound_sources.delete(session, principal.scope, principal.actor, source_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{source_id}/rotate_secret", response_model=InboundSourceWithSecret, responses=responses(404))
async def rotate_secret(
    source_id: str, principal: InboundSourcesManage, database: Db, box: Box, body: RotateSecret | None = None
) -> InboundSourceWithSecret:
    """A new secret, shown once; requests signed with the previous one are accepted for `overlap_hours`."""
    overlap_s = (body.overlap_hours if body else 24) * 3600
    async with database.transaction() as session:
        source, secret = await inbound_sources.rotate_secret(
            session, principal.scope, principal.actor, box, source_id, overlap_s
        )
    return InboundSourceWithSecret(**_out(source).model_dump(), secret=secret)
