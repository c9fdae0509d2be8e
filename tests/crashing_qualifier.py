"""The real qualifier worker, made to SIGKILL itself at the worst moment for the fault test: right
before its N-th offset commit, when that batch's outputs are on the broker but its input offsets
are not committed. Test-only; production code has no fault hooks."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from drippulse.settings import load_settings
from drippulse.workers import build_qualifier, run_until_signalled


class CrashingConsumer:
    def __init__(self, consumer: Any, crash_on_commit: int) -> None:
        self._consumer = consumer
        self._commits = 0
        self._crash_on_commit = crash_on_commit

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        self._commits += 1
        if self._commits == self._crash_on_commit:
            os.kill(os.getpid(), signal.SIGKILL)
        return self._consumer.commit(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


if __name__ == "__main__":
    ready_file, crash_on_commit = Path(sys.argv[1]), int(sys.argv[2])
    worker = build_qualifier(load_settings(), ready_file)
    worker._consumer = CrashingConsumer(worker._consumer, crash_on_commit)  # type: ignore[assignment]
    run_until_signalled(worker)
