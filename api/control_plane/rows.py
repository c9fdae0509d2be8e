"""Reading one row of an organization: the lookup every store repeats, with its tenant check."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.problems import not_found

Row = TypeVar("Row")


async def one(
    session: AsyncSession,
    table: type[Row],
    what: str,
    org_id: str,
    row_id: str,
    project_id: str | None = None,
    lock: bool = False,
) -> Row:
    """The row with this id in this org (and project, when given), locked for update when asked;
    a 404 otherwise, the same whether it does not exist or belongs to someone else."""
    columns: Any = table
    query = select(table).where(columns.org_id == org_id, columns.id == row_id)
    if project_id is not None:
        query = query.where(columns.project_id == project_id)
    found = await session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise not_found(what, row_id)
    return found


async def all_of(session: AsyncSession, table: type[Row], org_id: str) -> list[Row]:
    """Every row of this org, oldest first."""
    columns: Any = table
    query = select(table).where(columns.org_id == org_id).order_by(columns.created_at, columns.id)
    return list((await session.scalars(query)).all())
