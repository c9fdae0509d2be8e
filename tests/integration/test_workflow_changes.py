"""A new active version reaches a running worker without a restart, and executions name their version."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import activate_workflow, post_events, wait_for_executions
from tests.stack import wait_until

pytestmark = pytest.mark.stack


def test_activating_a_new_version_reaches_the_running_worker(
    qualifier: Any, api_server: Any, settings: Settings, org_factory: Any
) -> None:
    org = org_factory("Versions Co")
    client, org_id = org["client"], org["org_id"]
    workflow = activate_workflow(client, "LQ", LEAD_QUALIFICATION)
    rng = random.Random(21)
    post_events(client, [lead_event(rng, org_id, n) for n in range(50)])
    wait_for_executions(api_server, org_id, 50)

    everyone_is_a = copy.deepcopy(LEAD_QUALIFICATION)
    everyone_is_a["steps"][2] = {"type": "tier", "thresholds": [{"tier": "A", "min_score": -1000}], "default_tier": "A"}
    assert client.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": everyone_is_a}).status_code == 200
    assert client.post(f"/api/v1/workflows/{workflow['id']}/activate").json()["active_version"] == 2

    def version_2_seen() -> bool:
        post_events(client, [lead_event(rng, org_id, 1000 + rng.randrange(10**6))])
        return any(
            row["tier"] == "A" and row["status"] == "completed" and row.get("workflow_version") == 2
            for row in _with_versions(api_server, org_id)
        )

    wait_until(version_2_seen, 30, "executions of version 2", interval_s=0.5)
    rows = _with_versions(api_server, org_id)
    assert {row["workflow_version"] for row in rows} == {1, 2}
    assert all(row["tier"] == "A" for row in rows if row["workflow_version"] == 2 and row["status"] == "completed")


def _with_versions(api_server: Any, org_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api_server.clickhouse.query(
        "SELECT workflow_version, tier, status FROM drippulse.executions FINAL WHERE org_id = {o:String}", {"o": org_id}
    )
    return [{**row, "workflow_version": int(row["workflow_version"])} for row in rows]
