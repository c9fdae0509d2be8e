"""An agent called the two other ways, against the real stack: from a signed inbound webhook (a
source that names the agent) and from a workflow's `agent` step. Each call is checked as
`POST /agents/{id}/execute` checks one: another org's agent is unreachable, a paused agent refuses,
a lead the input schema refuses is kept (never lost), and one delivery is one execution.

Every test makes its own organization: an org's first event makes the qualifier read its
configuration, so what a test just deployed, paused or activated is what the call meets."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from drippulse.dead_letter_replay import LetterFilter, replay
from drippulse.settings import Settings
from streams import topics
from tests.integration.helpers import activate_workflow
from tests.integration.test_inbound_hooks import _signed
from tests.stack import ApiServer, WorkerProcess, read_topic, serde_for, wait_until

pytestmark = pytest.mark.stack
LEAD = {"lead_id": "lead-1", "email": "bea@initech.net", "title": "VP Sales", "country": "US"}
"""A lead the Lead Qualification Agent takes and decides without a person (not tier A)."""
OBSERVER = {
    "trigger": {"event_types": ["lead.created", "lead.updated"]},
    "steps": [{"type": "action", "action": "log", "message": "saw it"}],
}
"""A workflow of the org that sees every lead event, and must never see a call of an agent."""


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, (response.request.method, response.request.url, response.text)
    return response.json()


@dataclass
class Tenant:
    org_id: str
    key: httpx.Client
    agent: dict[str, Any]
    template_id: str

    def deploy(self, template_id: str | None = None) -> dict[str, Any]:
        body = {"name": uuid.uuid4().hex[:8], "template_id": template_id or self.template_id}
        deployed: dict[str, Any] = ok(self.key.post("/api/v1/agents", json=body))
        return deployed

    def executions(self, workflow_id: str, lead_id: str | None = None) -> list[dict[str, Any]]:
        params = {"workflow_id": workflow_id, "limit": 1000, **({"lead_id": lead_id} if lead_id else {})}
        items: list[dict[str, Any]] = ok(self.key.get("/api/v1/executions", params=params))["items"]
        return items

    def recorded(self, workflow_id: str, lead_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = wait_until(
            lambda: self.executions(workflow_id, lead_id), 60, f"an execution of {lead_id} by {workflow_id}"
        )
        return found


def _tenant(org_factory: Any) -> Tenant:
    """A new organization with the Lead Qualification Agent copied, made invoked-only (no trigger: no
    event of the org starts it, only calls), activated and deployed."""
    org = org_factory(f"agent-calls-{uuid.uuid4().hex[:6]}")
    key: httpx.Client = org["client"]
    template = ok(key.post("/api/v1/agent_templates", json={"copy_of": "builtin:lead-qualification"}))["id"]
    definition = ok(key.get(f"/api/v1/agent_templates/{template}"))["definition"]
    definition["policy"].pop("trigger")
    ok(key.patch(f"/api/v1/agent_templates/{template}/versions/1", json={"definition": definition}))
    ok(key.post(f"/api/v1/agent_templates/{template}/versions/1/activate"))
    tenant = Tenant(org["org_id"], key, {}, template)
    tenant.agent = tenant.deploy()
    return tenant


def _source(tenant: Tenant, agent_id: str) -> dict[str, Any]:
    created: dict[str, Any] = ok(
        tenant.key.post("/api/v1/inbound_sources", json={"name": "Forms", "agent_id": agent_id})
    )
    return created


def _deliver(settings: Settings, source: dict[str, Any], message_id: str, lead: dict[str, Any]) -> httpx.Response:
    body = json.dumps({"event_type": "lead.created", "lead": lead})
    headers = _signed(source["secret"], message_id, body)
    return httpx.post(settings.api_url + source["hook_path"], content=body, headers=headers, timeout=30)


def test_a_delivery_to_an_agents_source_runs_the_agent_once_and_no_workflow_of_the_org(
    org_factory: Any, settings: Settings, qualifier: WorkerProcess
) -> None:
    tenant = _tenant(org_factory)
    observer = activate_workflow(tenant.key, "observer", OBSERVER)
    source = _source(tenant, tenant.agent["id"])
    assert source["agent_id"] == tenant.agent["id"]
    assert ok(tenant.key.get(f"/api/v1/inbound_sources/{source['id']}"))["agent_id"] == tenant.agent["id"]

    first = _deliver(settings, source, "d-1", LEAD)
    assert first.status_code == 202 and first.json()["accepted"] == 1, first.text
    again = _deliver(settings, source, "d-1", LEAD)
    assert again.status_code == 202, again.text
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, [f"{source['id']}:d-1"])
    later = _deliver(settings, source, "d-2", {**LEAD, "lead_id": "lead-2"})
    assert later.status_code == 202 and later.json()["accepted"] == 1, later.text

    workflow = tenant.agent["workflow_id"]
    tenant.recorded(workflow, "lead-2")  # one partition per org: every earlier delivery is evaluated too
    (execution,) = tenant.executions(workflow, "lead-1")
    assert (execution["event_id"], execution["trigger"]) == (f"{source['id']}:d-1", "manual")
    assert tenant.executions(observer["id"]) == [], "a call of an agent is the agent's alone"
    calls = [
        e for e in read_topic(settings, topics.INBOUND_EVENTS, key=tenant.org_id) if e["lead"]["lead_id"] == "lead-1"
    ]
    assert [(e["trigger"], e["workflow_id"]) for e in calls] == [("MANUAL", workflow)], "published once"


def test_a_source_names_only_an_agent_of_its_own_organization(org_factory: Any, settings: Settings) -> None:
    home, other = _tenant(org_factory), org_factory("Other Co")
    for agent_id in (home.agent["id"], "agt_0123456789abcdef0123"):
        refused = other["client"].post("/api/v1/inbound_sources", json={"name": "Forms", "agent_id": agent_id})
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["errors"]
        assert error == {"field": "$.agent_id", "message": f"no agent {agent_id!r} in this organization"}
    assert ok(other["client"].get("/api/v1/inbound_sources"))["items"] == [], "nothing was created"
    wrong_type = home.key.post(
        "/api/v1/inbound_sources",
        json={"name": "Deals", "agent_id": home.agent["id"], "event_type": "crm.deal.updated"},
    )
    assert wrong_type.status_code == 422 and wrong_type.json()["errors"][0]["field"] == "event_type", wrong_type.text


def test_a_paused_agent_refuses_a_delivery_with_why_and_takes_the_senders_retry_once_resumed(
    org_factory: Any, settings: Settings, qualifier: WorkerProcess
) -> None:
    tenant = _tenant(org_factory)
    source = _source(tenant, tenant.agent["id"])
    ok(tenant.key.post(f"/api/v1/agents/{tenant.agent['id']}/pause", json={"detail": "quarter close"}))
    refused = _deliver(settings, source, "d-1", LEAD)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/agent-paused") and problem["detail"] == "quarter close"
    assert problem["paused_reason"] == "paused_by_person"
    assert read_topic(settings, topics.INBOUND_EVENTS, key=tenant.org_id) == [], "nothing published"

    ok(tenant.key.post(f"/api/v1/agents/{tenant.agent['id']}/resume"))
    retried = _deliver(settings, source, "d-1", LEAD)
    assert retried.status_code == 202 and retried.json()["accepted"] == 1, "the refusal claimed nothing"
    (execution,) = tenant.recorded(tenant.agent["workflow_id"], LEAD["lead_id"])
    assert execution["event_id"] == f"{source['id']}:d-1"


def test_a_lead_the_input_schema_refuses_is_named_to_the_sender_and_kept_as_one_dead_letter(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    tenant = _tenant(org_factory)
    source = _source(tenant, tenant.agent["id"])
    no_email = {"lead_id": "lead-1", "title": "VP Sales", "country": "US"}
    answers = [_deliver(settings, source, "d-1", no_email) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["accepted"] == 0 and body["event_ids"] == []
        (rejected,) = body["rejected"]
        assert rejected["event_id"] == f"{source['id']}:d-1"
        assert rejected["errors"] == [{"field": "$.lead.email", "message": "'email' is a required property"}]
    assert read_topic(settings, topics.INBOUND_EVENTS, key=tenant.org_id) == [], "the agent is not called"

    (letter,) = read_topic(settings, topics.EVENTS_DLQ, key=tenant.org_id)
    assert (letter["error_kind"], letter["consumer_group"]) == ("validation", "drippulse-api")
    assert letter["error"].endswith("the lead does not meet the agent's input schema at $.lead.email")
    kept = serde_for(topics.INBOUND_EVENTS, settings).decode(letter["original_value"])
    assert (kept["event_id"], kept["trigger"], kept["workflow_id"]) == (
        f"{source['id']}:d-1",
        "MANUAL",
        tenant.agent["workflow_id"],
    ), "the letter is the call itself: replayed, it calls the agent"


def test_a_source_whose_agent_is_archived_is_gone_for_good(org_factory: Any, settings: Settings) -> None:
    tenant = _tenant(org_factory)
    source = _source(tenant, tenant.agent["id"])
    assert tenant.key.delete(f"/api/v1/agents/{tenant.agent['id']}").status_code < 300
    gone = _deliver(settings, source, "d-1", LEAD)
    assert gone.status_code == 410 and gone.json()["type"].endswith("/agent-archived"), gone.text
    refused = tenant.key.post("/api/v1/inbound_sources", json={"name": "New", "agent_id": tenant.agent["id"]})
    assert refused.status_code == 422 and "is archived" in refused.json()["errors"][0]["message"]


def _caller(agent_id: str) -> dict[str, Any]:
    return {
        "trigger": {"event_types": ["lead.created"]},
        "steps": [
            {"type": "agent", "agent_id": agent_id, "event_type": "lead.created"},
            {"type": "action", "action": "add_tag", "tag": "qualified-by-agent"},
        ],
    }


def test_a_workflows_agent_step_calls_the_agent_and_goes_on(
    org_factory: Any, settings: Settings, qualifier: WorkerProcess
) -> None:
    tenant = _tenant(org_factory)
    caller = activate_workflow(tenant.key, "caller", _caller(tenant.agent["id"]))
    ok(tenant.key.post("/api/v1/events", json={"event_type": "lead.created", "lead": LEAD}))

    (called,) = tenant.recorded(tenant.agent["workflow_id"], LEAD["lead_id"])
    (calling,) = tenant.executions(caller["id"], LEAD["lead_id"])
    assert calling["actions"] == ["agent_call", "add_tag"] and calling["status"] == "completed"
    assert called["event_id"] == f"call_{calling['execution_id']}_0"
    assert (called["trigger"], called["event_type"]) == ("manual", "lead.created")
    assert called["status"] in ("completed", "filtered_out") and called["tier"], "the agent's policy decided"


def test_activating_a_workflow_that_calls_another_orgs_or_another_projects_agent_is_refused(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    home, other = _tenant(org_factory), _tenant(org_factory)
    project = ok(home.key.post("/api/v1/projects", json={"name": uuid.uuid4().hex[:8]}))["id"]
    copied = ok(home.key.post("/api/v1/agent_templates", json={"copy_of": home.template_id, "project_id": project}))
    ok(home.key.post(f"/api/v1/agent_templates/{copied['id']}/versions/1/activate"))
    elsewhere = home.deploy(copied["id"])
    for agent_id in (other.agent["id"], elsewhere["id"]):
        created = ok(home.key.post("/api/v1/workflows", json={"name": "caller", "definition": _caller(agent_id)}))
        refused = home.key.post(f"/api/v1/workflows/{created['id']}/activate")
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"] == [
            {"field": "$.definition.steps[0].agent_id", "message": f"no agent {agent_id!r} in this project"}
        ]
        assert ok(home.key.get(f"/api/v1/workflows/{created['id']}"))["status"] == "draft"

    active = activate_workflow(home.key, "caller", _caller(home.agent["id"]))
    moved = home.key.patch(f"/api/v1/workflows/{active['id']}", json={"project_id": project})
    assert moved.status_code == 422 and moved.json()["errors"][0]["field"] == "$.definition.steps[0].agent_id"


def test_a_workflows_call_of_a_paused_agent_is_kept_and_replayed_once_the_agent_is_resumed(
    org_factory: Any, settings: Settings, qualifier: WorkerProcess
) -> None:
    tenant = _tenant(org_factory)
    agent = tenant.agent
    caller = activate_workflow(tenant.key, "caller", _caller(agent["id"]))
    ok(tenant.key.post(f"/api/v1/agents/{agent['id']}/pause", json={"detail": "budget review"}))
    ok(tenant.key.post("/api/v1/events", json={"event_type": "lead.created", "lead": LEAD}))

    (calling,) = tenant.recorded(caller["id"], LEAD["lead_id"])
    assert calling["actions"] == ["agent_call", "add_tag"], "the workflow goes on"
    letters = wait_until(lambda: read_topic(settings, topics.EVENTS_DLQ, key=tenant.org_id), 30, "the letter")
    (letter,) = letters
    assert (letter["error_kind"], letter["consumer_group"]) == ("agent_paused", "drippulse-qualifier")
    assert f"(agent {agent['id']}): the agent is paused (paused_by_person)" in letter["error"]
    assert tenant.executions(agent["workflow_id"]) == [], "a paused agent runs nothing"

    ok(tenant.key.post(f"/api/v1/agents/{agent['id']}/resume"))
    assert replay(settings, LetterFilter(error_kind="agent_paused", org_id=tenant.org_id), dry_run=False) == 1
    (called,) = tenant.recorded(agent["workflow_id"], LEAD["lead_id"])
    assert called["event_id"] == f"call_{calling['execution_id']}_0"
