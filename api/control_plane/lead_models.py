"""The versions of an organization's learned lead model, as the API reads them (the trainer writes
them: streams/state/lead_models.py). Read-only here: a model is what its outcomes made it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from api.control_plane.rows import newest_first
from api.control_plane.tables import LeadModelVersion
from processors.learned_model import Weights


async def versions(
    session: AsyncSession, org_id: str, limit: int, after: tuple[datetime, int] | None
) -> list[LeadModelVersion]:
    """Newest first, without the weights and the learner's state (a page of versions could be
    megabytes of them)."""
    query = (
        select(LeadModelVersion)
        .where(LeadModelVersion.org_id == org_id)
        .options(defer(LeadModelVersion.weights), defer(LeadModelVersion.state))
    )
    return await newest_first(session, query, LeadModelVersion.created_at, LeadModelVersion.version, limit, after)


async def current(session: AsyncSession, org_id: str) -> LeadModelVersion | None:
    query = (
        select(LeadModelVersion)
        .where(LeadModelVersion.org_id == org_id)
        .order_by(LeadModelVersion.version.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def current_weights(session: AsyncSession, org_id: str) -> Weights | None:
    """What scoring needs of the current version (`processors.learned_model.model_context`), for a
    request that scores a few leads; the workers hold `streams.state.lead_models.LeadModels` instead."""
    row = await current(session, org_id)
    return None if row is None else Weights.from_json(row.version, row.trained_on, row.weights)
