"""An organization's unit prices: read by everyone (what executions cost), changed by an Admin,
every change audited in its own transaction."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane import audit
from api.control_plane.actors import Actor
from api.control_plane.tables import OrgUnitPrices
from processors.costs import UnitPrices


async def get(session: AsyncSession, org_id: str) -> UnitPrices:
    """The org's prices; the defaults for a unit it never priced."""
    row = await session.get(OrgUnitPrices, org_id)
    return UnitPrices.model_validate(row.prices if row is not None else {})


async def put(session: AsyncSession, org_id: str, actor: Actor, prices: UnitPrices) -> UnitPrices:
    row = await session.get(OrgUnitPrices, org_id, with_for_update=True)
    before = UnitPrices.model_validate(row.prices if row is not None else {}).model_dump()
    after = prices.model_dump()
    if row is None:
        session.add(OrgUnitPrices(org_id=org_id, prices=after))
    else:
        row.prices = after
        row.updated_at = func.now()
    audit.record(session, org_id, actor, "unit_prices.update", ("org", org_id), before=before, after=after)
    return prices
