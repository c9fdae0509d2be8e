"""Keyset cursors for newest-first lists: an opaque token for (timestamp ms, id) of a page's last row."""

from __future__ import annotations

import base64
from datetime import datetime

import orjson

from api.problems import Problem


def encode_cursor(at_ms: int, row_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([int(at_ms), row_id])).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        at_ms, row_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return int(at_ms), str(row_id)
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
