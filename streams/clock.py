"""The one wall clock of records and schedules: epoch milliseconds, the unit of every `*_at_ms` field
and of every Redis schedule score."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return int(time.time() * 1000)


def moment(epoch_ms: int) -> datetime:
    """An epoch-milliseconds time as an aware UTC datetime, as PostgreSQL takes it."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)
