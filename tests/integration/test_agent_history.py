"""A deployed agent's executions, logs and metrics, against the real stack: its backing workflow's,
answered exactly as the workflow's own routes answer them, to everyone who reads the agent and to
nobody outside its org or project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import lead_qualification_agent
from tests.integration.helpers import admin_session, deploy_agent
from tests.stack import WorkerProcess

pytestmark = pytest.mark.stack
LEAD = {"lead_id": "lead-history", "email": "bea@initech.net", "title": "VP Sales", "country": "US"}
HISTORY = ("executions", "logs", "metrics")


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.request.url, response.text)
    return response.json()


def ok_created(response: httpx.Response) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


def key(settings: Settings, org: dict[str, Any], **body: Any) -> httpx.Client:
    issued = ok_created(admin_session(settings, org).post("/api/v1/api_keys", json={"name": "k", **body}))
    return httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {issued['key']}"}, timeout=30)


def test_an_agents_executions_logs_and_metrics_are_its_backing_workflows(
    settings: Settings, qualifier: WorkerProcess, org_factory: Any
) -> None:
    org = org_factory("Agent History Co")
    client = org["client"]
    agent = deploy_agent(client, lead_qualification_agent())
    path, workflow = f"/api/v1/agents/{agent['id']}", f"/api/v1/workflows/{agent['workflow_id']}"
    executed = client.post(f"{path}/execute", params={"wait": 30}, json={"lead": LEAD})
    assert executed.status_code == 200, executed.text
    execution_id = executed.json()["execution_id"]

    listed = ok(client.get(f"{path}/executions"))["items"]
    assert [e["execution_id"] for e in listed] == [execution_id]
    assert listed[0]["workflow_id"] == agent["workflow_id"] and listed[0]["trigger"] == "manual"
    assert ok(client.get(f"{path}/executions", params={"lead_id": "someone-else"}))["items"] == []
    logs = ok(client.get(f"{path}/logs"))
    assert [log["execution_id"] for log in logs["items"]] == [execution_id]
    assert logs["items"][0]["entries"][0]["kind"] == "evaluated"
    assert logs == ok(client.get(f"{workflow}/logs"))

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    period = {"bucket": "day", "since": today.isoformat(), "until": (today + timedelta(days=1)).isoformat()}
    metrics = ok(client.get(f"{path}/metrics", params=period))
    [day] = metrics["periods"]
    assert (day["executions"], day["units"]["executions"]) == (1, 1) and day["cost"] > 0
    assert metrics == ok(client.get(f"{workflow}/metrics", params=period))


def test_every_role_reads_an_agents_history_and_nobody_outside_its_org_or_project_does(
    settings: Settings, org_factory: Any
) -> None:
    org, other = org_factory("History Readers Co"), org_factory("History Outsiders Co")
    agent = deploy_agent(org["client"], lead_qualification_agent())
    project = ok_created(org["client"].post("/api/v1/projects", json={"name": "elsewhere"}))["id"]
    viewer = key(settings, org, role="viewer")
    elsewhere = key(settings, org, role="admin", project_id=project)
    for part in HISTORY:
        url = f"/api/v1/agents/{agent['id']}/{part}"
        assert viewer.get(url).status_code == 200, part
        for outsider in (other["client"], elsewhere):
            refused = outsider.get(url)
            assert refused.status_code == 404 and refused.json()["type"].endswith("not-found"), (part, refused.text)
