"""The one wall clock of records and schedules: epoch milliseconds, the unit of every `*_at_ms` field
and of every Redis schedule score."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
