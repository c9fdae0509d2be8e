"""Workers sharing a process stop together when one fails, and the failure is reported."""

from __future__ import annotations

import threading
from typing import Any, cast

from drippulse.workers import run_in_threads
from streams.runtime.batch_runtime import BatchWorker


class _Stub:
    def __init__(self, name: str, fail: bool) -> None:
        self.name = name
        self.fail = fail
        self.stopped = threading.Event()

    def run(self, stop: threading.Event) -> None:
        if self.fail:
            raise RuntimeError("Redis went away")
        stop.wait(10)
        self.stopped.set()


def test_a_failing_worker_stops_its_siblings_and_says_so() -> None:
    healthy, failing = _Stub("sink-executions", False), _Stub("sink-webhook-attempts", True)
    stop = threading.Event()
    running = run_in_threads(cast(list[BatchWorker], [healthy, failing]), stop)
    for handle in running:
        handle.thread.join(timeout=5)
    assert stop.is_set() and healthy.stopped.is_set()
    assert [h.failed for h in running] == [False, True]
    assert not any(h.alive for h in running)


def test_workers_run_until_stopped() -> None:
    workers: list[Any] = [_Stub("a", False), _Stub("b", False)]
    stop = threading.Event()
    running = run_in_threads(workers, stop)
    assert all(h.alive for h in running)
    stop.set()
    for handle in running:
        handle.thread.join(timeout=5)
    assert not any(h.failed for h in running)
