"""The orchestrator killed with approvals pending and waits running: after a restart nothing is lost
and nothing fires twice. Waits end on time or early on the workflow's exit condition, also when the
exit reached the inbox while the orchestrator was down and the wait fell due meanwhile."""

from __future__ import annotations

import time
from typing import Any

import pytest

from drippulse.settings import Settings
from streams import topics
from tests.integration.helpers import activate_workflow, post_events
from tests.integration.test_orchestrator import _approvals, _pending, _session, _vp_leads
from tests.stack import WorkerProcess, read_topic, wait_until

pytestmark = pytest.mark.stack
WAIT_S = 60
LEADS = 20
EXITING = 5


def _approval_first() -> dict[str, Any]:
    return {
        "trigger": {"event_types": ["lead.created"]},
        "steps": [
            {"type": "approval", "approvers": ["role:approver"], "timeout_hours": 1},
            {"type": "action", "action": "crm_update"},
            {"type": "action", "action": "webhook_notify", "event_type": "lead.approved"},
        ],
    }


def _wait_first() -> dict[str, Any]:
    return {
        "trigger": {"event_types": ["lead.created"]},
        "steps": [
            {"type": "wait", "hours": WAIT_S / 3600},
            {"type": "action", "action": "add_tag", "tag": "nurtured"},
        ],
        "exit_condition": {"field": "lead.attributes.stage", "op": "eq", "value": "customer"},
    }


def test_a_killed_orchestrator_loses_nothing_and_fires_nothing_twice(
    org_factory: Any, settings: Settings, qualifier: WorkerProcess, orchestrator: WorkerProcess
) -> None:
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    approvals_workflow = activate_workflow(admin, "approve first", _approval_first())
    waits_workflow = activate_workflow(admin, "wait first", _wait_first())
    approver = _session(settings, org, f"ann-{org_id}@example.com", ["approver"])
    leads = _vp_leads(org_id, LEADS, prefix="r")
    post_events(admin, leads)

    pending = wait_until(
        lambda: (found := _pending(approver, approvals_workflow["id"])) and len(found) == LEADS and found,
        60,
        "the approvals to open",
    )
    enrolled = wait_until(
        lambda: (
            (page := admin.get(f"/api/v1/workflows/{waits_workflow['id']}/enrollments").json()["items"])
            and len(page) == LEADS
            and page
        ),
        60,
        "every lead enrolled in the wait",
    )
    assert {e["status"] for e in enrolled} == {"waiting"} and {e["paused_step"] for e in enrolled} == {"0"}
    assert all(e["due_at_ms"] - e["since_ms"] == WAIT_S * 1000 for e in enrolled)

    orchestrator.kill()
    commands_before = read_topic(settings, topics.CRM_COMMANDS, key=org_id)
    tagged_before = {c["lead_id"] for c in commands_before if c["operation"] == "add_tag"}
    still_waiting = [lead for lead in leads if lead["lead"]["lead_id"] not in tagged_before]
    assert len(still_waiting) >= EXITING, "the waits outlast the set-up; raise WAIT_S on a slower machine"
    converted = [
        {
            **lead,
            "event_id": f"{lead['event_id']}-converted",
            "event_type": "LEAD_UPDATED",
            "lead": {**lead["lead"], "attributes": {"stage": "customer"}},
        }
        for lead in still_waiting[:EXITING]
    ]
    post_events(admin, converted)
    assert sorted(a["id"] for a in _pending(approver, approvals_workflow["id"])) == sorted(a["id"] for a in pending)
    wait_until(
        lambda: (
            len([m for m in read_topic(settings, topics.ORCHESTRATOR_INBOX, key=org_id) if m["kind"] == "EXIT"])
            == EXITING
        ),
        60,
        "the exits on the inbox",
    )
    last_due_ms = max(e["due_at_ms"] for e in enrolled)
    wait_until(lambda: time.time() * 1000 > last_due_ms, WAIT_S + 5, "the waits to fall due while it is down")
    orchestrator.start()

    for approval in pending:
        assert approver.post(f"/api/v1/approvals/{approval['id']}/approve", json={}).status_code == 200
    wait_until(
        lambda: all(a["resumed_at_ms"] for a in _approvals(approver, approvals_workflow["id"])),
        90,
        "every approval resumed after the restart",
    )
    wait_until(
        lambda: not admin.get(f"/api/v1/workflows/{waits_workflow['id']}/enrollments").json()["items"],
        WAIT_S + 90,
        "every wait to end",
    )
    commands = read_topic(settings, topics.CRM_COMMANDS, key=org_id)
    command_ids = [c["command_id"] for c in commands]
    assert len(command_ids) == len(set(command_ids)), "no command twice"
    tags = [c for c in commands if c["operation"] == "add_tag"]
    exited = {lead["lead"]["lead_id"] for lead in converted}
    assert len(tags) == LEADS - EXITING and not exited & {c["lead_id"] for c in tags}, "converted leads left"
    assert len([c for c in commands if c["operation"] == "update_lead"]) == LEADS
    messages = [m["message_id"] for m in read_topic(settings, topics.WEBHOOK_DELIVERIES, key=org_id)]
    assert len(messages) == len(set(messages)) == 3 * LEADS, "requested, decided and lead.approved, once each"
    statuses = [e["status"] for e in read_topic(settings, topics.EXECUTIONS, key=org_id)]
    assert statuses.count("exited") == EXITING
