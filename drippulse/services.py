"""Runs the whole product on one machine: the embedded stack, the API (with the embedded ClickHouse
sinks), the qualifier, the orchestrator, the webhook worker and the model trainer, as attached child
processes that stop with their owner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from drippulse.devstack import EmbeddedStack, StackError
from drippulse.processes import spawn, terminate
from drippulse.settings import Settings


@dataclass
class LocalServices:
    settings: Settings
    qualifiers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the child processes."""
    stack: EmbeddedStack | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, timeout_s: float = 90.0) -> None:
        self.stack = EmbeddedStack(self.settings, attached=True)
        self.stack.start()
        ready_dir = self.settings.home.resolve() / "ready"
        shutil.rmtree(ready_dir, ignore_errors=True)
        self._spawn("api", ["api"])
        for n in range(self.qualifiers):
            self._spawn(f"qualifier-{n}", ["worker", "qualifier", "--ready-file", str(ready_dir / f"q{n}")])
        self._spawn("orchestrator", ["worker", "orchestrator", "--ready-file", str(ready_dir / "orchestrator")])
        self._spawn("webhooks", ["worker", "webhooks"])
        self._spawn("trainer", ["worker", "trainer", "--ready-file", str(ready_dir / "trainer")])
        self.wait_for_api(timeout_s)
        ready = [f"q{n}" for n in range(self.qualifiers)] + ["orchestrator", "trainer"]
        self._wait_for_ready(ready_dir, ready, timeout_s)

    def _spawn(self, name: str, args: list[str]) -> None:
        argv = [sys.executable, "-m", "drippulse", *args]
        log = self.settings.log_dir / f"{name}.log"
        self.children[name] = spawn(argv, log, attached=True, env={**os.environ, **self.env})

    def _wait_for_ready(self, ready_dir: Path, names: list[str], timeout_s: float) -> None:
        """Producing before the workers own partitions would count their group join as latency."""
        deadline = time.monotonic() + timeout_s
        while not all((ready_dir / name).exists() for name in names):
            self.check_alive()
            if time.monotonic() > deadline:
                waiting = [name for name in names if not (ready_dir / name).exists()]
                raise StackError(f"{', '.join(waiting)} never received partitions; see {self.settings.log_dir}")
            time.sleep(0.1)

    def wait_for_api(self, timeout_s: float) -> None:
        wait_for_api(self.settings.api_url, self.check_alive, timeout_s, self.settings.log_dir / "api.log")

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                log = self.settings.log_dir / f"{name}.log"
                raise StackError(f"{name} exited with {child.returncode}; see {log}")

    def stop(self) -> None:
        for child in self.children.values():
            terminate(child.pid)
            child.wait(timeout=15)
        self.children.clear()
        if self.stack is not None:
            self.stack.stop()


def wait_for_api(api_url: str, check_alive: Callable[[], None], timeout_s: float, log: Path) -> None:
    """Until the API at `api_url` answers /health; `check_alive` raises if its process has exited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_alive()
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise StackError(f"the API did not become healthy; see {log}")
