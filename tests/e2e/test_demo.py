"""The demo as a user runs it: a separate process with its own embedded stack, exiting 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from drippulse.devstack import port_open
from tests.stack import process_env


def test_demo_runs_end_to_end_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env = process_env(tmp_path / "home")
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
    assert "waiting for approval" in flowing and "tier A leads waited for a person with the Approver role" in flowing
    assert "awaiting_approval → approved → resumed" in flowing, "one approval taken end to end"
    assert "curl -s -X POST" in flowing and "/approve" in flowing
    assert "Learned model: version" in flowing and "Weights that matter most:" in flowing
    assert "AUC learned" in flowing and "vs rules-only" in flowing and "Backtest per rules tier" in result.stdout

    assert "deployed from the built-in Lead Qualification Agent" in flowing, "the agent, not a plain workflow"
    assert "600 executions of the agent since the demo started" in flowing, "every lead went through the agent"
    assert "Agent metrics (GET /api/v1/agents/" in flowing and "Summary (builtin): " in flowing
    sample = re.search(r"score_lead \(POST /api/v1/agents/agt_\w+/score_lead\) .*?score (-?\d+), tier (\w+)", flowing)
    assert sample is not None, "one score_lead answer printed"
    assert "learned probability" in flowing and "(model v" in flowing, "score_lead with the org's learned model"
    assert "Why: each score rule" in result.stdout and "likely_to_convert" in result.stdout

    for port_var in ("KAFKA", "REDIS", "POSTGRES"):
        port = int(env[f"DRIPPULSE_EMBEDDED_{port_var}_PORT"])
        assert not port_open(port), f"the demo left {port_var.lower()} listening"
    assert not port_open(int(env["DRIPPULSE_API_PORT"])), "the demo left the API listening"
