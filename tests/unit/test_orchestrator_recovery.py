"""The orchestrator's handling of a signal it cannot act on: that signal is set aside (dead-lettered,
retried later), the others in the batch go on; and due times held back behind an inbox backlog.
No I/O: the ledger and versions are fakes."""

from __future__ import annotations

from typing import Any

from processors.compiler import CompiledWorkflow
from streams import topics
from streams.agent_calls import AgentCalls
from streams.execution_outputs import ExecutionOutputs
from streams.orchestrator.approval_ledger import Settlement
from streams.orchestrator.due_times import DueTimes
from streams.orchestrator.inbox_backlog import MAX_HOLD_MS, InboxBacklog
from streams.orchestrator.orchestrator import RETRY_AFTER_MS, Held, Orchestrator, Signal
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord
from streams.runtime.schema_registry import EmbeddedRegistry
from streams.runtime.serde import AvroSerde
from tests.unit.orchestrator_fakes import Faults, Ledger, NoAgents, Releases, Table, Versions
from tests.unit.test_orchestration import compiled, paused

NOW = 1_800_000_000_000
REGISTRY = EmbeddedRegistry()


def serde(topic: topics.Topic) -> tuple[AvroSerde, str]:
    return AvroSerde(topic, topic.base_name, REGISTRY), topic.base_name


def orchestrator(versions: Versions, ledger: Ledger | None = None) -> Orchestrator:
    dead_letters = DeadLetters(*serde(topics.EVENTS_DLQ), "drippulse-orchestrator")
    calls = AgentCalls(serde(topics.INBOUND_EVENTS), dead_letters, NoAgents(), refresh_s=60)  # type: ignore[arg-type]
    outputs = ExecutionOutputs(
        serde(topics.EXECUTIONS), serde(topics.CRM_COMMANDS), serde(topics.WEBHOOK_DELIVERIES), calls
    )
    faults = Faults()
    ledger = ledger or Ledger(faults)
    return Orchestrator(versions, ledger, outputs, Releases(faults), DueTimes(), dead_letters)  # type: ignore[arg-type]


def held_in(table: Table, workflow: CompiledWorkflow, ledger: Ledger | None = None, **lead: Any) -> tuple[str, int]:
    """Held as a settled turn leaves it: in the table, and in PostgreSQL with its approval."""
    execution, suspension = paused(workflow, **lead)
    table.hold(0, execution.execution_id, Held(0, suspension).to_json())
    if ledger is not None:
        opened = [(suspension, 0, NOW)] if suspension.kind == "approval" else []
        ledger.settle(Settlement({execution.execution_id: (0, suspension)}, opened))
    return execution.execution_id, suspension.due_at_ms


def test_a_corrupt_suspension_is_dead_lettered_and_the_batch_goes_on() -> None:
    workflow = compiled([{"type": "wait", "hours": 1}, {"type": "action", "action": "add_tag", "tag": "t"}])
    table = Table()
    execution_id, due_at_ms = held_in(table, workflow)
    source = ConsumedRecord("drip.orchestrator.inbox", 0, 41, b"o", b"the record")
    signals = [
        Signal(0, "SUSPENDED", "o", "ex-bad", "{not json", source=source),
        Signal(0, "DUE", "o", execution_id, outcome="wait_elapsed", outcome_at_ms=due_at_ms),
    ]
    effects = orchestrator(Versions(workflow)).handle(signals, table, NOW)
    letters = [value for topic, _, value in effects.outputs if topic == topics.EVENTS_DLQ.base_name]
    assert len(letters) == 1
    letter = serde(topics.EVENTS_DLQ)[0].decode(letters[0])
    assert (letter["error_kind"], letter["source_offset"]) == ("orchestrate", 41)
    assert letter["original_value"] == b"the record"
    assert effects.resumed == 1, "the wait that came due in the same batch resumed"


def test_a_due_time_that_fails_is_tried_again_later_and_a_failed_decision_waits_before_the_next_poll() -> None:
    workflow = compiled([{"type": "approval", "timeout_hours": 1}, {"type": "action", "action": "crm_update"}])
    table = Table()
    ledger = Ledger(Faults())
    execution_id, due_at_ms = held_in(table, workflow, ledger)
    approval_id = Held.from_json(table.rows[execution_id]).suspension.approval_id
    versions = Versions(workflow)
    versions.missing = {"wf"}
    engine = orchestrator(versions, ledger)
    due = Signal(0, "DUE", "o", execution_id, outcome="timed_out", outcome_at_ms=due_at_ms)
    effects = engine.handle([due], table, NOW)
    assert effects.outputs == [] and effects.due == [(NOW + RETRY_AFTER_MS, execution_id, 0)]

    decided = Signal(0, "DECIDED", "o", execution_id, outcome="approved", actor="ann@acme.io", approval_id=approval_id)
    assert engine.handle([decided], table, NOW).resumed_approvals == []
    assert engine.deferred(NOW + 1) == [execution_id], "the decision poll leaves it out meanwhile"
    versions.missing = set()
    assert engine.handle([decided], table, NOW + 1).resumed_approvals == [], "deferred, not retried at once"
    assert engine.deferred(NOW + RETRY_AFTER_MS + 1) == []
    retried = engine.handle([decided], table, NOW + RETRY_AFTER_MS + 1)
    assert retried.resumed_approvals == [approval_id] and retried.resumed == 1


def test_due_times_of_a_partition_with_an_inbox_backlog_wait_until_its_marker_is_reached() -> None:
    due = DueTimes()
    for partition in (0, 1):
        due.add(NOW - 10, f"ex-{partition}", partition)
    backlog = InboxBacklog()
    backlog.taken_over({0: "mine-0", 1: "mine-1"}, NOW)
    backlog.reached(0, "mine-0")
    assert due.pop_due(NOW, 10, backlog.behind(NOW)) == [(NOW - 10, "ex-0", 0)]
    backlog.reached(1, "an-earlier-owner's")
    assert due.pop_due(NOW, 10, backlog.behind(NOW)) == [], "only this takeover's marker counts"
    backlog.reached(1, "mine-1")
    assert due.pop_due(NOW, 10, backlog.behind(NOW)) == [(NOW - 10, "ex-1", 1)]


def test_a_backlog_never_holds_due_times_back_for_ever() -> None:
    backlog = InboxBacklog()
    backlog.taken_over({0: ""}, NOW)
    assert backlog.behind(NOW + MAX_HOLD_MS - 1) == {0}
    assert backlog.behind(NOW + MAX_HOLD_MS) == set()
