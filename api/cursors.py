"""Keyset cursors for newest-first lists: an opaque token for (timestamp ms, id) of a page's last row."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, TypeVar

import orjson
from fastapi import Query

from api.models import Page
from api.problems import Problem

Row = TypeVar("Row")
Out = TypeVar("Out")

MAX_PAGE = 500
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Items per page, at most {MAX_PAGE}.")]
PageCursor = Annotated[str | None, Query(description="next_cursor of the previous page")]

_INT64 = range(-(2**63), 2**63)
"""A cursor's time goes to ClickHouse as an Int64, which would wrap a larger number around silently
(and a float is how JSON parsers answer an integer too large for 64 bits)."""


def _bad_cursor() -> Problem:
    return Problem(400, "bad-cursor", "Invalid cursor", "pass back the next_cursor of a previous page")


def encode_cursor(at_ms: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([int(at_ms), row_id])).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        at_ms, row_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if type(at_ms) is not int or at_ms not in _INT64:
            raise ValueError("not an Int64")
        return at_ms, str(row_id)
    except Exception:
        raise _bad_cursor() from None


def encode_row_cursor(at: datetime, row_id: str) -> str:
    """For PostgreSQL lists: the row's timestamp at full (microsecond) precision, then its id."""
    return base64.urlsafe_b64encode(orjson.dumps([at.isoformat(), row_id])).decode()


def decode_row_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, row_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment, str(row_id)
    except Exception:
        raise _bad_cursor() from None


def after_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """Where a PostgreSQL list resumes: after the row the cursor names, or at its start."""
    return decode_row_cursor(cursor) if cursor else None


def next_cursor(found: list[Row], limit: int, position: Callable[[Row], tuple[datetime, str]]) -> str | None:
    """Of `limit + 1` rows fetched, the cursor after the page's last one; None when there is no more."""
    return encode_row_cursor(*position(found[limit - 1])) if len(found) > limit else None


def numbered_after_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """`after_cursor` for a table whose ids are 64-bit integers (the audit log)."""
    after = after_cursor(cursor)
    if after is None:
        return None
    at, row_id = after
    if not (row_id.isascii() and row_id.isdigit() and len(row_id) < 19):
        raise _bad_cursor()
    return at, int(row_id)


def row_page(
    found: list[Row], limit: int, position: Callable[[Row], tuple[datetime, str]], out: Callable[[Row], Out]
) -> Page[Out]:
    """A page of the `limit + 1` rows a newest-first query read: the extra row only says that more follow."""
    return Page(items=[out(row) for row in found[:limit]], next_cursor=next_cursor(found, limit, position))
