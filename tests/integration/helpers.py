"""Shared steps of the integration tests: workflows through the API, events in, executions out."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from drippulse.settings import Settings
from processors.compiler import compile_workflow
from processors.events import EVENT_TYPE_BY_SYMBOL
from processors.execution import Execution
from processors.model import WorkflowDefinition
from processors.routing import RoutingState
from tests import control_plane
from tests.stack import ApiServer, wait_until

ADMIN_PASSWORD = "correct horse battery staple"


def activate_workflow(client: httpx.Client, name: str, definition: dict[str, Any]) -> dict[str, Any]:
    created = client.post("/api/v1/workflows", json={"name": name, "definition": definition})
    assert created.status_code == 201, created.text
    activated = client.post(f"/api/v1/workflows/{created.json()['id']}/activate")
    assert activated.status_code == 200, activated.text
    workflow: dict[str, Any] = activated.json()
    return workflow


def deploy_agent(client: httpx.Client, definition: dict[str, Any], **template: Any) -> dict[str, Any]:
    """An agent deployed from version 1, activated, of a new template of `definition`; `template`:
    more of the template's body (a `summary_credential`)."""
    body = {"name": uuid.uuid4().hex[:8], "definition": definition, **template}
    created = client.post("/api/v1/agent_templates", json=body)
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    activated = client.post(f"/api/v1/agent_templates/{template_id}/versions/1/activate")
    assert activated.status_code == 200, activated.text
    deployed = client.post("/api/v1/agents", json={"name": uuid.uuid4().hex[:8], "template_id": template_id})
    assert deployed.status_code == 201, deployed.text
    agent: dict[str, Any] = deployed.json()
    return agent


def api_event(record: dict[str, Any]) -> dict[str, Any]:
    """The JSON an API client sends for an inbound Avro record."""
    lead = {k: v for k, v in record["lead"].items() if v is not None}
    return {
        "event_id": record["event_id"],
        "event_type": EVENT_TYPE_BY_SYMBOL[record["event_type"]].value,
        "occurred_at": datetime.fromtimestamp(record["occurred_at_ms"] / 1000, UTC).isoformat(),
        "source": record["source"],
        "lead": lead,
    }


def post_events(client: httpx.Client, records: list[dict[str, Any]], batch: int = 250) -> None:
    for start in range(0, len(records), batch):
        response = client.post("/api/v1/events", json=[api_event(r) for r in records[start : start + batch]])
        assert response.status_code == 202, response.text


def expected_executions(workflows: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Execution]:
    """The pure engine's answer for the same input, in partition order, as the worker sees it."""
    compiled = sorted(
        (
            compile_workflow(w["id"], w["active_version"], WorkflowDefinition.model_validate(w["definition"]))
            for w in workflows
        ),
        key=lambda c: c.workflow_id,
    )
    state = RoutingState()
    result = {}
    for record in records:
        event = {**copy.deepcopy(record), "event_type": EVENT_TYPE_BY_SYMBOL[record["event_type"]]}
        for workflow in compiled:
            if workflow.triggers(event):
                execution = workflow.evaluate(event, state)
                result[execution.execution_id] = execution
    return result


def stored_executions(api: ApiServer, org_id: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.clickhouse.query(
        "SELECT execution_id, workflow_id, lead_id, status, tier, owner, score, routing_reason, decisions "
        "FROM drippulse.executions FINAL WHERE org_id = {org:String}",
        {"org": org_id},
    )
    return rows


def count_rows(api: ApiServer, org_id: str) -> tuple[int, int]:
    """(rows after dedup, distinct execution ids) for one org."""
    row = api.clickhouse.query(
        "SELECT count() AS n, uniqExact(execution_id) AS d FROM drippulse.executions FINAL WHERE org_id = {org:String}",
        {"org": org_id},
    )[0]
    return int(row["n"]), int(row["d"])


def wait_for_executions(api: ApiServer, org_id: str, expected: int, timeout_s: float = 120) -> None:
    wait_until(lambda: count_rows(api, org_id)[0] >= expected, timeout_s, f"{expected} executions of {org_id}")


def login(settings: Settings, email: str, password: str, **extra: str) -> httpx.Response:
    """POST /auth/login as a person would (no credentials of their own yet)."""
    return httpx.post(
        f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": password, **extra}, timeout=60
    )


def accept_invitation(settings: Settings, token: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{settings.api_url}/api/v1/auth/invitations/accept", json={"token": token, "password": password}, timeout=60
    )


def admin_session(settings: Settings, org: dict[str, Any]) -> httpx.Client:
    """A session of an Admin of the org (made on first use, kept in `org`): issuing keys and
    changing members are people's acts, which no API key may do (not even the bootstrap key)."""
    if "admin" not in org:
        email = f"admin-{uuid.uuid4().hex[:10]}@example.com"
        control_plane.add_member(settings, org["org_id"], email, ["admin"], ADMIN_PASSWORD)
        answer = login(settings, email, ADMIN_PASSWORD)
        assert answer.status_code == 200, answer.text
        headers = {"Authorization": f"Bearer {answer.json()['token']}"}
        org["admin"] = httpx.Client(base_url=settings.api_url, headers=headers, timeout=30)
    session: httpx.Client = org["admin"]
    return session
