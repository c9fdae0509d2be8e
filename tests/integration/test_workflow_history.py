"""A workflow's step logs, metrics and costs (an agent's, through its backing workflow), its org's
unit prices, the budget check and org-level webhook events, against the real stack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import httpx
import pytest

from api.budget_usage import TodaysCost, check_budget, cost_today, record_invocation
from api.control_plane.database import Database
from api.metrics_reader import MetricsReader
from api.org_webhook_events import publish_org_webhook_event
from api.provider_calls import record_provider_calls
from drippulse.settings import Settings
from processors.agent_templates import Budget
from processors.budgets import Overrun
from processors.templates import LEAD_QUALIFICATION
from streams.delivery.webhook_schedule import DeliverySchedule
from streams.sinks.clickhouse_sink import execution_row
from streams.state import redis_clients
from tests import control_plane
from tests.integration.helpers import activate_workflow, admin_session, wait_for_executions
from tests.stack import ApiServer

pytestmark = pytest.mark.stack
T = TypeVar("T")
HOUR_MS = 3_600_000
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00Z, an hour's start
PRICES = {"per_execution": 1.0, "per_decision": 0.125, "per_action": 0.25, "per_provider_call": 4.0}
"""Binary fractions, so sums of them are exact."""


def _execution(org_id: str, workflow_id: str, n: int, occurred_ms: int, latency_ms: int, status: str) -> dict[str, Any]:
    """A row built by the executions sink's own row builder from an execution record."""
    evaluated = occurred_ms + latency_ms
    return execution_row(
        {
            "execution_id": f"exe_{workflow_id}_{n}",
            "org_id": org_id,
            "workflow_id": workflow_id,
            "workflow_version": 1,
            "event_id": f"evt_{n}",
            "event_type": "lead.created",
            "trigger": "event",
            "lead_id": f"lead-{n}",
            "status": status,
            "status_reason": "",
            "score": 10,
            "score_breakdown": {},
            "tier": "A",
            "owner": "",
            "routing_reason": "",
            "actions": ["crm_update", "webhook_notify"],
            "logs": [],
            "decisions": ["0:filter:pass", "1:tier:A", "2:route:emea"],
            "timeline": [{"at_ms": evaluated, "what": "evaluated", "step": "", "actor": "", "note": "", "actions": []}],
            "paused_step": "",
            "due_at_ms": None,
            "event_occurred_at_ms": occurred_ms,
            "evaluated_at_ms": evaluated + (60_000 if status == "waiting" else 0),
        }
    )


def _run(settings: Settings, work: Callable[[Database, Any], Awaitable[T]]) -> T:
    """`work` with the stack's PostgreSQL and Redis, on an event loop of this test's own."""

    async def go() -> T:
        database = Database(settings.database_url, pool_size=1)
        redis = redis_clients.connect_async(settings.redis_url)
        try:
            return await work(database, redis)
        finally:
            await redis.aclose()
            await database.close()

    return asyncio.run(go())


def _workflow(org: dict[str, Any]) -> str:
    created = org["client"].post("/api/v1/workflows", json={"name": "wf", "definition": LEAD_QUALIFICATION})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_metrics_count_success_latency_and_cost_of_known_executions(
    api_server: ApiServer, settings: Settings, org_factory: Any
) -> None:
    org, other = org_factory("Metrics Co"), org_factory("Other Co")
    workflow_id, sibling = _workflow(org), _workflow(org)
    admin = admin_session(settings, org)
    assert admin.put("/api/v1/org/unit_prices", json=PRICES).status_code == 200
    # Hour 0: latencies 1..100 ms; 75 completed, 20 filtered out, 5 waiting (not decided yet).
    rows = [
        _execution(
            org["org_id"],
            workflow_id,
            n,
            BASE_MS + n * 1000,
            n + 1,
            "completed" if n < 75 else "filtered_out" if n < 95 else "waiting",
        )
        for n in range(100)
    ]
    rows.append(_execution(org["org_id"], workflow_id, 100, BASE_MS + 2 * HOUR_MS, 7, "completed"))
    noise = [_execution(org["org_id"], sibling, 0, BASE_MS, 1, "completed")]
    noise.append(_execution(other["org_id"], workflow_id, 0, BASE_MS, 1, "completed"))
    for _ in range(2):  # a replayed batch: FINAL keeps one row per execution
        api_server.clickhouse.insert_rows("executions", rows + noise)
    for _ in range(2):  # a retried recording counts once
        asyncio.run(
            record_provider_calls(api_server.clickhouse, org["org_id"], workflow_id, 3, "call-1", at_ms=BASE_MS + 5)
        )

    answer = org["client"].get(
        f"/api/v1/workflows/{workflow_id}/metrics",
        params={"bucket": "hour", "since": "2025-01-01T00:00:00Z", "until": "2025-01-01T03:00:00Z"},
    )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["unit_prices"] == PRICES
    first, empty, last = report["periods"]
    assert [p["start_ms"] for p in report["periods"]] == [BASE_MS, BASE_MS + HOUR_MS, BASE_MS + 2 * HOUR_MS]
    assert (first["executions"], first["completed"], first["terminal"]) == (100, 75, 95)
    assert first["success_rate"] == pytest.approx(75 / 95)
    assert (first["latency_p50_ms"], first["latency_p99_ms"]) == (51, 100)
    assert first["completion_p99_ms"] == 95  # the waiting five are not decided, so not counted
    assert first["units"] == {"executions": 100, "decisions": 300, "actions": 200, "provider_calls": 3}
    assert first["cost"] == pytest.approx(100 * 1.0 + 300 * 0.125 + 200 * 0.25 + 3 * 4.0)
    assert empty["executions"] == 0 and empty["success_rate"] is None and empty["latency_p50_ms"] is None
    assert empty["cost"] == 0
    assert (last["executions"], last["success_rate"], last["latency_p50_ms"]) == (1, 1.0, 7)

    for path in (f"/api/v1/workflows/{workflow_id}/metrics", f"/api/v1/workflows/{workflow_id}/logs"):
        refused = other["client"].get(path)
        assert refused.status_code == 404, refused.text


def test_a_range_of_too_many_periods_is_refused(api_server: ApiServer, org_factory: Any) -> None:
    org = org_factory("Range Co")
    workflow_id = _workflow(org)
    answer = org["client"].get(
        f"/api/v1/workflows/{workflow_id}/metrics",
        params={"bucket": "minute", "since": "2025-01-01T00:00:00Z", "until": "2025-01-03T00:00:00Z"},
    )
    assert answer.status_code == 422 and answer.json()["type"].endswith("bad-range"), answer.text


def test_logs_of_real_runs_name_each_step_page_by_page(qualifier: Any, api_server: ApiServer, org_factory: Any) -> None:
    org = org_factory("Logs Co")
    workflow = activate_workflow(org["client"], "LQ", LEAD_QUALIFICATION)
    for n in range(3):
        lead = {"lead_id": f"l-{n}", "email": f"ada{n}@acme.io", "title": "VP Sales"}
        assert (
            org["client"].post("/api/v1/events", json={"event_type": "lead.created", "lead": lead}).status_code == 202
        )
    wait_for_executions(api_server, org["org_id"], 3)

    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        answer = org["client"].get(f"/api/v1/workflows/{workflow['id']}/logs", params=params)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break

    assert [len(page) for page in pages] == [2, 1]
    logs = [log for page in pages for log in page]
    assert sorted(log["lead_id"] for log in logs) == ["l-0", "l-1", "l-2"]
    for log in logs:
        stored = org["client"].get(f"/api/v1/executions/{log['execution_id']}").json()
        entries = log["entries"]
        assert entries[0]["source"] == "timeline" and entries[0]["kind"] == "evaluated"
        decided = [f"{e['step']}:{e['kind']}:{e['outcome']}" for e in entries if e["source"] == "decision"]
        assert decided == stored["decisions"] and decided
        assert {e["at_ms"] for e in entries} == {stored["timeline"][0]["at_ms"]}
        assert {e["execution_id"] for e in entries} == {log["execution_id"]}


def test_unit_prices_are_read_by_everyone_and_set_by_an_admin_audited(
    api_server: ApiServer, settings: Settings, org_factory: Any
) -> None:
    org, other = org_factory("Prices Co"), org_factory("Other Prices Co")
    defaults = org["client"].get("/api/v1/org/unit_prices").json()
    editor_key = admin_session(settings, org).post("/api/v1/api_keys", json={"name": "e", "role": "editor"})
    editor = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {editor_key.json()['key']}"})

    assert editor.get("/api/v1/org/unit_prices").json() == defaults
    assert editor.put("/api/v1/org/unit_prices", json=PRICES).status_code == 403
    assert org["client"].put("/api/v1/org/unit_prices", json={**PRICES, "per_action": -1}).status_code == 422
    assert org["client"].put("/api/v1/org/unit_prices", json=PRICES).json() == PRICES

    assert editor.get("/api/v1/org/unit_prices").json() == PRICES
    assert other["client"].get("/api/v1/org/unit_prices").json() == defaults
    (entry,) = org["client"].get("/api/v1/audit_log", params={"action": "unit_prices.update"}).json()["items"]
    assert entry["after"]["per_execution"] == PRICES["per_execution"]
    assert entry["before"]["per_execution"] == defaults["per_execution"]


def test_the_budget_check_counts_the_last_minute_and_todays_cost(
    api_server: ApiServer, settings: Settings, org_factory: Any
) -> None:
    org = org_factory("Budget Co")
    workflow_id = _workflow(org)
    assert org["client"].put("/api/v1/org/unit_prices", json=PRICES).status_code == 200
    now = BASE_MS + 10 * HOUR_MS + 30_000
    metrics = MetricsReader(api_server.clickhouse)
    # Two executions today (3 decisions, 2 actions each: 1.875 at PRICES), one yesterday.
    api_server.clickhouse.insert_rows(
        "executions",
        [
            _execution(org["org_id"], workflow_id, n, at, 5, "completed")
            for n, at in enumerate((BASE_MS + HOUR_MS, now - 1000, BASE_MS - 1000))
        ],
    )

    async def scenario(database: Database, redis: Any) -> list[Overrun | None]:
        for at in (now - 61_000, now - 50_000, now - 1_000, now):
            await record_invocation(redis, org["org_id"], workflow_id, at)
        costs = TodaysCost(partial(cost_today, database, metrics))

        async def check(budget: Budget, at: int = now) -> Overrun | None:
            return await check_budget(redis, costs, org["org_id"], workflow_id, budget, at)

        return [
            await check(Budget(executions_per_minute=4)),
            await check(Budget(executions_per_minute=3)),
            await check(Budget(executions_per_minute=3), now + 11_000),
            await check(Budget(cost_per_day=3.76)),
            await check(Budget(cost_per_day=3.75)),
        ]

    under_rate, over_rate, later, under_cost, over_cost = _run(settings, scenario)
    assert under_rate is None and later is None
    assert over_rate is not None and over_rate.reason.startswith("executions_per_minute: 3 ")
    assert under_cost is None
    assert over_cost is not None and over_cost.reason.startswith("cost_per_day: 3.75 ")


def test_an_org_webhook_event_is_queued_once_for_each_subscribed_endpoint(
    api_server: ApiServer, settings: Settings, org_factory: Any
) -> None:
    org, other = org_factory("Hooks Co"), org_factory("Other Hooks Co")
    everything, _ = control_plane.subscribe(settings, org["org_id"], "https://example.com/all")
    paused, _ = control_plane.subscribe(settings, org["org_id"], "https://example.com/p", ["agent.paused"])
    control_plane.subscribe(settings, org["org_id"], "https://example.com/q", ["lead.qualified"])
    control_plane.subscribe(settings, other["org_id"], "https://example.com/other")
    message_id = f"msg_agent.paused_{uuid.uuid4().hex}"

    async def publish(database: Database, redis: Any) -> list[list[str]]:
        schedule = DeliverySchedule(redis)
        data = {"agent_id": "agt_1", "reason": "over budget"}
        return [
            await publish_org_webhook_event(database, schedule, org["org_id"], "agent.paused", data, message_id)
            for _ in range(2)
        ]

    first, again = _run(settings, publish)

    assert len(first) == 2 and again == first
    for webhook_id in (everything, paused):
        found = [
            d for d in first if org["client"].get(f"/api/v1/webhooks/{webhook_id}/deliveries/{d}").status_code == 200
        ]
        assert len(found) == 1
        delivery = org["client"].get(f"/api/v1/webhooks/{webhook_id}/deliveries/{found[0]}").json()
        assert (delivery["message_id"], delivery["event_type"]) == (message_id, "agent.paused")
