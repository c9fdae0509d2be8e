"""Ids of control-plane records: a prefix that tells the kind in logs and URLs, then 80 random bits."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"
