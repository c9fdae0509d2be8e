"""The ready file: how a worker process tells its supervisor (a container health check, a test, `make
run`) that it owns partitions, so it is part of its consumer group and doing work."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path


class ReadyFile:
    """Written once each of `workers` (their names) was assigned partitions: one for most processes,
    several for one that runs several consumer groups (the ClickHouse sinks).

    A file an earlier run left behind says nothing about this one (a restarted container keeps its
    filesystem), so it is removed when this run makes its ReadyFile, before any worker subscribes."""

    def __init__(self, path: Path, workers: Iterable[str]) -> None:
        self.path = path
        self._waiting = set(workers)
        self._lock = threading.Lock()
        path.unlink(missing_ok=True)

    def owns_partitions(self, worker: str) -> None:
        with self._lock:
            self._waiting.discard(worker)
            if self._waiting:
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
