"""Taking a decision against the real PostgreSQL: who may decide, what is refused, and the
orchestrator's side of the same rows (an exit racing a person, the decision poll's window)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from drippulse.settings import Settings
from processors.compiler import compile_workflow
from processors.model import WorkflowDefinition
from processors.orchestration import Suspension
from processors.templates import lead_qualification_with_approval
from streams.orchestrator.approval_ledger import ApprovalLedger, Settlement, WaitOutcome
from tests import control_plane
from tests.control_plane import NOBODYS_PARTITION
from tests.integration.helpers import activate_workflow
from tests.integration.test_orchestrator import _session
from tests.stack import ApiServer
from tests.unit.test_orchestration import paused

pytestmark = pytest.mark.stack


def _workflow(org: dict[str, Any]) -> str:
    return str(activate_workflow(org["client"], "LQ with approval", lead_qualification_with_approval())["id"])


def _row(settings: Settings, approval_id: str) -> tuple[str, str]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT status, execution_id FROM approvals WHERE id = :id"), {"id": approval_id}
            ).one()
            return row[0], row[1]
    finally:
        engine.dispose()


def test_an_approver_named_with_capital_letters_in_a_stored_approval_can_decide(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    email = f"ann-{org['org_id']}@example.com"
    approval_id = control_plane.open_approval(settings, org["org_id"], _workflow(org), [email.replace("ann", "Ann")])
    person = _session(settings, org, email, ["approver"])
    answer = person.post(f"/api/v1/approvals/{approval_id}/approve", json={})
    assert answer.status_code == 200, answer.text


def test_a_decision_whose_execution_nothing_holds_is_refused_instead_of_swallowed(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    approval_id = control_plane.open_approval(settings, org["org_id"], _workflow(org), ["role:approver"], held=False)
    approver = _session(settings, org, f"ann-{org['org_id']}@example.com", ["approver"])
    answer = approver.post(f"/api/v1/approvals/{approval_id}/approve", json={})
    assert answer.status_code == 409 and answer.json()["type"].endswith("execution-not-held"), answer.text
    assert _row(settings, approval_id)[0] == "pending", "nothing was decided"


def test_an_exit_takes_a_pending_approval_and_loses_to_a_persons_decision(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    workflow_id = _workflow(org)
    approver = _session(settings, org, f"ann-{org['org_id']}@example.com", ["approver"])
    ledger = ApprovalLedger(create_engine(settings.database_url))

    decided = control_plane.open_approval(settings, org["org_id"], workflow_id, ["role:approver"])
    assert approver.post(f"/api/v1/approvals/{decided}/approve", json={}).status_code == 200
    assert ledger.cancel(decided, 1_800_000_000_000, "event e-1") == "approved", "the person decided first"
    assert _row(settings, decided)[0] == "approved"

    exited = control_plane.open_approval(settings, org["org_id"], workflow_id, ["role:approver"])
    assert ledger.cancel(exited, 1_800_000_000_000, "event e-2") == "cancelled"
    assert ledger.cancel(exited, 1_800_000_000_000, "event e-2") == "cancelled", "taken already: the same answer"
    refused = approver.post(f"/api/v1/approvals/{exited}/approve", json={})
    assert refused.status_code == 409 and refused.json()["approval_status"] == "cancelled"
    audit = org["client"].get("/api/v1/audit_log", params={"resource_id": exited}).json()["items"]
    assert [(entry["action"], entry["after"]) for entry in audit] == [
        ("approval.cancel", {"status": "cancelled", "reason": "event e-2"})
    ]


def test_decisions_behind_a_window_full_of_deferred_ones_are_still_found(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    workflow_id = _workflow(org)
    approver = _session(settings, org, f"ann-{org['org_id']}@example.com", ["approver"])
    ids = [control_plane.open_approval(settings, org["org_id"], workflow_id, ["role:approver"]) for _ in range(3)]
    for approval_id in ids:
        assert approver.post(f"/api/v1/approvals/{approval_id}/approve", json={}).status_code == 200
    executions = [_row(settings, approval_id)[1] for approval_id in ids]
    engine = create_engine(settings.database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE approvals SET partition = 7777 WHERE id = ANY(:ids)"), {"ids": ids})
    ledger = ApprovalLedger(engine)
    assert [d.execution_id for d in ledger.undelivered([7777], 2)] == executions[:2]
    found = ledger.undelivered([7777], 2, deferred=executions[:2])
    assert [d.execution_id for d in found] == executions[2:], "the oldest two failing must not hide the third"


def test_the_first_outcome_taken_for_a_wait_is_the_one_every_later_try_resumes_with(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    definition = {"trigger": {"event_types": ["lead.created"]}, "steps": [{"type": "wait", "hours": 1}]}
    workflow = compile_workflow("wf", 1, WorkflowDefinition.model_validate(definition))
    _, paused_at = paused(workflow)
    execution = {**paused_at.execution, "org_id": org["org_id"]}
    suspension = Suspension(execution, paused_at.context, "0", "wait", paused_at.due_at_ms)
    ledger = ApprovalLedger(create_engine(settings.database_url))
    execution_id = suspension.execution_id
    ledger.settle(Settlement({execution_id: (NOBODYS_PARTITION, suspension)}))
    due = WaitOutcome(execution_id, "0", "wait_elapsed", suspension.due_at_ms, "")
    exit_ = WaitOutcome(execution_id, "0", "exited", suspension.due_at_ms + 1, "event e")
    assert ledger.take_waits([due]) == {execution_id: due}
    assert ledger.take_waits([exit_]) == {execution_id: due}, "a retry after a crash resumes as the first try did"
    ledger.settle(Settlement({execution_id: (NOBODYS_PARTITION, suspension)}))
    assert ledger.take_waits([exit_]) == {execution_id: due}, "held again at the same step: the outcome stays"
    later = Suspension(suspension.execution, suspension.context, "1", "approval", suspension.due_at_ms)
    ledger.settle(Settlement({execution_id: (NOBODYS_PARTITION, later)}))
    assert ledger.take_waits([exit_]) == {}, "not held at that step any more"
    ledger.settle(Settlement({execution_id: (NOBODYS_PARTITION, None)}))
    assert ledger.held_executions([execution_id]) == {}
