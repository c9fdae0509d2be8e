"""What the orchestrator must not lose when a store fails or a process dies at the wrong moment, one
scenario each (the property in test_orchestrator_signals.py interleaves them all). No I/O: the
stores are the fakes of orchestrator_fakes, which mirror the real ones' conditional updates."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processors.compiler import CompiledWorkflow, compile_workflow
from processors.model import WorkflowDefinition
from processors.orchestration import Suspension, suspend
from processors.routing import RoutingState
from streams.orchestrator.app import Recovered, TimerGuard
from streams.orchestrator.approval_ledger import Fenced, Settlement
from streams.orchestrator.orchestrator import UNAVAILABLE, Effects, Held, Orchestrator, Signal
from streams.orchestrator.turns import until_it_holds
from tests.unit.orchestrator_fakes import Crash, Faults, Ledger, Releases, Table, Versions, unavailable
from tests.unit.test_orchestration import T0, event
from tests.unit.test_orchestrator_recovery import orchestrator

NOW = T0 + 60_000
"""A minute after the runs paused: before any timeout."""


def _workflow(workflow_id: str, steps: list[dict[str, Any]]) -> CompiledWorkflow:
    definition = {"trigger": {"event_types": ["lead.created"]}, "steps": steps}
    return compile_workflow(workflow_id, 3, WorkflowDefinition.model_validate(definition))


APPROVAL = _workflow("wf-a", [{"type": "approval", "timeout_hours": 1}, {"type": "action", "action": "crm_update"}])
WAIT = _workflow("wf-w", [{"type": "wait", "hours": 1}, {"type": "action", "action": "add_tag", "tag": "t"}])
TWO_APPROVALS = _workflow(
    "wf-aa",
    [
        {"type": "approval", "timeout_hours": 1},
        {"type": "approval", "timeout_hours": 1},
        {"type": "action", "action": "crm_update"},
    ],
)


class Stores:
    """The stores, and an orchestrator process that recovered its partition as the app's does first."""

    def __init__(self, table: Table | None = None) -> None:
        self.faults = Faults()
        self.ledger = Ledger(self.faults)
        self.releases = Releases(self.faults)
        self.table = table or Table()
        self.engine = self.started()
        self.engine.recover(self.table, [0], NOW)

    def started(self) -> Orchestrator:
        engine = orchestrator(Versions(APPROVAL, WAIT, TWO_APPROVALS), self.ledger)
        engine._releases = self.releases  # the same Redis for every process
        return engine

    def turn(self, *signals: Signal, now: int = NOW) -> Effects:
        effects = self.engine.handle(signals, self.table, now)
        self.engine.settle_stores(effects)
        self.engine.settle_table(effects)
        self.faults.point("after", "table")
        self.table.flush()
        return effects

    def restart(self, changelog_kept: bool = True) -> None:
        self.table = self.table.restarted(changelog_kept)
        self.engine = self.started()
        self.engine.recover(self.table, [0], NOW)


def suspended(workflow: Any, lead: str = "l1") -> tuple[Signal, Suspension]:
    """A run of `workflow` paused for the lead's own event (so each lead's is a distinct execution)."""
    execution = workflow.evaluate({**event(lead_id=lead), "event_id": f"e-{lead}"}, RoutingState())
    suspension = Suspension.from_json(suspend(execution, T0).to_json())
    signal = Signal(0, "SUSPENDED", "o", execution.execution_id, suspension.to_json().decode())
    return signal, suspension


def decided(suspension: Suspension, outcome: str = "approved") -> Signal:
    return Signal(
        0,
        "DECIDED",
        "o",
        suspension.execution_id,
        outcome=outcome,
        actor="ann@acme.io",
        outcome_at_ms=NOW,
        approval_id=suspension.approval_id,
    )


def test_a_suspension_held_before_its_approval_was_opened_opens_it_when_it_comes_again() -> None:
    """The earlier order wrote the table first: a crash before PostgreSQL left the execution held with
    no approval, and the message handled again skipped it as held. Held or not, it opens."""
    stores = Stores()
    signal, suspension = suspended(APPROVAL)
    stores.table.hold(0, suspension.execution_id, Held(0, suspension).to_json())
    stores.turn(signal)
    assert stores.ledger.opened == [suspension.approval_id]
    assert suspension.execution_id in stores.ledger.held_rows


def test_an_approval_is_opened_whatever_point_of_its_turn_a_crash_stops() -> None:
    for point in ("before:settle", "after:settle", "after:table"):
        stores = Stores()
        signal, suspension = suspended(APPROVAL)
        stores.faults.crash_at = point
        with pytest.raises(Crash):
            stores.turn(signal)
        stores.restart()
        stores.turn(signal)
        assert stores.ledger.opened == [suspension.approval_id], point
        assert stores.table.get(suspension.execution_id) is not None, point


def test_a_release_redis_refused_is_written_when_the_turn_is_tried_again() -> None:
    stores = Stores()
    signal, suspension = suspended(WAIT)
    stores.turn(signal)
    stores.faults.down.add("redis")
    due = Signal(0, "DUE", "o", suspension.execution_id, outcome="wait_elapsed", outcome_at_ms=suspension.due_at_ms)
    effects = stores.engine.handle([due], stores.table, suspension.due_at_ms)
    with pytest.raises(UNAVAILABLE):
        stores.engine.settle_stores(effects)
    assert suspension.execution_id in stores.ledger.held_rows, "nothing is settled before the release"
    stores.faults.down.clear()
    stores.engine.settle_stores(effects)
    assert list(stores.releases.released.values()) == [suspension.execution_id]
    assert not stores.ledger.held_rows


def test_a_release_lost_to_a_crash_after_redis_is_written_again() -> None:
    stores = Stores()
    signal, suspension = suspended(WAIT)
    stores.turn(signal)
    due = Signal(0, "DUE", "o", suspension.execution_id, outcome="wait_elapsed", outcome_at_ms=suspension.due_at_ms)
    stores.faults.crash_at = "before:settle"
    with pytest.raises(Crash):
        stores.turn(due, now=suspension.due_at_ms)
    stores.releases.released.clear()
    stores.restart()
    assert len(stores.engine.due) == 1, "still due"
    stores.turn(due, now=suspension.due_at_ms)
    assert list(stores.releases.released.values()) == [suspension.execution_id]


def test_a_decision_for_an_execution_the_table_does_not_hold_is_never_marked_resumed() -> None:
    stores = Stores()
    signal, suspension = suspended(APPROVAL)
    stores.turn(signal)
    assert stores.ledger.decide(suspension.approval_id, "approved", "ann@acme.io", NOW) == 200
    empty = Table()
    effects = stores.engine.handle([decided(suspension)], empty, NOW)
    assert effects.resumed == 1, "PostgreSQL holds it: the table lagged, the decision resumes it"

    stores.ledger.held_rows.clear()
    effects = stores.engine.handle([decided(suspension)], empty, NOW)
    assert effects.resumed_approvals == [] and effects.resumed == 0, "held nowhere: not marked resumed"
    assert stores.engine.deferred(NOW + 1) == [suspension.execution_id], "left out of the poll, and logged"


def test_no_decision_or_due_time_is_acted_on_for_a_partition_not_recovered_in_this_rebalance() -> None:
    app: Any = type("App", (), {"rebalancing_count": 1})()
    recovered = Recovered(app)
    assert recovered.partitions() == frozenset()
    recovered.recovered(1, [0, 1])
    assert recovered.partitions() == {0, 1}
    app.rebalancing_count = 2
    assert recovered.partitions() == frozenset(), "a rebalance started: nothing until it recovered"
    recovered.recovered(2, [1, 2])
    assert recovered.partitions() == {1, 2}


def test_an_exit_that_loses_to_a_persons_decision_leaves_the_execution_to_that_decision() -> None:
    stores = Stores()
    signal, suspension = suspended(APPROVAL)
    stores.turn(signal)
    assert stores.ledger.decide(suspension.approval_id, "approved", "ann@acme.io", NOW) == 200
    exit_ = Signal(0, "EXIT", "o", suspension.execution_id, outcome="exited", note="event e", outcome_at_ms=NOW)
    assert stores.turn(exit_).resumed == 0, "the person decided first"
    effects = stores.turn(decided(suspension))
    assert effects.resumed == 1 and stores.ledger.approvals[suspension.approval_id].resumed
    assert b"approval:approved" in b"".join(value for _, _, value in effects.outputs)


def test_an_exit_that_takes_the_approval_ends_the_execution_and_a_late_decision_is_refused() -> None:
    stores = Stores()
    signal, suspension = suspended(APPROVAL)
    stores.turn(signal)
    exit_ = Signal(0, "EXIT", "o", suspension.execution_id, outcome="exited", note="event e", outcome_at_ms=NOW)
    assert stores.turn(exit_).resumed == 1
    row = stores.ledger.approvals[suspension.approval_id]
    assert (row.status, row.comment, row.resumed) == ("cancelled", "event e", True)
    assert stores.ledger.decide(suspension.approval_id, "approved", "ann@acme.io", NOW) == 409


def test_paused_executions_survive_a_broker_that_lost_the_changelog() -> None:
    stores = Stores()
    approval, held_approval = suspended(APPROVAL, "l1")
    wait, held_wait = suspended(WAIT, "l2")
    stores.turn(approval, wait)
    stores.restart(changelog_kept=False)
    assert {e for e, _ in stores.table.entries()} == {held_approval.execution_id, held_wait.execution_id}
    assert stores.ledger.decide(held_approval.approval_id, "approved", "ann@acme.io", NOW) == 200
    assert stores.turn(decided(held_approval)).resumed == 1
    due = Signal(0, "DUE", "o", held_wait.execution_id, outcome="wait_elapsed", outcome_at_ms=held_wait.due_at_ms)
    assert stores.turn(due, now=held_wait.due_at_ms).resumed == 1
    assert not stores.ledger.held_rows and not stores.table.rows


def test_an_execution_postgresql_released_is_never_adopted_back_from_a_changelog() -> None:
    _, suspension = suspended(APPROVAL)
    table = Table()
    table.hold(0, suspension.execution_id, Held(0, suspension).to_json())
    table.flush()
    stores = Stores(table)
    assert suspension.execution_id in stores.ledger.held_rows and stores.table.rows
    stores.ledger.settle(Settlement({suspension.execution_id: (0, None)}))
    stores.restart()
    assert not stores.table.rows, "the changelog's tombstone was lost; PostgreSQL remembers the release"
    assert not stores.ledger.held_rows


def test_a_suspension_only_an_older_build_held_is_adopted_whenever_its_partition_comes_back() -> None:
    """An older build's process held the partition for a while after this build had taken it over,
    and held a suspension in its changelog only: the next takeover adopts it, never tombstones it."""
    stores = Stores()
    _, suspension = suspended(APPROVAL)
    stores.table.hold(0, suspension.execution_id, Held(0, suspension).to_json())
    stores.table.flush()
    stores.restart()
    assert suspension.execution_id in stores.ledger.held_rows
    assert stores.table.get(suspension.execution_id) is not None
    assert stores.ledger.opened == [suspension.approval_id]


def test_a_run_through_two_approvals_opens_the_second_and_resumes_from_each() -> None:
    stores = Stores()
    signal, first = suspended(TWO_APPROVALS)
    stores.turn(signal)
    assert stores.ledger.decide(first.approval_id, "approved", "ann@acme.io", NOW) == 200
    stores.turn(decided(first))
    second = stores.ledger.held_rows[first.execution_id][1]
    assert (second.step, second.execution_id) == ("1", first.execution_id)
    rows = stores.ledger.approvals
    assert rows[first.approval_id].resumed and not rows[second.approval_id].resumed
    assert stores.ledger.undelivered([0], 10) == [], "the second is pending, not resumed"
    assert stores.ledger.decide(first.approval_id, "approved", "ann@acme.io", NOW) == 409
    assert stores.ledger.decide(second.approval_id, "rejected", "ann@acme.io", NOW) == 200
    effects = stores.turn(decided(second, "rejected"))
    assert effects.resumed == 1 and rows[second.approval_id].resumed
    assert not stores.ledger.held_rows and not stores.table.rows
    assert list(stores.releases.released.values()) == [first.execution_id]


def test_a_turn_that_settles_after_another_process_took_its_partition_over_changes_nothing() -> None:
    """Process A handles a suspension again (a replayed batch) and its settle waits for PostgreSQL;
    meanwhile process B takes the partition over, handles the same message and the decision, and
    the run ends. A's late settle must not hold the execution again."""
    stores = Stores()
    signal, suspension = suspended(APPROVAL)
    stores.turn(signal)
    stale = stores.engine.handle([signal], stores.table, NOW)
    b, b_table = stores.started(), stores.table.restarted()
    b.recover(b_table, [0], NOW)
    assert stores.ledger.decide(suspension.approval_id, "approved", "ann@acme.io", NOW) == 200
    for turn in ([signal], [decided(suspension)]):
        effects = b.handle(turn, b_table, NOW)
        b.settle_stores(effects)
        b.settle_table(effects)
    assert not stores.ledger.held_rows
    with pytest.raises(Fenced):
        stores.engine.settle_stores(stale)
    assert not stores.ledger.held_rows, "the stale turn held the finished run again"
    assert stores.ledger.approvals[suspension.approval_id].resumed
    assert stores.engine.holding() == {0}, "A learns it only from the settle"
    stores.engine.let_go([0])
    with pytest.raises(Fenced):
        stores.engine.settle_stores(stale)


def test_a_timer_that_raises_backs_off_and_the_worker_goes_on() -> None:
    calls: list[int] = []

    async def failing() -> None:
        calls.append(1)
        raise ConnectionRefusedError("PostgreSQL is down")

    async def scenario() -> None:
        guard = TimerGuard("test timer")
        await guard.run(failing)
        await guard.run(failing)
        assert len(calls) == 1, "backing off: the next tick is skipped"

        attempts = iter([unavailable("postgres"), None])

        async def step() -> str:
            error = next(attempts)
            if error is not None:
                raise error
            return "held"

        assert await until_it_holds("a step", step) == "held"

    asyncio.run(scenario())
