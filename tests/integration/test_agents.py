"""Agents against the real stack: a template copied from the built-in Lead Qualification Agent,
activated, deployed and invoked (execute through Kafka, inference and score_lead synchronously),
paused and resumed, upgraded and archived, with template changes held for an Approver; and the
attacks on it: another org, another project's key, a repeated Idempotency-Key, a paused agent, a
lead that fails the template's input schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from drippulse.operators import create_org
from drippulse.settings import Settings
from tests import control_plane
from tests.integration.test_role_matrix import PASSWORD, trained_model
from tests.stack import ApiServer, WorkerProcess, wait_until

pytestmark = pytest.mark.stack
TIER_B = {"lead_id": "lead-b", "email": "bea@initech.net", "title": "VP Sales", "country": "US"}
"""30 + 20 (likely to convert, by the trained model) points: tier B, no approval, Alice's."""
TIER_A = {
    "lead_id": "lead-a",
    "email": "ann@initech.net",
    "title": "VP Sales",
    "employees": 500,
    "industry": "software",
    "lead_source": "demo_request",
}


@dataclass
class Org:
    settings: Settings
    org_id: str
    key: httpx.Client
    admin: httpx.Client
    approver: httpx.Client
    other_org: httpx.Client
    template: str
    agent: dict[str, Any]

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def person(self, roles: list[str]) -> httpx.Client:
        email = f"{'-'.join(roles)}-{uuid.uuid4().hex[:8]}@example.com"
        control_plane.add_member(self.settings, self.org_id, email, roles, PASSWORD)
        login = httpx.post(f"{self.settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        return self.client(login.json()["token"])

    def issue_key(self, **body: Any) -> httpx.Client:
        created = ok(self.admin.post("/api/v1/api_keys", json={"name": uuid.uuid4().hex[:8], **body}))
        return self.client(created["key"])

    def deploy(self, template: str | None = None) -> dict[str, Any]:
        body = {"name": uuid.uuid4().hex[:8], "template_id": template or self.template}
        deployed: dict[str, Any] = ok(self.key.post("/api/v1/agents", json=body))
        return deployed


def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, (response.request.method, response.request.url, response.text)
    return response.json()


@pytest.fixture(scope="module")
def org(
    api_server: ApiServer, settings: Settings, qualifier: WorkerProcess, orchestrator: WorkerProcess
) -> Iterator[Org]:
    admin_email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    home = create_org(settings, f"agents-{uuid.uuid4().hex[:6]}", admin_email=admin_email, admin_password=PASSWORD)
    control_plane.checkpoint_model(settings, home.org_id, trained_model())
    key = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {home.api_key}"}, timeout=60)
    other = create_org(settings, f"other-{uuid.uuid4().hex[:6]}")
    partial = Org(settings, home.org_id, key, key, key, key, "", {})
    partial.admin = partial.client(
        httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": admin_email, "password": PASSWORD}).json()[
            "token"
        ]
    )
    partial.approver = partial.person(["approver"])
    partial.other_org = partial.client(other.api_key)
    copied = ok(key.post("/api/v1/agent_templates", json={"copy_of": "builtin:lead-qualification"}))
    partial.template = copied["id"]
    ok(key.post(f"/api/v1/agent_templates/{copied['id']}/versions/1/activate"))
    partial.agent = partial.deploy()
    yield partial


def test_the_built_in_templates_are_listed_with_their_input_schemas(org: Org) -> None:
    page = ok(org.key.get("/api/v1/agent_templates"))
    builtin = {t["id"]: t for t in page["builtin"]}
    assert builtin["builtin:lead-qualification"]["input_schema"]["required"] == ["lead_id", "email"]
    assert [t["id"] for t in page["items"]] == [org.template]
    assert page["items"][0]["copied_from"] == "builtin:lead-qualification"


def test_inference_and_execute_decide_the_same_for_the_same_lead(org: Org) -> None:
    agent = org.agent["id"]
    inferred = ok(org.key.post(f"/api/v1/agents/{agent}/inference", json={"lead": TIER_B}))
    executed = org.key.post(f"/api/v1/agents/{agent}/execute", params={"wait": 30}, json={"lead": TIER_B})
    assert executed.status_code == 200, executed.text
    recorded = executed.json()["execution"]
    fields = ("status", "score", "score_breakdown", "tier", "owner", "actions")
    assert {f: recorded[f] for f in fields} == {f: inferred["execution"][f] for f in fields}
    assert inferred["execution"]["tier"] == "B" and inferred["execution"]["status"] == "completed"
    assert [c["operation"] for c in inferred["planned"]["crm_commands"]], "it says what it would send"
    assert recorded["workflow_id"] == org.agent["workflow_id"] and recorded["trigger"] == "manual"


def test_score_lead_explains_each_rule_and_gives_the_learned_probability(org: Org) -> None:
    scored = ok(org.key.post(f"/api/v1/agents/{org.agent['id']}/score_lead", json={"lead": TIER_B}))
    rules = {rule["id"]: rule for rule in scored["rules"]}
    assert rules["senior_title"]["matched"] and not rules["mid_market"]["matched"]
    assert rules["senior_title"]["condition"]["result"] is True
    assert scored["probability"] is not None and scored["model_version"] == 1
    assert (scored["tier"], scored["owner"]) == ("B", "alice@acme.test")


def test_the_same_idempotency_key_twice_is_one_execution(org: Org) -> None:
    agent = org.agent["id"]
    lead = {**TIER_B, "lead_id": f"lead-{uuid.uuid4().hex[:8]}"}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    first = org.key.post(f"/api/v1/agents/{agent}/execute", json={"lead": lead}, headers=headers)
    again = org.key.post(f"/api/v1/agents/{agent}/execute", params={"wait": 30}, json={"lead": lead}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200, (first.text, again.text)
    assert again.json()["execution_id"] == first.json()["execution_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    params = {"workflow_id": org.agent["workflow_id"], "lead_id": lead["lead_id"]}
    assert len(ok(org.key.get("/api/v1/executions", params=params))["items"]) == 1
    reused = org.key.post(f"/api/v1/agents/{agent}/execute", json={"lead": TIER_A}, headers=headers)
    assert reused.status_code == 422 and reused.json()["type"].endswith("idempotency-key-reused")


def test_a_lead_failing_the_input_schema_is_refused_naming_each_field(org: Org) -> None:
    bad = {"lead_id": "x", "country": "germany", "employees": -3}
    for call in ("execute", "inference", "score_lead"):
        answer = org.key.post(f"/api/v1/agents/{org.agent['id']}/{call}", json={"lead": bad})
        assert answer.status_code == 422, answer.text
        fields = {error["field"] for error in answer.json()["errors"]}
        assert fields == {"$.lead.email", "$.lead.country", "$.lead.employees"}, (call, answer.text)


def test_a_tier_a_lead_waits_for_an_approver_and_then_completes(org: Org) -> None:
    executed = org.key.post(f"/api/v1/agents/{org.agent['id']}/execute", params={"wait": 30}, json={"lead": TIER_A})
    assert executed.status_code == 200, executed.text
    assert executed.json()["execution"]["status"] == "awaiting_approval"
    execution_id = executed.json()["execution_id"]
    params = {"workflow_id": org.agent["workflow_id"], "status": "pending"}
    pending = wait_until(lambda: ok(org.key.get("/api/v1/approvals", params=params))["items"], 30, "the approval")
    ok(org.approver.post(f"/api/v1/approvals/{pending[0]['id']}/approve", json={"comment": "ship"}))

    def completed() -> bool:
        return bool(ok(org.key.get(f"/api/v1/executions/{execution_id}"))["status"] == "completed")

    wait_until(completed, 60, "the approved execution to complete")


def test_a_paused_agent_is_refused_until_resumed_and_its_workflow_is_changed_only_as_an_agent(org: Org) -> None:
    agent = org.deploy()
    paused = ok(org.key.post(f"/api/v1/agents/{agent['id']}/pause", json={"detail": "holiday"}))
    assert (paused["status"], paused["paused_reason"], paused["paused_detail"]) == (
        "paused",
        "paused_by_person",
        "holiday",
    )
    for call in ("execute", "inference", "score_lead"):
        refused = org.key.post(f"/api/v1/agents/{agent['id']}/{call}", json={"lead": TIER_B})
        assert refused.status_code == 409 and refused.json()["paused_reason"] == "paused_by_person", refused.text
    workflow = agent["workflow_id"]
    assert ok(org.key.get(f"/api/v1/workflows/{workflow}"))["kind"] == "agent"
    for action in ("activate", "deactivate", "archive"):
        answer = org.key.post(f"/api/v1/workflows/{workflow}/{action}")
        assert answer.status_code == 409 and answer.json()["type"].endswith("agent-workflow"), answer.text
    assert workflow not in {w["id"] for w in ok(org.key.get("/api/v1/workflows"))["items"]}
    ok(org.key.post(f"/api/v1/agents/{agent['id']}/resume"))
    assert org.key.post(f"/api/v1/agents/{agent['id']}/inference", json={"lead": TIER_B}).status_code == 200


def test_an_agent_keys_template_activation_and_upgrade_go_to_an_approver(org: Org) -> None:
    agent_key = org.issue_key(role="editor", agent=True)
    agent = org.deploy()
    definition = ok(org.key.get(f"/api/v1/agent_templates/{org.template}"))["definition"]
    version = ok(agent_key.post(f"/api/v1/agent_templates/{org.template}/versions", json={"definition": definition}))
    number = version["version"]
    proposed = agent_key.post(f"/api/v1/agent_templates/{org.template}/versions/{number}/activate")
    assert proposed.status_code == 202 and proposed.json()["kind"] == "agent_template.activate", proposed.text
    ok(org.approver.post(f"/api/v1/change_requests/{proposed.json()['id']}/approve", json={}))
    assert ok(org.key.get(f"/api/v1/agent_templates/{org.template}"))["active_version"] == number

    upgrade = agent_key.post(f"/api/v1/agents/{agent['id']}/upgrade", json={"template_version": number})
    assert upgrade.status_code == 202 and upgrade.json()["kind"] == "agent.upgrade", upgrade.text
    assert ok(org.key.get(f"/api/v1/agents/{agent['id']}"))["template_version"] == 1, "not before the decision"
    ok(org.approver.post(f"/api/v1/change_requests/{upgrade.json()['id']}/approve", json={}))
    assert ok(org.key.get(f"/api/v1/agents/{agent['id']}"))["template_version"] == number


def test_archiving_a_template_version_pauses_the_agents_running_it(org: Org) -> None:
    copied = ok(org.key.post("/api/v1/agent_templates", json={"copy_of": org.template, "name": "to archive"}))
    ok(org.key.post(f"/api/v1/agent_templates/{copied['id']}/versions/1/activate"))
    agent = org.deploy(copied["id"])
    archived = ok(org.key.post(f"/api/v1/agent_templates/{copied['id']}/versions/1/archive"))
    assert archived["paused_agents"] == [agent["id"]]
    now = ok(org.key.get(f"/api/v1/agents/{agent['id']}"))
    assert (now["status"], now["paused_reason"]) == ("paused", "template_archived")
    assert org.key.post(f"/api/v1/agents/{agent['id']}/resume").status_code == 409


def test_another_org_and_another_projects_key_cannot_reach_the_agent(org: Org) -> None:
    project = ok(org.key.post("/api/v1/projects", json={"name": uuid.uuid4().hex[:8]}))["id"]
    elsewhere = org.issue_key(role="admin", project_id=project)
    for client in (org.other_org, elsewhere):
        assert client.get(f"/api/v1/agents/{org.agent['id']}").status_code == 404
        for call in ("execute", "inference", "score_lead"):
            answer = client.post(f"/api/v1/agents/{org.agent['id']}/{call}", json={"lead": TIER_B})
            assert answer.status_code == 404, answer.text
        assert client.post("/api/v1/agents", json={"name": "x", "template_id": org.template}).status_code == 404


def test_a_projects_policy_sends_anyones_template_activation_to_an_approver(org: Org) -> None:
    policy = {"agent_template_change_requires_approval": True}
    project = ok(org.key.post("/api/v1/projects", json={"name": uuid.uuid4().hex[:8], "policy": policy}))["id"]
    body = {"copy_of": "builtin:lead-qualification", "project_id": project}
    editor = org.person(["editor", "approver"])
    template = ok(editor.post("/api/v1/agent_templates", json=body))["id"]
    proposed = editor.post(f"/api/v1/agent_templates/{template}/versions/1/activate", json={"reason": "go"})
    assert proposed.status_code == 202, proposed.text
    refused = editor.post(f"/api/v1/change_requests/{proposed.json()['id']}/approve", json={})
    assert refused.status_code == 403 and refused.json()["type"].endswith("four-eyes"), refused.text
    assert org.key.post("/api/v1/agents", json={"name": "x", "template_id": template}).status_code == 409
    ok(org.approver.post(f"/api/v1/change_requests/{proposed.json()['id']}/approve", json={}))
    assert org.deploy(template)["template_version"] == 1
