"""Keyset cursors for newest-first lists: an opaque token for (timestamp ms, id) of a page's last row."""

from __future__ import annotations

import base64

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
