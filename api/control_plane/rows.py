"""Reading an organization's rows: the lookups every store repeats, with their tenant check."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from api.control_plane.actors import Scope
from api.problems import not_found

Row = TypeVar("Row")
Columns = TypeVarTuple("Columns")


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


def scoped(table: type[Row], scope: Scope, *equal: tuple[Any, object | None]) -> Select[Any]:
    """The rows of the scope's org (and project, for a project-scoped key), narrowed by each
    (column, value) whose value is given."""
    columns: Any = table
    query = select(table).where(columns.org_id == scope.org_id)
    for column, value in ((columns.project_id, scope.project_id), *equal):
        if value is not None:
            query = query.where(column == value)
    return query


async def newest_first(
    session: AsyncSession,
    query: Select[Any],
    created: Any,
    row_id: Any,
    limit: int,
    after: tuple[datetime, str | int] | None,
) -> list[Row]:
    """A page of `query`, newest first by (created, id); `after` is the previous page's last row's."""
    return list((await session.scalars(newest_first_query(query, created, row_id, limit, after))).all())


def newest_first_query(
    query: Select[*Columns], created: Any, row_id: Any, limit: int, after: tuple[datetime, str | int] | None
) -> Select[*Columns]:
    """`newest_first`'s page as a query, for one that selects more than one entity."""
    if after is not None:
        query = query.where(tuple_(created, row_id) < tuple_(*after))
    return query.order_by(created.desc(), row_id.desc()).limit(limit)
