"""Starting and stopping child processes so none outlives its owner.

Attached children get PR_SET_PDEATHSIG: if the owner dies, even by SIGKILL, the kernel sends them
SIGTERM, so `make test`, `make demo` and Ctrl-C never leave a broker or Redis behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    attached: bool,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Starts `argv` with output appended to `log_path`.

    Every child gets its own session, so a terminal's Ctrl-C reaches only the owner, which then
    stops its children in order. attached: also dies with this process (tests, demo). Detached:
    outlives the CLI (`drippulse dev up`) and is stopped by pid (`drippulse dev down`). user: run
    as that system user (PostgreSQL refuses to run as root).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        preexec: Callable[[], None] | None = _die_with_parent if attached else None
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec,
            start_new_session=True,
            env=env,
            user=user,
        )


def terminate(pid: int, timeout_s: float = 10.0, stop_signal: signal.Signals = signal.SIGTERM) -> None:
    """`stop_signal`, then SIGKILL after `timeout_s`; a pid that is already gone is fine."""
    try:
        os.kill(pid, stop_signal)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
