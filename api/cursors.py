"""Keyset cursors for newest-first lists: an opaque token for (timestamp ms, id) of a page's last row."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import orjson

from api.problems import Problem

Row = TypeVar("Row")
_INT64 = range(-(2**63), 2**63)
"""A cursor's time goes to ClickHouse as an Int64, which would wrap a larger number around silently
(and a float is how JSON parsers answer an integer too large for 64 bits)."""


def encode_cursor(at_ms: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([int(at_ms), row_id])).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        at_ms, row_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if type(at_ms) is not int or at_ms not in _INT64:
            raise ValueError("not an Int64")
        return at_ms, str(row_id)
    except Exception:
        raise Problem(400, "bad-cursor", "Invalid cursor", "pass back the next_cursor of a previous page") from None


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
        raise Problem(400, "bad-cursor", "Invalid cursor", "pass back the next_cursor of a previous page") from None


def after_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    """Where a PostgreSQL list resumes: after the row the cursor names, or at its start."""
    return decode_row_cursor(cursor) if cursor else None


def next_cursor(found: list[Row], limit: int, position: Callable[[Row], tuple[datetime, str]]) -> str | None:
    """Of `limit + 1` rows fetched, the cursor after the page's last one; None when there is no more."""
    return encode_row_cursor(*position(found[limit - 1])) if len(found) > limit else None
