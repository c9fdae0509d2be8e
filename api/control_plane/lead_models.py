"""The versions of an organization's learned lead model, as the API reads them (the trainer writes
them: streams/state/lead_models.py). Read-only here: a model is what its outcomes made it."""

from __future__ import annotations

from collections import OrderedDict
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
    request that scores a few leads; the workers hold `streams.state.lead_models.LeadModels` instead.
    A version never changes once written, so its weights are read and parsed once per process
    (`_WEIGHTS`): a call reads the current version's number, not its weights and learner state."""
    latest = (
        await session.execute(
            select(LeadModelVersion.version)
            .where(LeadModelVersion.org_id == org_id)
            .order_by(LeadModelVersion.version.desc())
            .limit(1)
        )
    ).scalar()
    if latest is None:
        return None
    cached = _WEIGHTS.get((org_id, latest))
    if cached is not None:
        _WEIGHTS.move_to_end((org_id, latest))
        return cached
    row = (
        await session.execute(
            select(LeadModelVersion.trained_on, LeadModelVersion.weights).where(
                LeadModelVersion.org_id == org_id, LeadModelVersion.version == latest
            )
        )
    ).one()
    weights = Weights.from_json(latest, row.trained_on, row.weights)
    _WEIGHTS[(org_id, latest)] = weights
    while len(_WEIGHTS) > WEIGHTS_KEPT:
        _WEIGHTS.popitem(last=False)
    return weights


WEIGHTS_KEPT = 256
"""Model versions whose weights an API process keeps parsed, least recently used dropped first."""

_WEIGHTS: OrderedDict[tuple[str, int], Weights] = OrderedDict()
