"""The organization's unit prices: what its executions cost (processors/costs.py). Everyone reads
them (metrics show costs); an Admin sets them, audited."""

from __future__ import annotations

from fastapi import APIRouter

from api.control_plane import unit_prices
from api.deps import Db, UnitPricesManage, UnitPricesRead
from api.problems import responses
from processors.costs import UnitPrices

router = APIRouter(prefix="/api/v1/org/unit_prices", tags=["costs"], responses=responses(401, 403, 422))


@router.get("", response_model=UnitPrices)
async def get_unit_prices(principal: UnitPricesRead, database: Db) -> UnitPrices:
    """The defaults until an Admin set prices."""
    async with database.transaction() as session:
        return await unit_prices.get(session, principal.org_id)


@router.put("", response_model=UnitPrices)
async def put_unit_prices(body: UnitPrices, principal: UnitPricesManage, database: Db) -> UnitPrices:
    """Replaces every price (a unit left out gets its default). Costs are computed when read, so the
    new prices apply to the whole history at once, budgets' cost today included."""
    async with database.transaction() as session:
        return await unit_prices.put(session, principal.org_id, principal.actor, body)
