"""Every route of the app, called as every kind of caller, answers exactly the status the permission
matrix says: the four roles (as people's sessions and as API keys), a project-scoped key outside its
project, a revoked key, an expired key, a deactivated member's session, and another org's admin key.

The routes come from the app's own route table: a route without a declared permission, or without an
example call here, fails the test, so a new route cannot ship unchecked.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from fastapi.routing import APIRoute, iter_route_contexts
from standardwebhooks.webhooks import Webhook

from api.deps import Permission
from api.permissions import MATRIX, Action, Role, matrix_markdown
from drippulse.operators import create_org
from drippulse.settings import Settings
from processors.learned_model import LearnedModel
from processors.templates import LEAD_QUALIFICATION, lead_qualification_agent, lead_qualification_with_approval
from streams.runtime.schema_registry import SCHEMA_DIR, EmbeddedRegistry
from streams.state import state_keys
from tests import control_plane
from tests.integration.outbound import PUBLIC_URL
from tests.stack import ApiServer

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"
INBOUND_SCHEMA = (SCHEMA_DIR / "inbound_event.avsc").read_text()
EVENT = {"event_type": "lead.created", "lead": {"lead_id": "l-1", "email": "ada@acme.io", "title": "VP Sales"}}
_unique = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_unique)}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Caller:
    name: str
    token: str
    roles: frozenset[Role]
    person: bool = False
    valid: bool = True
    scoped: bool = False
    other_org: bool = False


@dataclass(frozen=True)
class Call:
    path: dict[str, str] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None


@dataclass(frozen=True)
class Example:
    """What a route does (the action it must declare), how to call it successfully, and what it
    answers then. `targets`: the call names one resource of the home org, outside the scoped key's
    project (another org, or that key, gets 404)."""

    action: Action
    make: Callable[[World], Call]
    status: int
    targets: bool = False


class World:
    """One org with people, keys, projects and one of each resource; another org; helpers that make a
    fresh resource for every call that uses one up."""

    def __init__(self, settings: Settings, api: ApiServer) -> None:
        self.settings = settings
        self.api = api
        admin_email = unique("first-admin") + "@example.com"
        home = create_org(settings, unique("matrix"), admin_email=admin_email, admin_password=PASSWORD)
        self.org_id, self.default_project = home.org_id, home.project_id
        self.admin = self.client(home.api_key)
        self.issuer = self.client(self.ok(self.login(admin_email))["token"])
        """The first admin's session: issuing keys and changing members are people's acts."""
        self.scoped_project = self.ok(self.admin.post("/api/v1/projects", json={"name": unique("scoped")}))["id"]
        gated = {"name": unique("gated"), "policy": {"workflow_activation_requires_approval": True}}
        self.gated_project = self.ok(self.admin.post("/api/v1/projects", json=gated))["id"]
        self.people_ids: dict[str, str] = {}
        self.people = {role: self.person(role) for role in ("admin", "editor", "viewer", "approver")}
        self.keys = {role: self.key(role) for role in ("admin", "editor", "viewer", "approver")}
        self.scoped_key = self.key("admin", project_id=self.scoped_project)
        revoked = self.ok(self.issuer.post("/api/v1/api_keys", json={"name": "revoked", "role": "admin"}))
        self.ok(self.issuer.delete(f"/api/v1/api_keys/{revoked['id']}"))
        self.revoked_key = revoked["key"]
        expired = self.ok(self.issuer.post("/api/v1/api_keys", json={"name": "expired", "role": "admin"}))
        control_plane.expire_key(settings, expired["id"])
        self.expired_key = expired["key"]
        self.deactivated_session = self.person("viewer", deactivate=True)
        other = create_org(settings, unique("other"))
        self.other_org_key = other.api_key
        for org_id in (self.org_id, other.org_id):
            control_plane.checkpoint_model(settings, org_id, trained_model())
        self.login_email = unique("login") + "@example.com"
        control_plane.add_member(settings, self.org_id, self.login_email, ["viewer"], PASSWORD)
        self.workflow = self.new_workflow()
        self.kept_key = self.ok(self.issuer.post("/api/v1/api_keys", json={"name": "kept", "role": "viewer"}))["id"]
        self.open_request = self.new_change_request()
        self.member = self.people_ids["viewer"]
        self.webhook = self.new_webhook()
        self.delivery = self.ok(self.admin.post(f"/api/v1/webhooks/{self.webhook}/test"))["delivery_id"]
        self.source, self.source_secret = self.new_source(with_secret=True)
        self.connection = self.ok(
            self.admin.post(
                "/api/v1/integration_connections", json={"type": "rest", "name": "crm", "base_url": PUBLIC_URL}
            )
        )["id"]
        self.execution = self.new_execution()
        self.approval_workflow = self.new_workflow(definition=lead_qualification_with_approval())
        self.ok(self.admin.post(f"/api/v1/workflows/{self.approval_workflow}/activate"))
        self.approval = self.new_approval()
        self.agent_template = self.new_template(activate=True)
        self.agent = self.new_agent()
        self.schema_id = EmbeddedRegistry().register("drip.events.inbound-value", orjson.loads(INBOUND_SCHEMA))

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    @staticmethod
    def ok(response: httpx.Response) -> Any:
        assert response.status_code < 300, (response.request.method, response.request.url, response.text)
        return response.json() if response.content else None

    def person(self, role: str, deactivate: bool = False) -> str:
        """A session token of a new member with this one role."""
        email = unique(role) + "@example.com"
        user_id = control_plane.add_member(self.settings, self.org_id, email, [role], PASSWORD)
        self.people_ids.setdefault(role, user_id)
        session = self.ok(self.login(email))
        if deactivate:
            self.ok(self.issuer.post(f"/api/v1/members/{user_id}/deactivate"))
        return str(session["token"])

    def login(self, email: str) -> httpx.Response:
        return httpx.post(f"{self.settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})

    def key(self, role: str, project_id: str | None = None) -> str:
        body = {"name": unique(role), "role": role, "project_id": project_id}
        return str(self.ok(self.issuer.post("/api/v1/api_keys", json=body))["key"])

    def new_workflow(self, project_id: str | None = None, definition: dict[str, Any] | None = None) -> str:
        body = {"name": unique("wf"), "definition": definition or LEAD_QUALIFICATION, "project_id": project_id}
        return str(self.ok(self.admin.post("/api/v1/workflows", json=body))["id"])

    def new_change_request(self) -> str:
        """Requested by the editor (a person), so an Approver may decide it."""
        workflow_id = self.new_workflow(self.gated_project)
        editor = self.client(self.people["editor"])
        response = editor.post(f"/api/v1/workflows/{workflow_id}/activate", json={"reason": "ship it"})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def new_approval(self) -> str:
        """Pending, decidable by every role the matrix lets decide (the step's own list narrows it
        further; the orchestrator tests cover that)."""
        approvers = ["role:admin", "role:editor", "role:approver"]
        return control_plane.open_approval(self.settings, self.org_id, self.approval_workflow, approvers)

    def new_template(self, activate: bool = False) -> str:
        body = {"copy_of": "builtin:lead-qualification", "name": unique("tpl")}
        template_id = str(self.ok(self.admin.post("/api/v1/agent_templates", json=body))["id"])
        if activate:
            self.ok(self.admin.post(f"/api/v1/agent_templates/{template_id}/versions/1/activate"))
        return template_id

    def new_agent(self, paused: bool = False) -> str:
        body = {"name": unique("agent"), "template_id": self.agent_template}
        agent_id = str(self.ok(self.admin.post("/api/v1/agents", json=body))["id"])
        if paused:
            self.ok(self.admin.post(f"/api/v1/agents/{agent_id}/pause"))
        return agent_id

    def new_upgradable_agent(self) -> str:
        """An agent on version 1 of a template whose version 2 is active."""
        template_id = self.new_template(activate=True)
        body = {"name": unique("agent"), "template_id": template_id}
        agent_id = str(self.ok(self.admin.post("/api/v1/agents", json=body))["id"])
        path = f"/api/v1/agent_templates/{template_id}/versions"
        self.ok(self.admin.post(path, json={"definition": lead_qualification_agent()}))
        self.ok(self.admin.post(f"{path}/2/activate"))
        return agent_id

    def new_project(self) -> str:
        return str(self.ok(self.admin.post("/api/v1/projects", json={"name": unique("p")}))["id"])

    def new_member(self, active: bool = True) -> str:
        user_id = control_plane.add_member(
            self.settings, self.org_id, unique("m") + "@example.com", ["viewer"], PASSWORD
        )
        if not active:
            self.ok(self.issuer.post(f"/api/v1/members/{user_id}/deactivate"))
        return user_id

    def new_invitation(self) -> tuple[str, str]:
        body = {"email": unique("inv") + "@example.com", "roles": ["viewer"]}
        created = self.ok(self.issuer.post("/api/v1/members/invitations", json=body))
        return created["id"], created["token"]

    def new_key(self) -> str:
        return str(self.ok(self.issuer.post("/api/v1/api_keys", json={"name": unique("k"), "role": "viewer"}))["id"])

    def new_webhook(self) -> str:
        return str(self.ok(self.admin.post("/api/v1/webhooks", json={"url": PUBLIC_URL}))["id"])

    def new_source(self, with_secret: bool = False) -> Any:
        created = self.ok(self.admin.post("/api/v1/inbound_sources", json={"name": unique("src")}))
        return (created["id"], created["secret"]) if with_secret else created["id"]

    def new_connection(self) -> str:
        body = {"type": "rest", "name": unique("crm"), "base_url": PUBLIC_URL}
        return str(self.ok(self.admin.post("/api/v1/integration_connections", json=body))["id"])

    def new_failed_command(self) -> str:
        """A command the CRM worker gave up on, kept for a retry (as the worker keeps it)."""
        command_id = unique("cmd")
        result_id = f"{command_id}:{self.connection}"
        command = {"command_id": command_id, "org_id": self.org_id, "lead_id": "l-1"}
        redis.Redis.from_url(self.settings.redis_url).set(
            state_keys.crm_failed(self.org_id, result_id), orjson.dumps(command), ex=3600
        )
        return result_id

    def new_execution(self) -> str:
        execution_id = unique("exec")
        now = time.time()
        self.api.clickhouse.insert_rows(
            "executions",
            [
                {
                    "execution_id": execution_id,
                    "org_id": self.org_id,
                    "workflow_id": self.workflow,
                    "workflow_version": 1,
                    "event_id": "e-1",
                    "event_type": "lead.created",
                    "lead_id": "l-1",
                    "status": "completed",
                    "event_occurred_at": now,
                    "evaluated_at": now,
                }
            ],
        )
        return execution_id

    def signed_hook(self) -> Call:
        body = orjson.dumps(EVENT)
        message_id = unique("msg")
        timestamp = int(time.time())
        signature = Webhook(self.source_secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
            "content-type": "application/json",
        }
        return Call({"source_id": self.source}, headers=headers, content=body)


def trained_model() -> LearnedModel:
    model = LearnedModel()
    for converted in (True, False, True):
        model.learn(EVENT["lead"], converted)
    return model


def _call(**kwargs: Any) -> Callable[[World], Call]:
    return lambda _: Call(**kwargs)


EXAMPLES: dict[tuple[str, str], Example] = {
    ("GET", "/health"): Example(Action.PUBLIC, _call(), 200),
    ("POST", "/api/v1/auth/login"): Example(
        Action.PUBLIC, lambda w: Call(json={"email": w.login_email, "password": PASSWORD}), 200
    ),
    ("POST", "/api/v1/auth/invitations/accept"): Example(
        Action.PUBLIC, lambda w: Call(json={"token": w.new_invitation()[1], "password": PASSWORD}), 200
    ),
    ("GET", "/api/v1/auth/me"): Example(Action.ACCOUNT, _call(), 200),
    ("POST", "/api/v1/auth/logout"): Example(Action.ACCOUNT, _call(), 204),
    ("GET", "/api/v1/projects"): Example(Action.PROJECTS_READ, _call(), 200),
    ("POST", "/api/v1/projects"): Example(Action.PROJECTS_MANAGE, lambda _: Call(json={"name": unique("p")}), 201),
    ("GET", "/api/v1/projects/{project_id}"): Example(
        Action.PROJECTS_READ, lambda w: Call({"project_id": w.default_project}), 200, True
    ),
    ("PATCH", "/api/v1/projects/{project_id}"): Example(
        Action.PROJECTS_MANAGE, lambda w: Call({"project_id": w.new_project()}, json={"description": "x"}), 200, True
    ),
    ("DELETE", "/api/v1/projects/{project_id}"): Example(
        Action.PROJECTS_MANAGE, lambda w: Call({"project_id": w.new_project()}), 204, True
    ),
    ("GET", "/api/v1/workflows/step_types"): Example(Action.WORKFLOWS_READ, _call(), 200),
    ("POST", "/api/v1/workflows"): Example(
        Action.WORKFLOWS_AUTHOR, lambda _: Call(json={"name": unique("wf"), "definition": LEAD_QUALIFICATION}), 201
    ),
    ("GET", "/api/v1/workflows"): Example(Action.WORKFLOWS_READ, _call(), 200),
    ("GET", "/api/v1/workflows/{workflow_id}"): Example(
        Action.WORKFLOWS_READ, lambda w: Call({"workflow_id": w.workflow}), 200, True
    ),
    ("PATCH", "/api/v1/workflows/{workflow_id}"): Example(
        Action.WORKFLOWS_AUTHOR, lambda w: Call({"workflow_id": w.new_workflow()}, json={"description": "x"}), 200, True
    ),
    ("GET", "/api/v1/workflows/{workflow_id}/versions"): Example(
        Action.WORKFLOWS_READ, lambda w: Call({"workflow_id": w.workflow}), 200, True
    ),
    ("GET", "/api/v1/workflows/{workflow_id}/versions/{version}"): Example(
        Action.WORKFLOWS_READ, lambda w: Call({"workflow_id": w.workflow, "version": "1"}), 200, True
    ),
    ("POST", "/api/v1/workflows/{workflow_id}/activate"): Example(
        Action.WORKFLOWS_ACTIVATE, lambda w: Call({"workflow_id": w.new_workflow()}), 200, True
    ),
    ("POST", "/api/v1/workflows/{workflow_id}/deactivate"): Example(
        Action.WORKFLOWS_ACTIVATE, lambda w: Call({"workflow_id": w.new_workflow()}), 200, True
    ),
    ("POST", "/api/v1/workflows/{workflow_id}/archive"): Example(
        Action.WORKFLOWS_AUTHOR, lambda w: Call({"workflow_id": w.new_workflow()}), 200, True
    ),
    ("POST", "/api/v1/workflows/{workflow_id}/test"): Example(
        Action.WORKFLOWS_TEST, lambda w: Call({"workflow_id": w.workflow}, json={"events": [EVENT]}), 200, True
    ),
    ("POST", "/api/v1/workflows/{workflow_id}/replay"): Example(
        Action.WORKFLOWS_TEST,
        lambda w: Call({"workflow_id": w.workflow}, json={"base_version": 1, "candidate_version": 1}),
        200,
        True,
    ),
    ("GET", "/api/v1/change_requests"): Example(Action.CHANGE_REQUESTS_READ, _call(), 200),
    ("GET", "/api/v1/change_requests/{request_id}"): Example(
        Action.CHANGE_REQUESTS_READ, lambda w: Call({"request_id": w.open_request}), 200, True
    ),
    ("POST", "/api/v1/change_requests/{request_id}/approve"): Example(
        Action.CHANGE_REQUESTS_DECIDE,
        lambda w: Call({"request_id": w.new_change_request()}, json={"comment": "fine"}),
        200,
        True,
    ),
    ("POST", "/api/v1/change_requests/{request_id}/reject"): Example(
        Action.CHANGE_REQUESTS_DECIDE,
        lambda w: Call({"request_id": w.new_change_request()}, json={"comment": "not yet"}),
        200,
        True,
    ),
    ("POST", "/api/v1/change_requests/{request_id}/cancel"): Example(
        Action.WORKFLOWS_ACTIVATE, lambda w: Call({"request_id": w.new_change_request()}), 200, True
    ),
    ("POST", "/api/v1/workflows/{workflow_id}/runs"): Example(
        Action.WORKFLOWS_RUN,
        lambda w: Call({"workflow_id": w.approval_workflow}, json={"leads": [EVENT["lead"]]}),
        202,
        True,
    ),
    ("GET", "/api/v1/workflows/{workflow_id}/enrollments"): Example(
        Action.EXECUTIONS_READ, lambda w: Call({"workflow_id": w.approval_workflow}), 200, True
    ),
    ("GET", "/api/v1/workflows/{workflow_id}/logs"): Example(
        Action.EXECUTIONS_READ, lambda w: Call({"workflow_id": w.workflow}), 200, True
    ),
    ("GET", "/api/v1/workflows/{workflow_id}/metrics"): Example(
        Action.EXECUTIONS_READ, lambda w: Call({"workflow_id": w.workflow}), 200, True
    ),
    ("GET", "/api/v1/org/unit_prices"): Example(Action.UNIT_PRICES_READ, _call(), 200),
    ("PUT", "/api/v1/org/unit_prices"): Example(Action.UNIT_PRICES_MANAGE, _call(json={"per_execution": 0.002}), 200),
    ("GET", "/api/v1/approvals"): Example(Action.APPROVALS_READ, _call(), 200),
    ("GET", "/api/v1/approvals/{approval_id}"): Example(
        Action.APPROVALS_READ, lambda w: Call({"approval_id": w.approval}), 200, True
    ),
    ("POST", "/api/v1/approvals/{approval_id}/approve"): Example(
        Action.APPROVALS_DECIDE, lambda w: Call({"approval_id": w.new_approval()}, json={"comment": "ok"}), 200, True
    ),
    ("POST", "/api/v1/approvals/{approval_id}/reject"): Example(
        Action.APPROVALS_DECIDE, lambda w: Call({"approval_id": w.new_approval()}, json={"comment": "no"}), 200, True
    ),
    ("POST", "/api/v1/events"): Example(Action.EVENTS_SEND, _call(json=EVENT), 202),
    ("GET", "/api/v1/executions"): Example(Action.EXECUTIONS_READ, _call(), 200),
    ("GET", "/api/v1/executions/summary"): Example(Action.EXECUTIONS_READ, _call(), 200),
    ("GET", "/api/v1/executions/{execution_id}"): Example(
        Action.EXECUTIONS_READ, lambda w: Call({"execution_id": w.execution}), 200, True
    ),
    ("GET", "/api/v1/members"): Example(Action.MEMBERS_MANAGE, _call(), 200),
    ("GET", "/api/v1/members/invitations"): Example(Action.MEMBERS_MANAGE, _call(), 200),
    ("POST", "/api/v1/members/invitations"): Example(
        Action.MEMBERS_MANAGE, lambda _: Call(json={"email": unique("i") + "@example.com", "roles": ["viewer"]}), 201
    ),
    ("DELETE", "/api/v1/members/invitations/{invitation_id}"): Example(
        Action.MEMBERS_MANAGE, lambda w: Call({"invitation_id": w.new_invitation()[0]}), 200, True
    ),
    ("GET", "/api/v1/members/{user_id}"): Example(
        Action.MEMBERS_MANAGE, lambda w: Call({"user_id": w.member}), 200, True
    ),
    ("PUT", "/api/v1/members/{user_id}/roles"): Example(
        Action.MEMBERS_MANAGE,
        lambda w: Call({"user_id": w.new_member()}, json={"roles": ["viewer", "editor"]}),
        200,
        True,
    ),
    ("POST", "/api/v1/members/{user_id}/deactivate"): Example(
        Action.MEMBERS_MANAGE, lambda w: Call({"user_id": w.new_member()}), 200, True
    ),
    ("POST", "/api/v1/members/{user_id}/reactivate"): Example(
        Action.MEMBERS_MANAGE, lambda w: Call({"user_id": w.new_member(active=False)}), 200, True
    ),
    ("POST", "/api/v1/api_keys"): Example(
        Action.API_KEYS_MANAGE, lambda _: Call(json={"name": unique("k"), "role": "viewer"}), 201
    ),
    ("GET", "/api/v1/api_keys"): Example(Action.API_KEYS_MANAGE, _call(), 200),
    ("GET", "/api/v1/api_keys/{key_id}"): Example(
        Action.API_KEYS_MANAGE, lambda w: Call({"key_id": w.kept_key}), 200, True
    ),
    ("DELETE", "/api/v1/api_keys/{key_id}"): Example(
        Action.API_KEYS_MANAGE, lambda w: Call({"key_id": w.new_key()}), 200, True
    ),
    ("POST", "/api/v1/webhooks"): Example(Action.WEBHOOKS_MANAGE, _call(json={"url": PUBLIC_URL}), 201),
    ("GET", "/api/v1/webhooks"): Example(Action.WEBHOOKS_READ, _call(), 200),
    ("GET", "/api/v1/webhooks/{webhook_id}"): Example(
        Action.WEBHOOKS_READ, lambda w: Call({"webhook_id": w.webhook}), 200, True
    ),
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): Example(
        Action.WEBHOOKS_MANAGE, lambda w: Call({"webhook_id": w.webhook}, json={"description": "x"}), 200, True
    ),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): Example(
        Action.WEBHOOKS_MANAGE, lambda w: Call({"webhook_id": w.new_webhook()}), 204, True
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate_secret"): Example(
        Action.WEBHOOKS_MANAGE, lambda w: Call({"webhook_id": w.new_webhook()}), 200, True
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/test"): Example(
        Action.WEBHOOKS_MANAGE, lambda w: Call({"webhook_id": w.webhook}), 202, True
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): Example(
        Action.WEBHOOKS_READ, lambda w: Call({"webhook_id": w.webhook}), 200, True
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"): Example(
        Action.WEBHOOKS_READ, lambda w: Call({"webhook_id": w.webhook, "delivery_id": w.delivery}), 200, True
    ),
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"): Example(
        Action.WEBHOOKS_MANAGE, lambda w: Call({"webhook_id": w.webhook, "delivery_id": w.delivery}), 202, True
    ),
    ("POST", "/api/v1/inbound_sources"): Example(
        Action.INBOUND_SOURCES_MANAGE, lambda _: Call(json={"name": unique("src")}), 201
    ),
    ("GET", "/api/v1/inbound_sources"): Example(Action.INBOUND_SOURCES_READ, _call(), 200),
    ("GET", "/api/v1/inbound_sources/{source_id}"): Example(
        Action.INBOUND_SOURCES_READ, lambda w: Call({"source_id": w.source}), 200, True
    ),
    ("DELETE", "/api/v1/inbound_sources/{source_id}"): Example(
        Action.INBOUND_SOURCES_MANAGE, lambda w: Call({"source_id": w.new_source()}), 204, True
    ),
    ("POST", "/api/v1/inbound_sources/{source_id}/rotate_secret"): Example(
        Action.INBOUND_SOURCES_MANAGE, lambda w: Call({"source_id": w.new_source()}), 200, True
    ),
    ("POST", "/api/v1/hooks/{source_id}"): Example(Action.PUBLIC, lambda w: w.signed_hook(), 202),
    ("POST", "/api/v1/integration_connections"): Example(
        Action.INTEGRATIONS_MANAGE,
        lambda _: Call(json={"type": "rest", "name": unique("crm"), "base_url": PUBLIC_URL}),
        201,
    ),
    ("GET", "/api/v1/integration_connections"): Example(Action.INTEGRATIONS_READ, _call(), 200),
    ("GET", "/api/v1/integration_connections/{connection_id}"): Example(
        Action.INTEGRATIONS_READ, lambda w: Call({"connection_id": w.connection}), 200, True
    ),
    ("PATCH", "/api/v1/integration_connections/{connection_id}"): Example(
        Action.INTEGRATIONS_MANAGE, lambda w: Call({"connection_id": w.connection}, json={"burst": 11}), 200, True
    ),
    ("DELETE", "/api/v1/integration_connections/{connection_id}"): Example(
        Action.INTEGRATIONS_MANAGE, lambda w: Call({"connection_id": w.new_connection()}), 204, True
    ),
    ("GET", "/api/v1/crm_commands"): Example(Action.CRM_COMMANDS_READ, _call(), 200),
    ("POST", "/api/v1/crm_commands/{result_id}/retry"): Example(
        Action.CRM_COMMANDS_RETRY, lambda w: Call({"result_id": w.new_failed_command()}), 202, True
    ),
    ("GET", "/api/v1/audit_log"): Example(Action.AUDIT_READ, _call(), 200),
    ("GET", "/api/v1/models"): Example(Action.MODELS_READ, _call(), 200),
    ("GET", "/api/v1/models/current"): Example(Action.MODELS_READ, _call(), 200),
    ("POST", "/api/v1/models/backtest"): Example(Action.MODELS_BACKTEST, _call(json={}), 200),
    ("GET", "/api/v1/agent_templates"): Example(Action.AGENT_TEMPLATES_READ, _call(), 200),
    ("POST", "/api/v1/agent_templates"): Example(
        Action.AGENT_TEMPLATES_AUTHOR, _call(json={"copy_of": "builtin:lead-qualification"}), 201
    ),
    ("GET", "/api/v1/agent_templates/{template_id}"): Example(
        Action.AGENT_TEMPLATES_READ, lambda w: Call({"template_id": w.agent_template}), 200, True
    ),
    ("GET", "/api/v1/agent_templates/{template_id}/versions"): Example(
        Action.AGENT_TEMPLATES_READ, lambda w: Call({"template_id": w.agent_template}), 200, True
    ),
    ("GET", "/api/v1/agent_templates/{template_id}/versions/{version}"): Example(
        Action.AGENT_TEMPLATES_READ, lambda w: Call({"template_id": w.agent_template, "version": "1"}), 200, True
    ),
    ("POST", "/api/v1/agent_templates/{template_id}/versions"): Example(
        Action.AGENT_TEMPLATES_AUTHOR,
        lambda w: Call({"template_id": w.agent_template}, json={"definition": lead_qualification_agent()}),
        201,
        True,
    ),
    ("PATCH", "/api/v1/agent_templates/{template_id}/versions/{version}"): Example(
        Action.AGENT_TEMPLATES_AUTHOR,
        lambda w: Call(
            {"template_id": w.new_template(), "version": "1"}, json={"definition": lead_qualification_agent()}
        ),
        200,
        True,
    ),
    ("POST", "/api/v1/agent_templates/{template_id}/versions/{version}/activate"): Example(
        Action.AGENT_TEMPLATES_ACTIVATE, lambda w: Call({"template_id": w.new_template(), "version": "1"}), 200, True
    ),
    ("POST", "/api/v1/agent_templates/{template_id}/versions/{version}/archive"): Example(
        Action.AGENT_TEMPLATES_ACTIVATE,
        lambda w: Call({"template_id": w.new_template(activate=True), "version": "1"}),
        200,
        True,
    ),
    ("GET", "/api/v1/agents"): Example(Action.AGENTS_READ, _call(), 200),
    ("POST", "/api/v1/agents"): Example(
        Action.AGENTS_MANAGE, lambda w: Call(json={"name": unique("agent"), "template_id": w.agent_template}), 201, True
    ),
    ("GET", "/api/v1/agents/{agent_id}"): Example(Action.AGENTS_READ, lambda w: Call({"agent_id": w.agent}), 200, True),
    ("PATCH", "/api/v1/agents/{agent_id}"): Example(
        Action.AGENTS_MANAGE, lambda w: Call({"agent_id": w.new_agent()}, json={"name": unique("agent")}), 200, True
    ),
    ("DELETE", "/api/v1/agents/{agent_id}"): Example(
        Action.AGENTS_MANAGE, lambda w: Call({"agent_id": w.new_agent()}), 200, True
    ),
    ("POST", "/api/v1/agents/{agent_id}/pause"): Example(
        Action.AGENTS_MANAGE, lambda w: Call({"agent_id": w.new_agent()}), 200, True
    ),
    ("POST", "/api/v1/agents/{agent_id}/resume"): Example(
        Action.AGENTS_MANAGE, lambda w: Call({"agent_id": w.new_agent(paused=True)}), 200, True
    ),
    ("POST", "/api/v1/agents/{agent_id}/upgrade"): Example(
        Action.AGENTS_MANAGE,
        lambda w: Call({"agent_id": w.new_upgradable_agent()}, json={"template_version": 2}),
        200,
        True,
    ),
    ("POST", "/api/v1/agents/{agent_id}/execute"): Example(
        Action.AGENTS_INVOKE, lambda w: Call({"agent_id": w.agent}, json={"lead": EVENT["lead"]}), 202, True
    ),
    ("POST", "/api/v1/agents/{agent_id}/inference"): Example(
        Action.AGENTS_INVOKE, lambda w: Call({"agent_id": w.agent}, json={"lead": EVENT["lead"]}), 200, True
    ),
    ("POST", "/api/v1/agents/{agent_id}/score_lead"): Example(
        Action.AGENTS_INVOKE, lambda w: Call({"agent_id": w.agent}, json={"lead": EVENT["lead"]}), 200, True
    ),
    ("GET", "/api/v1/agents/{agent_id}/executions"): Example(
        Action.AGENTS_READ, lambda w: Call({"agent_id": w.agent}), 200, True
    ),
    ("GET", "/api/v1/agents/{agent_id}/logs"): Example(
        Action.AGENTS_READ, lambda w: Call({"agent_id": w.agent}), 200, True
    ),
    ("GET", "/api/v1/agents/{agent_id}/metrics"): Example(
        Action.AGENTS_READ, lambda w: Call({"agent_id": w.agent}), 200, True
    ),
    ("POST", "/schema-registry/subjects/{subject}"): Example(
        Action.PUBLIC, lambda _: Call({"subject": "drip.events.inbound-value"}, json={"schema": INBOUND_SCHEMA}), 200
    ),
    ("POST", "/schema-registry/subjects/{subject}/versions"): Example(
        Action.PUBLIC, lambda _: Call({"subject": "drip.events.inbound-value"}, json={"schema": INBOUND_SCHEMA}), 200
    ),
    ("GET", "/schema-registry/schemas/ids/{schema_id}"): Example(
        Action.PUBLIC, lambda w: Call({"schema_id": str(w.schema_id)}), 200
    ),
}
LAST = ("POST", "/api/v1/auth/logout")
"""Ends the callers' sessions, so it runs after every other route."""


def routes(api: ApiServer) -> list[tuple[str, str, Action]]:
    """(method, path, declared action) of every route, from the app's route table."""
    found = []
    for context in iter_route_contexts(api.app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        permissions = [d.call for d in route.dependant.dependencies if isinstance(d.call, Permission)]
        assert len(permissions) == 1, f"{context.path} must declare exactly one permission (Allowed or Public)"
        found += [(method, context.path, permissions[0].action) for method in sorted(context.methods)]
    return found


def expected(caller: Caller, example: Example) -> int:
    """The matrix's answer, in the order the API applies it: credentials, role and scope, resource."""
    action = example.action
    if action is Action.PUBLIC:
        return example.status
    if not caller.valid:
        return 401
    rule = MATRIX[action]
    if (rule.people_only and not caller.person) or (caller.scoped and rule.scoped_keys == "no"):
        return 403
    if not caller.roles & rule.roles:
        return 403
    if example.targets and (caller.other_org or caller.scoped):
        return 404
    return example.status


@pytest.fixture(scope="module")
def world(api_server: ApiServer, settings: Settings) -> Iterator[World]:
    yield World(settings, api_server)


def callers(world: World) -> list[Caller]:
    people = [
        Caller(f"{role} session", token, frozenset({Role(role)}), person=True) for role, token in world.people.items()
    ]
    keys = [Caller(f"{role} key", token, frozenset({Role(role)})) for role, token in world.keys.items()]
    return [
        *people,
        *keys,
        Caller("project-scoped key outside its project", world.scoped_key, frozenset({Role.ADMIN}), scoped=True),
        Caller("revoked key", world.revoked_key, frozenset({Role.ADMIN}), valid=False),
        Caller("expired key", world.expired_key, frozenset({Role.ADMIN}), valid=False),
        Caller(
            "deactivated member's session",
            world.deactivated_session,
            frozenset({Role.VIEWER}),
            person=True,
            valid=False,
        ),
        Caller("another org's admin key", world.other_org_key, frozenset({Role.ADMIN}), other_org=True),
    ]


def test_every_route_answers_every_caller_as_the_matrix_says(world: World, api_server: ApiServer) -> None:
    table = routes(api_server)
    missing = sorted({(m, p) for m, p, _ in table} - set(EXAMPLES))
    assert not missing, f"routes without an example call in this test: {missing}"
    stale = sorted(set(EXAMPLES) - {(m, p) for m, p, _ in table})
    assert not stale, f"examples for routes that no longer exist: {stale}"
    declared = {(m, p): a for m, p, a in table if EXAMPLES[(m, p)].action is not a}
    assert not declared, f"routes declaring another action than the one reviewed here: {declared}"
    ordered = sorted(table, key=lambda r: (r[0], r[1]) == LAST)
    mismatches = []
    for (method, path, _), caller in itertools.product(ordered, callers(world)):
        example = EXAMPLES[(method, path)]
        call = example.make(world)
        url = path.format(**call.path)
        headers = {"Authorization": f"Bearer {caller.token}", **call.headers}
        response = httpx.request(
            method, world.settings.api_url + url, json=call.json, content=call.content, headers=headers, timeout=30
        )
        want = expected(caller, example)
        if response.status_code != want:
            mismatches.append(
                f"{method} {path} as {caller.name}: {response.status_code}, expected {want}: {response.text[:200]}"
            )
        elif want >= 400:
            assert response.headers["content-type"] == "application/problem+json", (method, path, caller.name)
    assert not mismatches, "\n".join(mismatches)


def test_the_api_docs_print_the_matrix() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    assert matrix_markdown() in docs, "docs/api.md's permission table differs from api.permissions.MATRIX"


def route_table(api: ApiServer) -> str:
    """The docs' list of routes with the action each declares."""
    lines = ["| method | path | action |", "|---|---|---|"]
    lines += [f"| {method} | `{path}` | `{action.value}` |" for method, path, action in routes(api)]
    return "\n".join(lines)


def test_the_api_docs_list_every_route_with_its_action(api_server: ApiServer) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    assert route_table(api_server) in docs, "docs/api.md's route list differs from the app's routes"
