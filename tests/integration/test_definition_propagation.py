"""A definition change reaches the workers with no dual-write window: the API killed right after the
activation commits leaves workers that converge on the committed version (no relay has to run), and
killed right before, workers that stay on the previous one."""

from __future__ import annotations

import copy
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from drippulse.devstack import free_port
from drippulse.processes import spawn
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import activate_workflow
from tests.stack import ApiServer, WorkerProcess, wait_until

pytestmark = pytest.mark.stack


def _version_of(api: ApiServer, org_id: str, lead_id: str) -> int | None:
    """The workflow version the qualifier evaluated this lead's event with, once it did."""
    rows = api.clickhouse.query(
        "SELECT workflow_version FROM drippulse.executions FINAL "
        "WHERE org_id = {org:String} AND lead_id = {lead:String}",
        {"org": org_id, "lead": lead_id},
    )
    return int(rows[0]["workflow_version"]) if rows else None


def _activate_on_a_crashing_api(tmp_path: Path, moment: str, workflow_id: str, key: str, version: int) -> None:
    """Another API process on the same control plane, with its own home and topics (so its embedded
    sinks stay out of the session's), killed by itself around the activation's commit."""
    port = free_port()
    env = {
        **os.environ,
        "DRIPPULSE_HOME": str(tmp_path / f"crashing-{moment}"),
        "DRIPPULSE_API_PORT": str(port),
        "DRIPPULSE_TOPIC_PREFIX": f"crash-{uuid.uuid4().hex[:6]}.",
    }
    process = spawn(
        [sys.executable, "-m", "tests.crashing_api", moment, "workflow.activate"],
        tmp_path / f"crashing-{moment}.log",
        attached=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    wait_until(healthy, 120, "the crashing API to start")
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{url}/api/v1/workflows/{workflow_id}/activate",
            json={"version": version},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_workers_converge_on_what_committed_whatever_the_api_did_after(
    org_factory: Any, qualifier: WorkerProcess, api_server: ApiServer, tmp_path: Path
) -> None:
    org = org_factory()
    client = org["client"]
    workflow = activate_workflow(client, "LQ", LEAD_QUALIFICATION)
    event = {"event_type": "lead.created", "lead": {"lead_id": "before", "email": "a@acme.io", "title": "VP"}}
    assert client.post("/api/v1/events", json=event).status_code == 202
    wait_until(lambda: _version_of(api_server, org["org_id"], "before") == 1, 60, "version 1 to run")

    changed = copy.deepcopy(LEAD_QUALIFICATION)
    changed["steps"][1]["rules"][0]["points"] += 1
    client.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": changed})
    _activate_on_a_crashing_api(tmp_path, "after-commit", workflow["id"], org["key"], 2)
    assert client.get(f"/api/v1/workflows/{workflow['id']}").json()["active_version"] == 2, "it committed"
    event["lead"] = {**event["lead"], "lead_id": "after-commit"}
    assert client.post("/api/v1/events", json=event).status_code == 202
    wait_until(lambda: _version_of(api_server, org["org_id"], "after-commit") == 2, 60, "the workers to converge")

    changed["steps"][1]["rules"][0]["points"] += 1
    client.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": changed})
    _activate_on_a_crashing_api(tmp_path, "before-commit", workflow["id"], org["key"], 3)
    assert client.get(f"/api/v1/workflows/{workflow['id']}").json()["active_version"] == 2, "nothing committed"
    event["lead"] = {**event["lead"], "lead_id": "before-commit"}
    assert client.post("/api/v1/events", json=event).status_code == 202
    wait_until(lambda: _version_of(api_server, org["org_id"], "before-commit") is not None, 60, "an execution")
    assert _version_of(api_server, org["org_id"], "before-commit") == 2
