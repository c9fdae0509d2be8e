"""The real API for the fault suite, with one test-only switch: while the file named on the command
line exists, every insert of the embedded ClickHouse sinks fails, as a ClickHouse refusing writes
would (full disk, too many parts). Reads go on working, so a test can see what was written meanwhile.
The API runs as its own process because chdb allows one session per process and the test process's
own API (tests/conftest.py) may hold it. Production code has no fault hooks."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from api.app import create_app
from drippulse.settings import load_settings
from drippulse.workers import BackgroundTask, embedded_background
from streams.sinks.clickhouse import ClickHouse


class InsertRefused(RuntimeError):
    """What a sink's insert raises while the switch file exists."""


class SwitchableInserts:
    """A ClickHouse handle whose inserts fail while `switch` exists; everything else is the real one."""

    def __init__(self, clickhouse: ClickHouse, switch: Path) -> None:
        self._clickhouse = clickhouse
        self._switch = switch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clickhouse, name)

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._switch.exists():
            raise InsertRefused(f"ClickHouse refuses writes to {table} (fault injected by {self._switch})")
        self._clickhouse.insert_rows(table, rows)


def main(switch: Path) -> None:
    settings = load_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    background_tasks = embedded_background(settings)

    def background(clickhouse: ClickHouse, stop: threading.Event) -> Sequence[BackgroundTask]:
        return background_tasks(SwitchableInserts(clickhouse, switch), stop)

    uvicorn.run(create_app(settings, background), host=settings.api_host, port=settings.api_port, log_level="warning")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
