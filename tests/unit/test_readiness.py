"""The ready file a supervisor's health check tests (infra/docker-compose.yml, tests/stack.py)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from drippulse.cli import app
from streams.runtime.readiness import ReadyFile


def test_a_file_left_by_an_earlier_run_is_removed_before_this_run_is_ready(tmp_path: Path) -> None:
    """A restarted container keeps its filesystem: the old file must not pass the health check."""
    path = tmp_path / "ready"
    path.touch()
    ready = ReadyFile(path, ["qualifier"])
    assert not path.exists()
    ready.owns_partitions("qualifier")
    assert path.exists()


def test_shared_by_several_workers_it_is_written_once_each_owns_partitions(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "ready"
    ready = ReadyFile(path, ["sink-executions", "sink-inbound-history"])
    ready.owns_partitions("sink-executions")
    ready.owns_partitions("sink-executions")
    assert not path.exists()
    ready.owns_partitions("sink-inbound-history")
    assert path.exists()


def test_every_worker_command_takes_a_ready_file() -> None:
    for kind in ("qualifier", "webhooks", "crm", "sink"):
        result = CliRunner().invoke(app, ["worker", kind, "--help"])
        assert result.exit_code == 0 and "--ready-file" in result.output, kind
