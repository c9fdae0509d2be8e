"""What the orchestrator does with each message of its inbox, free of faust.

It holds every paused execution (in `HeldExecutions`, the faust table) until its outcome:
- SUSPENDED: hold it, index when it falls due, and for an approval open it in PostgreSQL;
- DECIDED: a person's decision (or a timeout taken earlier): resume;
- DUE: the wait ended (resume) or the approval's timeout came: take the timeout's decision in
  PostgreSQL, where it races a person's, and resume only if it won;
- EXIT: the lead matched the exit condition: cancel a pending approval, end the execution `exited`.
A resumed execution either finishes (it is released: the lead is no longer enrolled) or pauses at a
later step and is held again. Outputs come back to the caller to produce; PostgreSQL and Redis are
written in `settle`, once the caller has them acknowledged, so an outcome is marked delivered only
after its effects are out. Handling a message twice after a crash repeats the same outputs with the
same ids, which every consumer deduplicates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import orjson
import redis

from processors.orchestration import Outcome, Resumption, Suspension, resume, suspend
from streams.execution_outputs import ExecutionOutputs
from streams.orchestrator.approval_ledger import ApprovalLedger
from streams.orchestrator.due_times import DueTimes
from streams.orchestrator.workflow_versions import UnknownVersion, WorkflowVersions
from streams.runtime.records import OutputRecord
from streams.state import redis_batch, state_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboxMessage:
    partition: int
    kind: str
    org_id: str
    execution_id: str
    suspension_json: str | None = None
    outcome: str = ""
    actor: str = ""
    note: str = ""
    outcome_at_ms: int = 0

    @classmethod
    def decoded(cls, partition: int, record: dict[str, object]) -> InboxMessage:
        return cls(
            partition,
            str(record["kind"]),
            str(record["org_id"]),
            str(record["execution_id"]),
            record["suspension_json"],  # type: ignore[arg-type]
            str(record["outcome"]),
            str(record["actor"]),
            str(record["note"]),
            int(record["outcome_at_ms"]),  # type: ignore[call-overload]
        )

    def as_record(self, sent_at_ms: int) -> dict[str, object]:
        return {
            "kind": self.kind,
            "org_id": self.org_id,
            "execution_id": self.execution_id,
            "sent_at_ms": sent_at_ms,
            "suspension_json": self.suspension_json,
            "outcome": self.outcome,
            "actor": self.actor,
            "note": self.note,
            "outcome_at_ms": self.outcome_at_ms,
        }


@dataclass(frozen=True, slots=True)
class Held:
    partition: int
    suspension: Suspension

    def to_json(self) -> bytes:
        return b'{"partition":%d,"suspension":%s}' % (self.partition, self.suspension.to_json())

    @classmethod
    def from_json(cls, data: bytes) -> Held:
        raw = orjson.loads(data)
        return cls(raw["partition"], Suspension.from_json(orjson.dumps(raw["suspension"])))


class HeldExecutions(Protocol):
    """Paused executions by id; in production the faust table, whose changelog makes it durable."""

    def get(self, execution_id: str) -> bytes | None: ...

    def hold(self, partition: int, execution_id: str, held: bytes) -> None: ...

    def release(self, partition: int, execution_id: str) -> None: ...


@dataclass
class Effects:
    """What a handled batch still has to write once its outputs are acknowledged."""

    outputs: list[OutputRecord] = field(default_factory=list)
    opened: list[tuple[Suspension, int, int]] = field(default_factory=list)
    resumed_approvals: list[str] = field(default_factory=list)
    """By execution id, as the approvals table's unique key."""
    cancelled_approvals: list[str] = field(default_factory=list)
    released: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(org, workflow, lead, execution) of finished runs."""
    finished: int = 0
    """Executions that resumed to an end in this batch."""


class Orchestrator:
    def __init__(
        self,
        versions: WorkflowVersions,
        ledger: ApprovalLedger,
        outputs: ExecutionOutputs,
        client: redis.Redis,
        due: DueTimes,
    ) -> None:
        self._versions = versions
        self._ledger = ledger
        self._outputs = outputs
        self._redis = client
        self.due = due

    def handle(self, messages: Sequence[InboxMessage], held: HeldExecutions, now_ms: int) -> Effects:
        effects = Effects()
        done = self._ledger.resumed_already(
            [
                Suspension.from_json(m.suspension_json).approval_id
                for m in messages
                if m.kind == "SUSPENDED" and m.suspension_json is not None and '"kind":"approval"' in m.suspension_json
            ]
        )
        for message in messages:
            try:
                self._handle(message, held, now_ms, done, effects)
            except UnknownVersion as exc:
                log.error("cannot resume %s: %s", message.execution_id, exc)
        return effects

    def settle(self, effects: Effects) -> None:
        """After the batch's outputs are acknowledged: approvals opened and marked resumed in
        PostgreSQL, finished runs released in Redis."""
        self._ledger.open(effects.opened)
        self._ledger.cancel(effects.cancelled_approvals)
        self._ledger.mark_resumed(effects.resumed_approvals)
        if effects.released:
            redis_batch.execute(
                self._redis,
                [
                    ("HSET", state_keys.released_runs(org), state_keys.released_field(workflow, lead), execution)
                    for org, workflow, lead, execution in effects.released
                ],
            )

    def _handle(
        self, message: InboxMessage, held: HeldExecutions, now_ms: int, done: set[str], effects: Effects
    ) -> None:
        if message.kind == "SUSPENDED":
            assert message.suspension_json is not None
            suspension = Suspension.from_json(message.suspension_json)
            if held.get(message.execution_id) is None and suspension.approval_id not in done:
                self._hold(held, message.partition, suspension, now_ms, effects)
            return
        stored = held.get(message.execution_id)
        if stored is None:
            if message.kind == "DECIDED":
                effects.resumed_approvals.append(message.execution_id)
            return
        current = Held.from_json(stored)
        suspension = current.suspension
        if suspension.kind == "approval":
            if message.kind == "EXIT":
                effects.cancelled_approvals.append(message.execution_id)
            elif message.kind == "DUE" and not self._ledger.time_out(suspension.approval_id, message.outcome_at_ms):
                return
            effects.resumed_approvals.append(message.execution_id)
        elif message.kind == "DECIDED":
            return
        resumption = Resumption(Outcome(message.outcome), message.outcome_at_ms, message.actor, message.note)
        started = suspension.execution
        workflow = self._versions.get(message.org_id, started["workflow_id"], started["workflow_version"])
        execution = resume(workflow, suspension, resumption, now_ms)
        if execution.pause is not None:
            self._hold(held, current.partition, suspend(execution, now_ms), now_ms, effects)
        else:
            held.release(current.partition, message.execution_id)
            effects.released.append(
                (execution.org_id, execution.workflow_id, execution.lead_id, execution.execution_id)
            )
            effects.finished += 1
        self._outputs.emit(execution, now_ms, effects.outputs)

    def _hold(
        self, held: HeldExecutions, partition: int, suspension: Suspension, now_ms: int, effects: Effects
    ) -> None:
        held.hold(partition, suspension.execution_id, Held(partition, suspension).to_json())
        self.due.add(suspension.due_at_ms, suspension.execution_id, partition)
        if suspension.kind == "approval":
            effects.opened.append((suspension, partition, now_ms))
