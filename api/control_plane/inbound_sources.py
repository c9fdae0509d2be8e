"""Inbound webhook sources: third parties (form tools, enrichment services, other CRMs) that push
events to `POST /api/v1/hooks/{source_id}`, signed the Standard Webhooks way with a secret shown once.

A source says how its payload becomes an inbound event: a fixed event type and a mapping from event
fields to dotted paths in the payload, or no mapping when the sender posts DripPulse events as they are.
It sends its events to the org's workflows, or, when it names `agent_id`, as calls of that agent only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor, Scope
from api.control_plane.agent_targets import callable_agent
from api.control_plane.ids import new_id
from api.control_plane.rows import all_of, one
from api.control_plane.tables import InboundSource
from api.problems import invalid
from streams.delivery.signing_secrets import new_secrets, rotated, valid
from streams.state.secret_box import SecretBox


async def create(
    session: AsyncSession, scope: Scope, actor: Actor, box: SecretBox, fields: dict[str, Any]
) -> tuple[InboundSource, str]:
    if fields.get("agent_id") is not None:
        _, problem = await callable_agent(session, scope.org_id, scope.project_id, fields["agent_id"])
        if problem:
            raise invalid([{"field": "$.agent_id", "message": problem}], "a source calls an agent of its organization")
    stored, secret = new_secrets(box)
    source = InboundSource(id=new_id("src"), org_id=scope.org_id, secrets=stored, **fields)
    session.add(source)
    await session.flush()
    await session.refresh(source)
    audit.record(
        session,
        scope.org_id,
        actor,
        "inbound_source.create",
        ("inbound_source", source.id),
        after=audit.snapshot(source),
    )
    return source, secret


async def list_all(session: AsyncSession, org_id: str) -> list[InboundSource]:
    return await all_of(session, InboundSource, org_id)


async def get(session: AsyncSession, org_id: str, source_id: str, lock: bool = False) -> InboundSource:
    return await one(session, InboundSource, "inbound source", org_id, source_id, lock=lock)


async def find(session: AsyncSession, source_id: str) -> InboundSource | None:
    """A source by id alone, for an unauthenticated hook request: its signature is checked next."""
    return await session.get(InboundSource, source_id)


async def delete(session: AsyncSession, scope: Scope, actor: Actor, source_id: str) -> None:
    source = await get(session, scope.org_id, source_id, lock=True)
    before = audit.snapshot(source)
    await session.delete(source)
    audit.record(session, scope.org_id, actor, "inbound_source.delete", ("inbound_source", source_id), before=before)


async def rotate_secret(
    session: AsyncSession, scope: Scope, actor: Actor, box: SecretBox, source_id: str, overlap_s: int
) -> tuple[InboundSource, str]:
    source = await get(session, scope.org_id, source_id, lock=True)
    before = audit.snapshot(source)
    source.secrets, secret = rotated(valid(source.secrets), box, overlap_s)
    await session.flush()
    audit.record(
        session,
        scope.org_id,
        actor,
        "inbound_source.rotate_secret",
        ("inbound_source", source_id),
        before,
        audit.snapshot(source),
    )
    return source, secret


def verification_secrets(box: SecretBox, source: InboundSource) -> Sequence[str]:
    """Every secret a request may be signed with now (during a rotation, old and new)."""
    return [box.open(s["sealed"]) for s in valid(source.secrets)]
