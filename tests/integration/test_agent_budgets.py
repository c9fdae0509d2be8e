"""An agent's budget against the real stack: an agent over it pauses itself (the system's act,
audited, announced once as `agent.paused`) and the call is refused with `agent-over-budget`; a
person, never a key, resumes it. And the attacks on it: calls at once, the same Idempotency-Key
twice, callers refused for their role or org spending the budget."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import redis

from drippulse.operators import create_org
from drippulse.settings import Settings
from processors.templates import lead_qualification_agent
from streams.state import state_keys
from tests import control_plane
from tests.integration.helpers import deploy_agent, login
from tests.integration.test_agent_calls import _deliver
from tests.integration.test_role_matrix import PASSWORD
from tests.stack import ApiServer, WorkerProcess, wait_until

pytestmark = pytest.mark.stack
LEAD = {"lead_id": "lead-budget", "email": "bea@initech.net", "title": "VP Sales", "country": "US"}
CONCURRENT = 12


@dataclass
class Org:
    settings: Settings
    org_id: str
    key: httpx.Client
    admin: httpx.Client
    """The first Admin's session: a person."""
    other_org: httpx.Client

    def issue_key(self, role: str) -> httpx.Client:
        issued = self.admin.post("/api/v1/api_keys", json={"name": uuid.uuid4().hex[:8], "role": role})
        assert issued.status_code == 201, issued.text
        return client(self.settings, issued.json()["key"])

    def budgeted(self, **budget: Any) -> dict[str, Any]:
        limits = {"executions_per_minute": None, "cost_per_day": None, **budget}
        return deploy_agent(self.key, {**lead_qualification_agent(), "budget": limits})

    def subscribe_to_pauses(self) -> str:
        webhook_id, _ = control_plane.subscribe(
            self.settings, self.org_id, f"https://example.com/{uuid.uuid4().hex}", ["agent.paused"]
        )
        return webhook_id

    def pauses_audited(self, agent_id: str) -> list[dict[str, Any]]:
        params = {"action": "agent.pause", "resource_id": agent_id}
        answer = self.key.get("/api/v1/audit_log", params=params)
        assert answer.status_code == 200, answer.text
        entries: list[dict[str, Any]] = answer.json()["items"]
        return entries


def client(settings: Settings, token: str) -> httpx.Client:
    return httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def org(api_server: ApiServer, settings: Settings) -> Iterator[Org]:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    home = create_org(settings, f"budgets-{uuid.uuid4().hex[:6]}", admin_email=email, admin_password=PASSWORD)
    other = create_org(settings, f"other-{uuid.uuid4().hex[:6]}")
    session = login(settings, email, PASSWORD).json()["token"]
    key, admin, other_org = (client(settings, token) for token in (home.api_key, session, other.api_key))
    yield Org(settings, home.org_id, key, admin, other_org)


def queued(settings: Settings, webhook_id: str) -> list[dict[str, Any]]:
    """The deliveries queued for the endpoint (no webhook worker is needed to see them)."""
    client = redis.Redis.from_url(settings.redis_url)
    tasks = [orjson.loads(raw) for _, raw in client.hscan_iter(state_keys.WEBHOOK_TASKS)]
    return [task for task in tasks if task["webhook_id"] == webhook_id]


def infer(client: httpx.Client, agent: dict[str, Any]) -> httpx.Response:
    return client.post(f"/api/v1/agents/{agent['id']}/inference", json={"lead": LEAD})


def assert_over_budget(answer: httpx.Response, status: int, limit: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert (body["type"].rsplit("/", 1)[1], body["limit"], body["paused_reason"]) == (
        "agent-over-budget",
        limit,
        "over_budget",
    )


def test_an_agent_over_its_rate_pauses_itself_audited_and_announced_once(org: Org) -> None:
    agent = org.budgeted(executions_per_minute=2)
    hook = org.subscribe_to_pauses()
    assert [infer(org.key, agent).status_code for _ in range(2)] == [200, 200]

    assert_over_budget(infer(org.key, agent), 429, "executions_per_minute")
    now = org.key.get(f"/api/v1/agents/{agent['id']}").json()
    assert (now["status"], now["paused_reason"]) == ("paused", "over_budget")
    assert now["paused_detail"].startswith("executions_per_minute: 2 in the last 60 s")
    refused = org.key.post(f"/api/v1/agents/{agent['id']}/score_lead", json={"lead": LEAD})
    assert refused.status_code == 409 and refused.json()["paused_reason"] == "over_budget", refused.text

    [entry] = org.pauses_audited(agent["id"])
    assert entry["actor"]["type"] == "system" and entry["after"]["paused_reason"] == "over_budget"
    [delivery] = queued(org.settings, hook)
    event = orjson.loads(delivery["payload_json"])
    assert (delivery["event_type"], event["type"]) == ("agent.paused", "agent.paused")
    assert (event["data"]["agent_id"], event["data"]["paused_reason"]) == (agent["id"], "over_budget")


def test_calls_over_budget_at_once_pause_the_agent_once_with_one_event(org: Org) -> None:
    agent = org.budgeted(executions_per_minute=1)
    hook = org.subscribe_to_pauses()
    assert infer(org.key, agent).status_code == 200

    async def at_once() -> list[httpx.Response]:
        headers = dict(org.key.headers)
        async with httpx.AsyncClient(base_url=org.settings.api_url, headers=headers, timeout=60) as client:
            url = f"/api/v1/agents/{agent['id']}/inference"
            return await asyncio.gather(*(client.post(url, json={"lead": LEAD}) for _ in range(CONCURRENT)))

    answers = asyncio.run(at_once())
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {409, 429} and 429 in statuses, [answer.text for answer in answers]
    assert len(org.pauses_audited(agent["id"])) == 1
    assert len(queued(org.settings, hook)) == 1


def test_a_key_cannot_resume_an_agent_its_budget_paused_and_a_person_can(org: Org) -> None:
    agent = org.budgeted(executions_per_minute=1)
    assert infer(org.key, agent).status_code == 200
    assert_over_budget(infer(org.key, agent), 429, "executions_per_minute")
    for key in (org.key, org.issue_key("editor")):
        refused = key.post(f"/api/v1/agents/{agent['id']}/resume")
        assert refused.status_code == 403 and refused.json()["type"].endswith("person-required"), refused.text
    assert org.key.get(f"/api/v1/agents/{agent['id']}").json()["status"] == "paused"

    resumed = org.admin.post(f"/api/v1/agents/{agent['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "active", resumed.text


def test_the_same_idempotency_key_twice_counts_once_against_the_rate(org: Org) -> None:
    agent = org.budgeted(executions_per_minute=2)

    def execute(key: str) -> httpx.Response:
        url = f"/api/v1/agents/{agent['id']}/execute"
        return org.key.post(url, json={"lead": LEAD}, headers={"Idempotency-Key": key})

    first, again = execute("same"), execute("same")
    assert (first.status_code, again.status_code) == (202, 202), (first.text, again.text)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert execute("another").status_code == 202, "the replay was not counted"
    assert_over_budget(execute("a-third"), 429, "executions_per_minute")


def test_callers_refused_for_their_role_or_org_never_spend_an_agents_budget(org: Org) -> None:
    agent = org.budgeted(executions_per_minute=1)
    viewer = org.issue_key("viewer")
    for _ in range(3):
        assert infer(viewer, agent).status_code == 403
        assert infer(org.other_org, agent).status_code == 404
    assert infer(org.key, agent).status_code == 200
    assert_over_budget(infer(org.key, agent), 429, "executions_per_minute")


def test_an_agent_over_its_days_cost_pauses_itself(org: Org, qualifier: WorkerProcess) -> None:
    agent = org.budgeted(cost_per_day=0.0001)
    executed = org.key.post(f"/api/v1/agents/{agent['id']}/execute", params={"wait": 30}, json={"lead": LEAD})
    assert executed.status_code == 200, executed.text

    def refused() -> httpx.Response | None:
        answer = infer(org.key, agent)
        return answer if answer.status_code != 200 else None

    assert_over_budget(wait_until(refused, 30, "the day's cost to reach the budget"), 409, "cost_per_day")
    now = org.key.get(f"/api/v1/agents/{agent['id']}").json()
    assert (now["status"], now["paused_reason"]) == ("paused", "over_budget")
    assert now["paused_detail"].startswith("cost_per_day: ")


def test_a_persons_pause_and_an_archived_template_version_are_announced_too(org: Org) -> None:
    hook = org.subscribe_to_pauses()
    by_person = org.budgeted()
    assert org.key.post(f"/api/v1/agents/{by_person['id']}/pause", json={"detail": "holiday"}).status_code == 200
    archived = org.budgeted()
    path = f"/api/v1/agent_templates/{archived['template_id']}/versions/1/archive"
    assert org.key.post(path).json()["paused_agents"] == [archived["id"]]

    announced = {
        (event["data"]["agent_id"], event["data"]["paused_reason"])
        for event in (orjson.loads(delivery["payload_json"]) for delivery in queued(org.settings, hook))
    }
    assert announced == {(by_person["id"], "paused_by_person"), (archived["id"], "template_archived")}


def test_a_signed_inbound_call_spends_the_budget_and_its_retry_does_not(org: Org) -> None:
    """An inbound source calling an agent is one more way in: checked and counted like the API's
    calls, while the sender's retry of a delivery already taken is its duplicate, never a refusal."""
    agent = org.budgeted(executions_per_minute=1)
    created = org.key.post("/api/v1/inbound_sources", json={"name": "Forms", "agent_id": agent["id"]})
    assert created.status_code == 201, created.text
    source = created.json()

    first = _deliver(org.settings, source, "m-1", LEAD)
    assert first.status_code == 202 and first.json()["accepted"] == 1, first.text
    retried = _deliver(org.settings, source, "m-1", LEAD)
    assert retried.status_code == 202 and retried.json()["duplicates"] == [f"{source['id']}:m-1"], retried.text

    assert_over_budget(_deliver(org.settings, source, "m-2", LEAD), 429, "executions_per_minute")
    assert org.key.get(f"/api/v1/agents/{agent['id']}").json()["paused_reason"] == "over_budget"
