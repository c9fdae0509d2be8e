"""The demo as a user runs it: a separate process with its own embedded stack, exiting 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from drippulse.devstack import port_open
from tests.stack import stack_env


def test_demo_runs_end_to_end_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "CLICKHOUSE_URL", "SCHEMA_REGISTRY_URL")
    }
    stack = stack_env(tmp_path / "home")
    env.update(stack)
    result = subprocess.run(
        [sys.executable, "-m", "drippulse", "demo", "--leads", "600"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All 600 leads accounted for in ClickHouse" in result.stdout
    flowing = " ".join(result.stdout.split())
    assert "notifications delivered to the demo endpoint, each verified with the standardwebhooks library" in flowing
    assert "(0 rejected)" in flowing
    for heading in ("Leads per tier", "Leads per owner", "p50", "p99", "/docs"):
        assert heading in result.stdout

    for port_var in ("DRIPPULSE_EMBEDDED_KAFKA_PORT", "DRIPPULSE_EMBEDDED_REDIS_PORT", "DRIPPULSE_API_PORT"):
        assert not port_open(int(stack[port_var])), f"the demo left {port_var} listening"
