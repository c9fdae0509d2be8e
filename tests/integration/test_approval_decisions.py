"""Taking a decision against the real PostgreSQL: who may decide, what is refused, and the
orchestrator's side of the same rows (an exit racing a person, the decision poll's window)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from drippulse.settings import Settings
from processors.templates import lead_qualification_with_approval
from streams.orchestrator.approval_ledger import ApprovalLedger
from tests import control_plane
from tests.integration.helpers import activate_workflow
from tests.integration.test_orchestrator import _session
from tests.stack import ApiServer

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
