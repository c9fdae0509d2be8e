"""Taking a decision against the real PostgreSQL: who may decide, what is refused, and the
orchestrator's side of the same rows (an exit racing a person, the decision poll's window)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from drippulse.settings import Settings
from processors.compiler import compile_workflow
from processors.model import WorkflowDefinition
from processors.orchestration import Outcome, Resumption, Suspension, resume, suspend
from processors.routing import RoutingState
from processors.templates import lead_qualification_with_approval
from streams.clock import now_ms
from streams.orchestrator.approval_ledger import ApprovalLedger, Fenced, Settlement, WaitOutcome
from streams.state.control_plane import connect
from tests import control_plane
from tests.control_plane import NOBODYS_PARTITION
from tests.integration.helpers import activate_workflow
from tests.integration.test_orchestrator import _session
from tests.stack import ApiServer
from tests.unit.test_orchestration import paused

pytestmark = pytest.mark.stack

INBOX = "ledger-test.drip.orchestrator.inbox"
"""An inbox no orchestrator of the session consumes: the ledger's partitions here are this test's."""
TWO_APPROVALS: dict[str, Any] = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [
        {"type": "approval", "approvers": ["role:approver"], "timeout_hours": 1},
        {"type": "approval", "approvers": ["role:approver"], "timeout_hours": 1},
        {"type": "action", "action": "crm_update"},
    ],
}


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
    ledger = ApprovalLedger(create_engine(settings.database_url), INBOX)

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
        connection.execute(
            text("UPDATE approvals SET inbox = :inbox, partition = 7777 WHERE id = ANY(:ids)"),
            {"ids": ids, "inbox": INBOX},
        )
    ledger = ApprovalLedger(engine, INBOX)
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
    ledger = ApprovalLedger(create_engine(settings.database_url), INBOX)
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


def _paused(org_id: str, workflow_id: str, definition: dict[str, Any], lead_id: str) -> Suspension:
    """A run of the org's workflow paused now, as the qualifier hands it over."""
    workflow = compile_workflow(workflow_id, 1, WorkflowDefinition.model_validate(definition))
    at = now_ms()
    lead = {"lead_id": lead_id, "email": f"{lead_id}@acme.io"}
    event = {"event_id": f"e-{lead_id}", "org_id": org_id, "event_type": "lead.created", "occurred_at_ms": at}
    return Suspension.from_json(suspend(workflow.evaluate({**event, "lead": lead}, RoutingState()), at).to_json())


def test_a_second_approval_of_the_same_execution_opens_is_decided_and_resumes(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    """The turn that resumes the first approval pauses the run at the second: it opens the second
    approval of the same execution and marks only the first resumed, so the second is decided and
    found like any other."""
    org = org_factory()
    workflow_id = str(activate_workflow(org["client"], "two approvals", TWO_APPROVALS)["id"])
    first = _paused(org["org_id"], workflow_id, TWO_APPROVALS, "l-2")
    at, execution_id, partition = now_ms(), first.execution_id, 7778
    ledger = ApprovalLedger(create_engine(settings.database_url), INBOX)
    approver = _session(settings, org, f"ann-{org['org_id']}@example.com", ["approver"])
    ledger.settle(Settlement({execution_id: (partition, first)}, [(first, partition, at)]))
    assert approver.post(f"/api/v1/approvals/{first.approval_id}/approve", json={}).status_code == 200
    assert [d.approval_id for d in ledger.undelivered([partition], 10)] == [first.approval_id]

    workflow = compile_workflow(workflow_id, 1, WorkflowDefinition.model_validate(TWO_APPROVALS))
    resumed = resume(workflow, first, Resumption(Outcome.APPROVED, at, "ann"), at)
    second = Suspension.from_json(suspend(resumed, at).to_json())
    assert (second.execution_id, second.step) == (execution_id, "1")
    ledger.settle(Settlement({execution_id: (partition, second)}, [(second, partition, at)], [first.approval_id]))
    assert ledger.undelivered([partition], 10) == [], "the first resumed, the second not decided yet"
    refused = approver.post(f"/api/v1/approvals/{first.approval_id}/approve", json={})
    assert refused.status_code == 409 and refused.json()["approval_status"] == "approved"
    answer = approver.post(f"/api/v1/approvals/{second.approval_id}/approve", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["resumed_at_ms"] is None and answer.json()["execution_id"] == execution_id
    assert [d.approval_id for d in ledger.undelivered([partition], 10)] == [second.approval_id]

    ledger.settle(Settlement({execution_id: (partition, None)}, [], [second.approval_id]))
    assert ledger.undelivered([partition], 10) == []
    listed = approver.get("/api/v1/approvals", params={"workflow_id": workflow_id}).json()["items"]
    assert sorted((a["step"], a["status"], a["resumed_at_ms"] is not None) for a in listed) == [
        ("0", "approved", True),
        ("1", "approved", True),
    ]


def test_a_settle_of_a_partition_another_process_took_over_since_writes_nothing(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    workflow_id = str(activate_workflow(org["client"], "two approvals", TWO_APPROVALS)["id"])
    suspension = _paused(org["org_id"], workflow_id, TWO_APPROVALS, "l-3")
    execution_id, partition, at = suspension.execution_id, 7779, now_ms()
    engine = create_engine(settings.database_url)
    first, second = ApprovalLedger(engine, INBOX), ApprovalLedger(engine, INBOX)
    mine = first.take_over([partition], [], at)
    first.settle(Settlement({execution_id: (partition, suspension)}, [(suspension, partition, at)], generations=mine))
    theirs = second.take_over([partition], [], at)
    assert theirs[partition] == mine[partition] + 1
    second.settle(Settlement({execution_id: (partition, None)}, generations=theirs))
    with pytest.raises(Fenced) as fenced:
        first.settle(Settlement({execution_id: (partition, suspension)}, generations=mine))
    assert fenced.value.partitions == {partition}
    assert first.held_executions([execution_id]) == {}, "the new owner's release stands"


def test_an_orchestrator_group_of_another_inbox_neither_fences_nor_reads_what_this_one_holds(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    """Deployments sharing a broker by topic prefixes may share PostgreSQL: another group's takeover
    of its partition with the same number must not fence this group's turns, and neither its held
    executions nor its decisions are the other's."""
    org = org_factory()
    workflow_id = str(activate_workflow(org["client"], "two approvals", TWO_APPROVALS)["id"])
    suspension = _paused(org["org_id"], workflow_id, TWO_APPROVALS, "l-5")
    execution_id, partition, at = suspension.execution_id, 7782, now_ms()
    engine = create_engine(settings.database_url)
    ours, theirs = ApprovalLedger(engine, INBOX), ApprovalLedger(engine, "other-deployment." + INBOX)
    mine = ours.take_over([partition], [], at)
    theirs.take_over([partition], [], at)
    ours.settle(Settlement({execution_id: (partition, suspension)}, [(suspension, partition, at)], generations=mine))
    assert ours.held([partition]) == {execution_id: (partition, suspension)}, "not fenced by the other group"
    assert theirs.held([partition]) == {}
    approver = _session(settings, org, f"ann-{org['org_id']}@example.com", ["approver"])
    assert approver.post(f"/api/v1/approvals/{suspension.approval_id}/approve", json={}).status_code == 200
    assert [d.approval_id for d in ours.undelivered([partition], 10)] == [suspension.approval_id]
    assert theirs.undelivered([partition], 10) == [], "another group never resumes this group's decision"


def test_rows_written_before_inboxes_were_named_are_claimed_by_the_first_takeover_of_their_partition(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    org = org_factory()
    workflow_id = str(activate_workflow(org["client"], "two approvals", TWO_APPROVALS)["id"])
    suspension = _paused(org["org_id"], workflow_id, TWO_APPROVALS, "l-6")
    execution_id, partition, at = suspension.execution_id, 7783, now_ms()
    engine = create_engine(settings.database_url)
    ledger = ApprovalLedger(engine, INBOX)
    ledger.settle(Settlement({execution_id: (partition, suspension)}, [(suspension, partition, at)]))
    with engine.begin() as connection:
        for table in ("held_executions", "approvals"):
            connection.execute(text(f"UPDATE {table} SET inbox = NULL WHERE execution_id = :id"), {"id": execution_id})
    assert ledger.held([partition]) == {}, "unnamed: nobody's until a takeover"
    ledger.take_over([partition], [], at)
    assert ledger.held([partition]) == {execution_id: (partition, suspension)}
    with engine.connect() as connection:
        assert (
            connection.execute(
                text("SELECT inbox FROM approvals WHERE id = :id"), {"id": suspension.approval_id}
            ).scalar()
            == INBOX
        )


def test_every_takeover_adopts_what_only_a_changelog_held_and_never_what_postgresql_released(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    """A process of an older build held the partition after this build took it over once: what it
    held in its changelog only is adopted by the next takeover. A changelog entry of an execution
    PostgreSQL released (the tombstone lost to a crash) is not."""
    org = org_factory()
    workflow_id = str(activate_workflow(org["client"], "two approvals", TWO_APPROVALS)["id"])
    suspension = _paused(org["org_id"], workflow_id, TWO_APPROVALS, "l-4")
    execution_id, partition, at = suspension.execution_id, 7780, now_ms()
    ledger = ApprovalLedger(create_engine(settings.database_url), INBOX)
    ledger.take_over([partition], [], at)
    ledger.take_over([partition], [(partition, suspension)], at)
    assert ledger.held_executions([execution_id]) == {execution_id: (partition, suspension)}
    assert _row(settings, suspension.approval_id) == ("pending", execution_id), "its approval opened"
    ledger.settle(Settlement({execution_id: (partition, None)}))
    ledger.take_over([partition], [(partition, suspension)], at)
    assert ledger.held_executions([execution_id]) == {}, "released: never adopted back"


def test_a_row_postgresql_refuses_leaves_the_leads_data_out_of_the_error(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    """The orchestrator logs why a turn failed; the statement's parameters (the lead, in the
    suspension) must not be in it."""
    org = org_factory()
    workflow_id = str(activate_workflow(org["client"], "two approvals", TWO_APPROVALS)["id"])
    paused_in_org = _paused(org["org_id"], workflow_id, TWO_APPROVALS, "l-secret")
    execution = {**paused_in_org.execution, "org_id": "org_that_does_not_exist"}
    suspension = Suspension(execution, paused_in_org.context, "0", "approval", paused_in_org.due_at_ms)
    ledger = ApprovalLedger(connect(settings.database_url), INBOX)
    with pytest.raises(IntegrityError) as refused:
        ledger.settle(Settlement({suspension.execution_id: (7781, suspension)}))
    assert "l-secret@acme.io" not in str(refused.value)
