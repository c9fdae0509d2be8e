"""Approvals and waits through the real stack: qualifier, orchestrator (faust), API, PostgreSQL, Kafka.

The expected outcome of every lead comes from the pure engine (`processors`): evaluate, then resume
with the decision the test takes. The orchestrator must produce exactly those CRM commands and
webhook messages, with those ids, and none of a paused execution's before its decision.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors import ids
from processors.compiler import compile_workflow
from processors.events import EVENT_TYPE_BY_SYMBOL
from processors.execution import Execution, ExecutionStatus
from processors.model import WorkflowDefinition
from processors.orchestration import Outcome, Resumption, Suspension, resume, suspend
from processors.routing import RoutingState
from processors.templates import LEAD_QUALIFICATION, lead_qualification_with_approval
from streams import topics
from tests import control_plane
from tests.integration.helpers import activate_workflow, post_events
from tests.integration.outbound import produce_records
from tests.stack import ApiServer, WorkerProcess, read_topic, wait_until

pytestmark = pytest.mark.stack
PASSWORD = "correct horse battery staple"
TIMEOUT_S = 20
LOG = {"type": "action", "action": "log", "message": "ran"}


def _session(settings: Settings, org: dict[str, Any], email: str, roles: list[str]) -> httpx.Client:
    control_plane.add_member(settings, org["org_id"], email, roles, PASSWORD)
    login = httpx.post(f"{settings.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return httpx.Client(
        base_url=settings.api_url, headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=30
    )


def _leads(org_id: str, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Synthetic leads, every other one a senior buyer at a mid-market software company (tier A
    unless their email is free mail)."""
    records = []
    for n in range(count):
        record = lead_event(random.Random(seed * 1000 + n), org_id, n)
        if n % 2 == 0:
            record["lead"].update(title="VP Sales", employees=800, industry="software", lead_source="web_form")
        records.append(record)
    return records


def _evaluated(
    definition: dict[str, Any], workflow_id: str, version: int, records: list[dict[str, Any]]
) -> list[Execution]:
    workflow = compile_workflow(workflow_id, version, WorkflowDefinition.model_validate(definition))
    state = RoutingState()
    executions = []
    for record in records:
        event = {**record, "event_type": EVENT_TYPE_BY_SYMBOL[record["event_type"]].value, "trigger": "EVENT"}
        if workflow.triggers(event):
            executions.append(workflow.evaluate(event, state))
    return executions


def _pending(client: httpx.Client, workflow_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {
            "workflow_id": workflow_id,
            "status": "pending",
            "limit": 500,
            **({"cursor": cursor} if cursor else {}),
        }
        page = client.get("/api/v1/approvals", params=params).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _approvals(client: httpx.Client, workflow_id: str) -> list[dict[str, Any]]:
    page = client.get("/api/v1/approvals", params={"workflow_id": workflow_id, "limit": 500}).json()
    items: list[dict[str, Any]] = page["items"]
    return items


@pytest.fixture
def running(qualifier: WorkerProcess, orchestrator: WorkerProcess) -> Iterator[None]:
    yield


def test_tier_a_leads_wait_for_a_decision_and_resume_with_exactly_the_expected_outputs(
    org_factory: Any, settings: Settings, api_server: ApiServer, running: None
) -> None:
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    definition = lead_qualification_with_approval(timeout_hours=TIMEOUT_S / 3600)
    workflow = activate_workflow(admin, "LQ with approval", definition)
    approver_email = f"ann-{org_id}@example.com"
    approver = _session(settings, org, approver_email, ["approver"])
    viewer = _session(settings, org, f"vic-{org_id}@example.com", ["viewer"])

    records = _leads(org_id, 100)
    post_events(admin, records)
    evaluated = _evaluated(definition, workflow["id"], workflow["active_version"], records)
    paused = [e for e in evaluated if e.status is ExecutionStatus.AWAITING_APPROVAL]
    assert len(paused) >= 30, "enough tier A leads to split three ways"

    pending = wait_until(
        lambda: (found := _pending(approver, workflow["id"])) and len(found) == len(paused) and found,
        60,
        f"{len(paused)} approvals to open",
    )
    by_execution = {a["execution_id"]: a for a in pending}
    assert set(by_execution) == {e.execution_id for e in paused}
    one = approver.get(f"/api/v1/approvals/{pending[0]['id']}").json()
    assert one["lead"]["lead_id"] == one["lead_id"] and one["explanation"]["tier"] == "A"
    assert one["outcomes"]["on_approve"][0].startswith("update the lead in the CRM")
    assert "rejected-by-sales" in one["outcomes"]["on_reject"][0]
    assert "timeout branch" in one["outcomes"]["on_timeout"][0]

    refused = viewer.post(f"/api/v1/approvals/{pending[0]['id']}/approve", json={})
    assert refused.status_code == 403, refused.text
    not_named = _session(settings, org, f"ed-{org_id}@example.com", ["editor"])
    assert (
        not_named.post(f"/api/v1/approvals/{pending[0]['id']}/approve", json={})
        .json()["type"]
        .endswith("not-an-approver")
    )

    approve, reject = paused[0::3], paused[1::3]
    decisions: dict[str, tuple[Outcome, str]] = {}
    for execution in approve:
        answer = approver.post(f"/api/v1/approvals/{by_execution[execution.execution_id]['id']}/approve", json={})
        assert answer.status_code == 200, answer.text
        decisions[execution.execution_id] = (Outcome.APPROVED, "")
    for execution in reject:
        answer = approver.post(
            f"/api/v1/approvals/{by_execution[execution.execution_id]['id']}/reject", json={"comment": "not a fit"}
        )
        assert answer.status_code == 200, answer.text
        decisions[execution.execution_id] = (Outcome.REJECTED, "not a fit")
    twice = approver.post(
        f"/api/v1/approvals/{by_execution[approve[0].execution_id]['id']}/reject", json={"comment": "x"}
    )
    assert twice.status_code == 409 and twice.json()["approval_status"] == "approved"

    wait_until(
        lambda: all(a["resumed_at_ms"] is not None for a in _approvals(approver, workflow["id"])),
        TIMEOUT_S + 60,
        "every approval decided or timed out, and resumed",
    )
    final = {a["execution_id"]: a for a in _approvals(approver, workflow["id"])}
    timed_out = [e for e in paused if e.execution_id not in decisions]
    assert {final[e.execution_id]["status"] for e in timed_out} == {"timed_out"}

    expected_commands: dict[str, int] = {}
    """command id -> earliest moment it may exist (ms)"""
    expected_messages: dict[str, int] = {}
    compiled = compile_workflow(
        workflow["id"], workflow["active_version"], WorkflowDefinition.model_validate(definition)
    )
    for execution in evaluated:
        for command in execution.crm_commands:
            expected_commands[ids.crm_command_id(execution.execution_id, command.step)] = 0
        for notification in execution.notifications:
            expected_messages[ids.webhook_message_id(execution.execution_id, notification.step)] = 0
        if execution.status is not ExecutionStatus.AWAITING_APPROVAL:
            continue
        approval = final[execution.execution_id]
        suspension = Suspension.from_json(suspend(execution, approval["requested_at_ms"]).to_json())
        expected_messages[ids.webhook_message_id(execution.execution_id, f"{suspension.step}.requested")] = 0
        outcome, comment = decisions.get(execution.execution_id, (Outcome.TIMED_OUT, ""))
        resumed = resume(compiled, suspension, Resumption(outcome, approval["decided_at_ms"], "", comment), 0)
        for command in resumed.crm_commands:
            expected_commands[ids.crm_command_id(execution.execution_id, command.step)] = approval["decided_at_ms"]
        for notification in resumed.notifications:
            expected_messages[ids.webhook_message_id(execution.execution_id, notification.step)] = approval[
                "decided_at_ms"
            ]

    commands = read_topic(settings, topics.CRM_COMMANDS, key=org_id)
    assert sorted(c["command_id"] for c in commands) == sorted(expected_commands), "each expected command, once"
    early = [c["command_id"] for c in commands if c["created_at_ms"] < expected_commands[c["command_id"]]]
    assert not early, "no command of a paused execution before its decision"
    messages = read_topic(settings, topics.WEBHOOK_DELIVERIES, key=org_id)
    assert sorted(m["message_id"] for m in messages) == sorted(expected_messages)
    assert all(m["created_at_ms"] >= expected_messages[m["message_id"]] for m in messages)

    expected_timeline = {e.execution_id: ["evaluated"] for e in evaluated}
    for execution in paused:
        outcome = decisions.get(execution.execution_id, (Outcome.TIMED_OUT, ""))[0]
        expected_timeline[execution.execution_id] = ["evaluated", "awaiting_approval", outcome.value, "resumed"]

    def timelines() -> dict[str, list[str]]:
        page = admin.get("/api/v1/executions", params={"workflow_id": workflow["id"], "limit": 1000}).json()
        return {e["execution_id"]: [entry["what"] for entry in e["timeline"]] for e in page["items"]}

    wait_until(lambda: timelines() == expected_timeline, 30, "every execution's timeline in ClickHouse")
    approved_one, rejected_one, timed_out_one = approve[0], reject[0], timed_out[0]
    shown = admin.get(f"/api/v1/executions/{approved_one.execution_id}").json()
    assert [(e["step"], e["actor"]) for e in shown["timeline"]] == [
        ("", ""),
        ("4.0.0", ""),
        ("4.0.0", approver_email),
        ("4.0.0", ""),
    ]
    assert shown["status"] == "completed" and shown["timeline"][-1]["actions"] == ["crm_update", "webhook_notify"]
    rejected = admin.get(f"/api/v1/executions/{rejected_one.execution_id}").json()
    assert rejected["status"] == "rejected" and rejected["timeline"][2]["note"] == "not a fit"
    late = admin.get(f"/api/v1/executions/{timed_out_one.execution_id}").json()
    assert late["status"] == "completed" and late["timeline"][-1]["actions"] == ["add_tag", "create_task"]
    assert admin.get(f"/api/v1/workflows/{workflow['id']}/enrollments").json()["items"] == []


def _vp_leads(org_id: str, count: int, prefix: str = "") -> list[dict[str, Any]]:
    """Tier A leads (senior, mid-market, software, business email)."""
    records = []
    for n in range(count):
        record = lead_event(random.Random(n), org_id, n)
        record["event_id"] = f"{org_id}-{prefix}{n}"
        record["lead"].update(
            lead_id=f"{prefix}lead-{n}",
            email=f"buyer{n}@{prefix or 'acme'}.io",
            title="VP Sales",
            employees=800,
            industry="software",
        )
        records.append(record)
    return records


def test_a_version_activated_meanwhile_does_not_change_what_pending_approvals_resume(
    org_factory: Any, settings: Settings, running: None
) -> None:
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    first = lead_qualification_with_approval(properties={"lifecycle_stage": "lead"})
    workflow = activate_workflow(admin, "LQ pinned", first)
    approver = _session(settings, org, f"ann-{org_id}@example.com", ["approver"])
    post_events(admin, _vp_leads(org_id, 5))
    pending = wait_until(
        lambda: (found := _pending(approver, workflow["id"])) and len(found) == 5 and found, 60, "5 approvals"
    )
    second = lead_qualification_with_approval(properties={"lifecycle_stage": "sql"})
    assert admin.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": second}).status_code == 200
    assert admin.post(f"/api/v1/workflows/{workflow['id']}/activate").json()["active_version"] == 2
    for approval in pending:
        assert approver.post(f"/api/v1/approvals/{approval['id']}/approve", json={}).status_code == 200
    wait_until(
        lambda: all(a["resumed_at_ms"] for a in _approvals(approver, workflow["id"])), 60, "the approvals resumed"
    )
    updates = [c for c in read_topic(settings, topics.CRM_COMMANDS, key=org_id) if c["operation"] == "update_lead"]
    assert len(updates) == 5
    assert {c["properties"]["lifecycle_stage"] for c in updates} == {"lead"}, "resumed on version 1"
    executions = [e for e in read_topic(settings, topics.EXECUTIONS, key=org_id) if e["status"] == "completed"]
    assert {e["workflow_version"] for e in executions} == {1}


def test_a_manual_run_is_a_real_run_of_one_workflow_marked_manual(
    org_factory: Any, settings: Settings, running: None
) -> None:
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    workflow = activate_workflow(admin, "LQ", LEAD_QUALIFICATION)
    other = activate_workflow(admin, "never runs manually", {**LEAD_QUALIFICATION, "steps": [LOG]})
    seen = _vp_leads(org_id, 1, prefix="m")
    post_events(admin, seen)
    wait_until(lambda: len(read_topic(settings, topics.EXECUTIONS, key=org_id, quiet_s=0.5)) == 2, 30, "2 executions")

    unknown = admin.post(f"/api/v1/workflows/{workflow['id']}/runs", json={"lead_ids": ["nobody"]})
    assert unknown.status_code == 404 and unknown.json()["lead_ids"] == ["nobody"]
    fresh = {"lead_id": "walk-in", "email": "walk.in@initech.net", "title": "Head of Growth", "employees": 300}
    ran = admin.post(
        f"/api/v1/workflows/{workflow['id']}/runs",
        json={"leads": [fresh], "lead_ids": [seen[0]["lead"]["lead_id"]]},
    )
    assert ran.status_code == 202, ran.text
    event_ids = set(ran.json()["event_ids"])
    manual = wait_until(
        lambda: (
            [e for e in read_topic(settings, topics.EXECUTIONS, key=org_id, quiet_s=0.5) if e["event_id"] in event_ids]
            or None
        ),
        30,
        "the manual run's executions",
    )
    assert len(manual) == 2 and {e["trigger"] for e in manual} == {"manual"}
    assert {e["workflow_id"] for e in manual} == {workflow["id"]}, f"{other['id']} is not run"
    assert {e["lead_id"] for e in manual} == {"walk-in", seen[0]["lead"]["lead_id"]}, "re-run although enrolled"
    commands = {c["execution_id"] for c in read_topic(settings, topics.CRM_COMMANDS, key=org_id)}
    assert {e["execution_id"] for e in manual} <= commands, "with side effects"
    admin.post(f"/api/v1/workflows/{workflow['id']}/deactivate")
    refused = admin.post(f"/api/v1/workflows/{workflow['id']}/runs", json={"leads": [fresh]})
    assert refused.status_code == 409 and refused.json()["type"].endswith("not-active")


def test_an_inbox_message_that_cannot_be_handled_is_dead_lettered_and_the_rest_go_on(
    org_factory: Any, settings: Settings, running: None
) -> None:
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    workflow = activate_workflow(admin, "LQ after poison", lead_qualification_with_approval())
    approver = _session(settings, org, f"ann-{org_id}@example.com", ["approver"])
    inbox = topics.topic_name(topics.ORCHESTRATOR_INBOX, settings.topic_prefix)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(inbox, b"not avro at all", org_id.encode())
    assert producer.flush(30) == 0
    corrupt = {"kind": "SUSPENDED", "org_id": org_id, "execution_id": "ex-corrupt", "sent_at_ms": 1}
    produce_records(settings, topics.ORCHESTRATOR_INBOX, org_id, [{**corrupt, "suspension_json": "{not json"}])

    post_events(admin, _vp_leads(org_id, 1, prefix="p"))
    opened = wait_until(lambda: _pending(approver, workflow["id"]), 60, "the approval after the poison to open")
    assert approver.post(f"/api/v1/approvals/{opened[0]['id']}/approve", json={}).status_code == 200
    wait_until(
        lambda: any(
            c["operation"] == "update_lead" for c in read_topic(settings, topics.CRM_COMMANDS, key=org_id, quiet_s=0.5)
        ),
        60,
        "the approved execution to resume",
    )
    letters = [
        letter
        for letter in read_topic(settings, topics.EVENTS_DLQ, key=org_id)
        if letter["consumer_group"] == "drippulse-orchestrator"
    ]
    assert sorted(letter["error_kind"] for letter in letters) == ["decode", "orchestrate"]
    assert all(letter["source_topic"] == inbox for letter in letters)
    assert {letter["original_value"] for letter in letters if letter["error_kind"] == "decode"} == {b"not avro at all"}


def test_a_run_through_two_approvals_in_a_row_waits_for_each_and_completes(
    org_factory: Any, settings: Settings, running: None
) -> None:
    """Score, approval, approval, CRM update: the first decision resumes the run into the second
    approval of the same execution, which opens, is decided, and resumes the run to its end; and the
    orchestrator goes on acting afterwards (the second approval once stalled it for everyone)."""
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    approval = {"type": "approval", "approvers": ["role:approver"], "timeout_hours": 1}
    senior = {"id": "senior", "when": {"field": "lead.title", "op": "contains", "value": "vp"}, "points": 50}
    definition = {
        "trigger": {"event_types": ["lead.created"]},
        "steps": [{"type": "score", "rules": [senior]}, approval, approval, {"type": "action", "action": "crm_update"}],
    }
    workflow = activate_workflow(admin, "two approvals", definition)
    approver = _session(settings, org, f"ann-{org_id}@example.com", ["approver"])

    def pending_one() -> dict[str, Any]:
        found = wait_until(lambda: _pending(approver, workflow["id"]), 60, "an approval to open")
        assert len(found) == 1
        only: dict[str, Any] = found[0]
        return only

    post_events(admin, _vp_leads(org_id, 1, prefix="two"))
    first = pending_one()
    assert approver.post(f"/api/v1/approvals/{first['id']}/approve", json={}).status_code == 200
    second = pending_one()
    assert (first["step"], second["step"], second["execution_id"]) == ("1", "2", first["execution_id"])
    assert approver.post(f"/api/v1/approvals/{second['id']}/approve", json={}).status_code == 200
    wait_until(
        lambda: all(a["resumed_at_ms"] for a in _approvals(approver, workflow["id"])), 60, "both approvals resumed"
    )
    updates = [
        c["operation"]
        for c in read_topic(settings, topics.CRM_COMMANDS, key=org_id, quiet_s=0.5)
        if c["execution_id"] == first["execution_id"]
    ]
    assert updates == ["update_lead"], "the step after the second approval ran, once"
    expected = [
        ("evaluated", ""),
        ("awaiting_approval", "1"),
        ("approved", "1"),
        ("resumed", "1"),
        ("awaiting_approval", "2"),
        ("approved", "2"),
        ("resumed", "2"),
    ]

    def shown() -> dict[str, Any]:
        execution: dict[str, Any] = admin.get(f"/api/v1/executions/{first['execution_id']}").json()
        return execution

    wait_until(
        lambda: [(e["what"], e["step"]) for e in shown()["timeline"]] == expected, 30, "the execution's timeline"
    )
    assert shown()["status"] == "completed"
    assert admin.get(f"/api/v1/workflows/{workflow['id']}/enrollments").json()["items"] == []
    post_events(admin, _vp_leads(org_id, 1, prefix="after"))
    assert pending_one()["execution_id"] != first["execution_id"], "the orchestrator goes on"
