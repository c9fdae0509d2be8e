"""A property of the orchestrator's signal handling, against a simple model.

Hypothesis interleaves suspensions, people's decisions, exits, due times, the three kinds of turn
(inbox, due timer, decision poll), stores that are down, processes that die before or after each
store write (PostgreSQL, Redis, the table and its changelog), and rebalances (a new process, the
changelog kept or lost with the broker), and turns whose settle comes after another process took
their partitions over. A turn is driven as the app drives it (plan, produce and
wait for the broker, Redis, PostgreSQL, then the table); the stores are the fakes of
`orchestrator_fakes`, whose conditional updates are the real ones'. Checked throughout and once
everything settled:
- every approval is opened once and decided at most once, also with two approval steps in a run;
- a turn settled after its partitions were taken over writes nothing;
- no pause of an execution resumes with two outcomes (repeats after a crash carry the same ids,
  which every consumer deduplicates), and it resumes with its approval's decision: the person's
  when they were told 200, `exited` only when the exit took the approval;
- once every signal was handled, every execution ended (or waits for a person), nothing is held
  that ended, and every ended run is released in Redis: no lead stays enrolled for ever.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from processors.compiler import CompiledWorkflow, compile_workflow
from processors.execution import PAUSED, Execution
from processors.model import WorkflowDefinition
from processors.orchestration import suspend
from processors.routing import RoutingState
from streams import topics
from streams.orchestrator.approval_ledger import Fenced
from streams.orchestrator.due_times import DueTimes
from streams.orchestrator.orchestrator import UNAVAILABLE, Effects, Orchestrator, Signal
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord, OutputRecord
from tests.unit.orchestrator_fakes import Crash, Faults, Ledger, Releases, Table, Versions
from tests.unit.test_orchestration import T0
from tests.unit.test_orchestrator_recovery import serde

HOUR_MS = 3_600_000
PARTITIONS = 2
APPROVE_THEN_UPDATE = compile_workflow(
    "wf-approval",
    1,
    WorkflowDefinition.model_validate(
        {
            "trigger": {"event_types": ["lead.created"]},
            "steps": [
                {"type": "approval", "approvers": ["ann@acme.io"], "timeout_hours": 2, "on_timeout": "approve"},
                {"type": "action", "action": "crm_update"},
            ],
        }
    ),
)
WAIT_THEN_APPROVE = compile_workflow(
    "wf-wait",
    1,
    WorkflowDefinition.model_validate(
        {
            "trigger": {"event_types": ["lead.created"]},
            "steps": [
                {"type": "wait", "hours": 1},
                {"type": "approval", "approvers": ["role:approver"], "timeout_hours": 2},
                {"type": "action", "action": "add_tag", "tag": "through"},
            ],
        }
    ),
)
TWO_APPROVALS = compile_workflow(
    "wf-two-approvals",
    1,
    WorkflowDefinition.model_validate(
        {
            "trigger": {"event_types": ["lead.created"]},
            "steps": [
                {"type": "approval", "approvers": ["ann@acme.io"], "timeout_hours": 2, "on_timeout": "approve"},
                {"type": "approval", "approvers": ["role:approver"], "timeout_hours": 1, "on_timeout": "approve"},
                {"type": "action", "action": "crm_update"},
            ],
        }
    ),
)
CRASH_POINTS = [
    "after:take_waits",
    "after:resumed_already",
    "after:timed_out",
    "after:cancelled",
    "before:release",
    "after:release",
    "before:settle",
    "after:settle",
    "after:outputs",
    "after:table",
]
OUTCOME = re.compile(r"(?P<step>\d+):(?:approval:|wait:)?(?P<outcome>approved|rejected|timed_out|elapsed|exit)")
"""The decisions a resume records (processors.orchestration.resume); not those of the pause."""
STATUS_OF_OUTCOME = {"approved": "approved", "rejected": "rejected", "timed_out": "timed_out", "exited": "cancelled"}


class RecordingOutputs:
    """ExecutionOutputs as plain records: what a resumed execution decided, by step."""

    def emit(self, execution: Execution, at_ms: int, outputs: list[OutputRecord]) -> None:
        record = {"execution_id": execution.execution_id, "status": execution.status.value}
        outputs.append(("executions", b"", orjson.dumps({**record, "decisions": execution.decisions})))


class Model(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.faults = Faults()
        self.ledger = Ledger(self.faults)
        self.releases = Releases(self.faults)
        self.table = Table()
        self.versions = Versions(APPROVE_THEN_UPDATE, WAIT_THEN_APPROVE, TWO_APPROVALS)
        self.now = T0
        self.inbox: list[tuple[int, dict[str, Any]]] = []
        """Every inbox message, by offset: (partition, record)."""
        self.committed = 0
        """Handled in order, one consumer for both partitions: the offset after the last settled turn."""
        self.broker: list[dict[str, Any]] = []
        self.executions: dict[str, tuple[str, str, str]] = {}
        """execution id -> (org, workflow, lead)."""
        self.told: dict[str, str] = {}
        """approval id -> what a person was told with 200."""
        self.leads = 0
        self.backlog = 0
        """After a restart, the inbox offset the agent must reach before the timers act
        (streams/orchestrator/inbox_backlog.py): exits that came first are handled first."""
        self.orchestrator = self._started()
        self.orchestrator.recover(self.table, range(PARTITIONS), self.now)

    def _started(self) -> Orchestrator:
        dead_letters = DeadLetters(*serde(topics.EVENTS_DLQ), "drippulse-orchestrator")
        return Orchestrator(
            self.versions,  # type: ignore[arg-type]
            self.ledger,
            RecordingOutputs(),  # type: ignore[arg-type]
            self.releases,
            DueTimes(),
            dead_letters,
        )

    # -- what happens outside the orchestrator

    @rule(
        workflow=st.sampled_from([APPROVE_THEN_UPDATE, WAIT_THEN_APPROVE, TWO_APPROVALS]),
        partition=st.integers(0, PARTITIONS - 1),
    )
    def a_run_pauses(self, workflow: CompiledWorkflow, partition: int) -> None:
        self.leads += 1
        org = f"org-{partition}"
        event = {
            "event_id": f"e{self.leads}",
            "org_id": org,
            "event_type": "lead.created",
            "occurred_at_ms": self.now,
            "lead": {"lead_id": f"lead-{self.leads}", "email": f"l{self.leads}@acme.io"},
        }
        execution = workflow.evaluate(event, RoutingState())
        assert execution.status in PAUSED
        suspension = suspend(execution, self.now)
        self.executions[execution.execution_id] = (org, workflow.workflow_id, execution.lead_id)
        message = {"kind": "SUSPENDED", "org_id": org, "execution_id": execution.execution_id}
        self.inbox.append((partition, {**message, "suspension_json": suspension.to_json().decode()}))

    @precondition(lambda self: self.executions)
    @rule(data=st.data())
    def the_lead_exits(self, data: st.DataObject) -> None:
        execution_id = data.draw(st.sampled_from(sorted(self.executions)))
        org = self.executions[execution_id][0]
        message = {"kind": "EXIT", "org_id": org, "execution_id": execution_id, "note": "event x"}
        self.inbox.append((int(org[-1]), {**message, "outcome": "exited", "outcome_at_ms": self.now}))

    @precondition(lambda self: self.ledger.approvals)
    @rule(data=st.data(), status=st.sampled_from(["approved", "rejected"]))
    def a_person_decides(self, data: st.DataObject, status: str) -> None:
        approval_id = data.draw(st.sampled_from(sorted(self.ledger.approvals)))
        if "postgres" in self.faults.down:
            return
        if self.ledger.decide(approval_id, status, "ann@acme.io", self.now) == 200:
            self.told[approval_id] = status

    @rule(hours=st.sampled_from([0.5, 1, 3]))
    def time_passes(self, hours: float) -> None:
        self.now += int(hours * HOUR_MS)

    @rule(store=st.sampled_from(["postgres", "redis"]), down=st.booleans())
    def a_store_goes_down_or_comes_back(self, store: str, down: bool) -> None:
        (self.faults.down.add if down else self.faults.down.discard)(store)

    @rule(point=st.sampled_from(CRASH_POINTS))
    def the_process_will_die(self, point: str) -> None:
        self.faults.crash_at = point

    @rule(changelog_kept=st.booleans())
    def a_rebalance(self, changelog_kept: bool) -> None:
        """Another process takes the partitions over: the table from the changelog (faust flushes it
        on a revocation), or from nothing (a broker that lost its topics)."""
        self.table.flush()
        self._restart(changelog_kept)

    # -- the orchestrator's turns, as the app drives them

    @rule(kind=st.sampled_from(["inbox", "due", "decision"]))
    def a_turn_outlives_its_partitions(self, kind: str) -> None:
        """A process plans a turn and produces it, and its settle is held up (PostgreSQL slow) past a
        rebalance: another process takes the partitions over and acts. The late settle must change
        nothing in PostgreSQL; its signals are found again by the new owner."""
        if self.faults.down or self.faults.crash_at or self.committed < self.backlog:
            return
        stale, signals = self.orchestrator, self._signals(kind)
        if not signals:
            return
        effects = stale.handle(signals, self.table, self.now)
        self._deliver(effects)
        self.a_rebalance(changelog_kept=True)
        self.the_decision_poll_ticks()
        self.the_agent_takes_the_inbox()
        self.the_due_timer_ticks()
        before = (dict(self.ledger.held_rows), {a: (r.status, r.resumed) for a, r in self.ledger.approvals.items()})
        with contextlib.suppress(Fenced):
            stale.settle_stores(effects)
        after = (dict(self.ledger.held_rows), {a: (r.status, r.resumed) for a, r in self.ledger.approvals.items()})
        assert after == before, "a turn of partitions another process took over was written"

    @rule()
    def the_agent_takes_the_inbox(self) -> None:
        if self._turn(self._signals("inbox")):
            self.committed = len(self.inbox)

    @rule()
    def the_due_timer_ticks(self) -> None:
        if self.committed < self.backlog:
            return
        taken = self.orchestrator.due.pop_due(self.now, 1000)
        if not self._turn(self._due(taken)):
            for entry in taken:
                self.orchestrator.due.add(*entry)

    @rule()
    def the_decision_poll_ticks(self) -> None:
        if "postgres" in self.faults.down or self.committed < self.backlog:
            return
        self._turn(self._signals("decision"))

    def _signals(self, kind: str) -> list[Signal]:
        """What the agent, the due timer or the decision poll would find now."""
        if kind == "inbox":
            signals = []
            for offset, (partition, record) in enumerate(self.inbox[self.committed :], start=self.committed):
                source = ConsumedRecord("inbox", partition, offset, record["org_id"].encode(), b"")
                full = {"suspension_json": None, "outcome": "", "note": "", "outcome_at_ms": 0, **record}
                signals.append(Signal.from_inbox(source, full))
            return signals
        if kind == "due":
            return self._due(self.orchestrator.due.pop_due(self.now, 1000))
        found = self.ledger.undelivered(range(PARTITIONS), 1000, self.orchestrator.deferred(self.now))
        return [
            Signal(
                row.partition,
                "DECIDED",
                self.executions[row.execution_id][0],
                row.execution_id,
                approval_id=row.id,
                outcome={"cancelled": "exited"}.get(row.status, row.status),
                actor=row.decided_by,
                note=row.comment,
                outcome_at_ms=row.decided_at_ms,
            )
            for row in found
        ]

    def _due(self, taken: list[tuple[int, str, int]]) -> list[Signal]:
        signals = []
        for due_at_ms, execution_id, partition in taken:
            stored = self.table.get(execution_id)
            if stored is None:
                continue
            suspension = orjson.loads(stored)["suspension"]
            if due_at_ms < suspension["due_at_ms"]:
                continue
            outcome = "wait_elapsed" if suspension["kind"] == "wait" else "timed_out"
            org = suspension["execution"]["org_id"]
            signals.append(Signal(partition, "DUE", org, execution_id, outcome=outcome, outcome_at_ms=due_at_ms))
        return signals

    def _turn(self, signals: list[Signal]) -> bool:
        """True once the turn settled; False when a store was down (the app tries again) or the
        process died (a new one recovers)."""
        if not signals:
            return True
        try:
            effects = self.orchestrator.handle(signals, self.table, self.now)
            self._deliver(effects)
            self.orchestrator.settle_stores(effects)
            self.orchestrator.settle_table(effects)
            self.faults.point("after", "table")
            self.table.flush()
        except UNAVAILABLE:
            return False
        except Crash:
            self._restart(changelog_kept=True)
            return False
        return True

    def _deliver(self, effects: Effects) -> None:
        self.broker.extend(orjson.loads(value) for topic, _, value in effects.outputs if topic == "executions")
        self.faults.point("after", "outputs")

    def _restart(self, changelog_kept: bool) -> None:
        """A new process: nothing in memory survives; it recovers every partition before acting."""
        self.table = self.table.restarted(changelog_kept)
        self.orchestrator = self._started()
        self.backlog = len(self.inbox)
        for _ in range(3):
            try:
                self.orchestrator.recover(self.table, range(PARTITIONS), self.now)
                return
            except UNAVAILABLE:
                self.faults.down.clear()
            except Crash:
                continue
        raise AssertionError("a recovery with every store up failed")

    # -- what must hold

    def _outcomes(self) -> dict[tuple[str, str], set[str]]:
        """(execution, step) -> the outcomes its resumes carried."""
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for record in self.broker:
            for decision in record["decisions"]:
                match = OUTCOME.fullmatch(decision)
                if match is not None:
                    step, outcome = match.group("step"), match.group("outcome")
                    found[(record["execution_id"], step)].add(
                        {"elapsed": "wait_elapsed", "exit": "exited"}.get(outcome, outcome)
                    )
        return found

    @invariant()
    def every_approval_opened_once_and_decided_at_most_once(self) -> None:
        assert len(self.ledger.opened) == len(set(self.ledger.opened))
        assert all(row.decisions <= 1 for row in self.ledger.approvals.values())

    @invariant()
    def one_outcome_per_pause_and_it_is_the_approvals(self) -> None:
        approvals = {(row.execution_id, row.step): row for row in self.ledger.approvals.values()}
        for (execution_id, step), outcomes in self._outcomes().items():
            assert len(outcomes) == 1, f"{execution_id} step {step} resumed as {outcomes}"
            (outcome,) = outcomes
            if outcome == "wait_elapsed":
                continue
            row = approvals.get((execution_id, step))
            if row is None:
                assert outcome == "exited", f"{execution_id} resumed at an approval that was never opened"
                continue
            assert STATUS_OF_OUTCOME[outcome] == row.status, f"{execution_id}: {outcome} but the row is {row.status}"
            if row.id in self.told:
                assert outcome == self.told[row.id], "the person was told 200 and another outcome won"

    def teardown(self) -> None:
        """Everything settles: stores back, every signal handled, every timeout passed."""
        self.faults.down.clear()
        self.faults.crash_at = None
        self.now += 10 * HOUR_MS
        for _ in range(6):
            self.the_agent_takes_the_inbox()
            self.the_due_timer_ticks()
            self.the_decision_poll_ticks()
            self.now += 3 * HOUR_MS
        assert self.committed == len(self.inbox)
        assert not self.ledger.held_rows, f"still held: {sorted(self.ledger.held_rows)}"
        assert not self.table.rows, "the table holds what PostgreSQL does not"
        for row in self.ledger.approvals.values():
            assert row.status != "pending" and row.resumed, row
        finished = {}
        for record in self.broker:
            if record["status"] not in ("awaiting_approval", "waiting"):
                finished[record["execution_id"]] = record["status"]
        assert set(finished) == set(self.executions), "every run ended"
        for execution_id, (org, workflow, lead) in self.executions.items():
            assert self.releases.released.get((org, workflow, lead)) == execution_id, "the lead is released"
        self.one_outcome_per_pause_and_it_is_the_approvals()


TestSignalHandling = Model.TestCase
TestSignalHandling.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
