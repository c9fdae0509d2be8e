"""What the orchestrator does with each signal, free of faust.

It holds every paused execution (in `HeldExecutions`, the faust table) until its outcome. Signals:
- SUSPENDED (inbox, from the qualifier): hold it, and for an approval open it in PostgreSQL;
- EXIT (inbox, from the qualifier): the lead matched the exit condition: cancel a pending approval,
  end the execution `exited`;
- DECIDED (found in PostgreSQL by the decision poll): a person's decision, or a timeout or exit
  taken earlier: resume;
- DUE (found by the due timer): the wait ended (resume), or the approval's timeout came: take the
  timeout's decision in PostgreSQL, where it races a person's, and resume only if it won.
A resumed execution either finishes (released: the lead is no longer enrolled) or pauses at a later
step and is held again.

Order is the guarantee: `handle` only plans (outputs, and the table changes staged beside the
table); the caller produces the outputs and waits for the broker's acknowledgement; only then does
`settle_table` apply the staged table changes, and `settle_stores` write PostgreSQL (approvals
opened, marked resumed) and Redis (runs released). A crash before they settle leaves the execution
held and its signal found again (the inbox message is not acknowledged, the decision not marked
resumed, the wait still due), so it resumes again with the same ids, which every consumer
deduplicates. Nothing is marked done before its effects are out.

One signal that cannot be handled (a corrupt suspension, a version missing from PostgreSQL, a
defect) must not stop the others: it is logged, and an inbox message goes to the dead-letter topic
with the reason, a due time is tried again later, and a decision is left for a later poll.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis

from processors.orchestration import Outcome, Resumption, Suspension, resume, suspend
from streams.execution_outputs import ExecutionOutputs
from streams.orchestrator.approval_ledger import ApprovalLedger
from streams.orchestrator.due_times import DueTimes
from streams.orchestrator.workflow_versions import UnknownVersion, WorkflowVersions
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.state import redis_batch, state_keys

log = logging.getLogger(__name__)

RETRY_AFTER_MS = 60_000
"""How long a due time or a decision whose handling failed waits before it is tried again."""


@dataclass(frozen=True, slots=True)
class Signal:
    partition: int
    """The inbox partition that holds the execution."""
    kind: str
    """SUSPENDED | EXIT | DECIDED | DUE"""
    org_id: str
    execution_id: str
    suspension_json: str | None = None
    outcome: str = ""
    actor: str = ""
    note: str = ""
    outcome_at_ms: int = 0
    source: ConsumedRecord | None = None
    """The inbox record a SUSPENDED or EXIT signal came from, dead-lettered if it cannot be handled."""

    @classmethod
    def from_inbox(cls, source: ConsumedRecord, record: dict[str, Any]) -> Signal:
        """A decoded drip.orchestrator.inbox record."""
        return cls(
            source.partition,
            str(record["kind"]),
            str(record["org_id"]),
            str(record["execution_id"]),
            record["suspension_json"],
            str(record["outcome"]),
            "",
            str(record["note"]),
            int(record["outcome_at_ms"]),
            source,
        )


@dataclass(frozen=True, slots=True)
class Held:
    partition: int
    suspension: Suspension

    def to_json(self) -> bytes:
        return b'{"partition":%d,"suspension":%s}' % (self.partition, self.suspension.to_json())

    @classmethod
    def from_json(cls, data: bytes) -> Held:
        raw = orjson.loads(data)
        return cls(raw["partition"], Suspension.from_dict(raw["suspension"]))


class HeldExecutions(Protocol):
    """Paused executions by id; in production the faust table, whose changelog makes it durable."""

    def get(self, execution_id: str) -> bytes | None: ...

    def hold(self, partition: int, execution_id: str, held: bytes) -> None: ...

    def release(self, partition: int, execution_id: str) -> None: ...


class Staged:
    """The held executions as one batch sees them: the table, overlaid with what the batch holds and
    releases, which reach the table only when the batch settles."""

    def __init__(self, held: HeldExecutions) -> None:
        self._held = held
        self.writes: dict[str, tuple[int, bytes | None]] = {}

    def get(self, execution_id: str) -> bytes | None:
        staged = self.writes.get(execution_id)
        return staged[1] if staged is not None else self._held.get(execution_id)

    def hold(self, partition: int, execution_id: str, held: bytes) -> None:
        self.writes[execution_id] = (partition, held)

    def release(self, partition: int, execution_id: str) -> None:
        self.writes[execution_id] = (partition, None)

    def apply(self) -> None:
        for execution_id, (partition, held) in self.writes.items():
            if held is None:
                self._held.release(partition, execution_id)
            else:
                self._held.hold(partition, execution_id, held)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    execution_id: str
    staged: tuple[int, bytes | None] | None
    lengths: tuple[int, ...]
    resumed: int


@dataclass
class Effects:
    """What a handled batch produces, and what it writes once that is acknowledged."""

    staged: Staged
    outputs: list[OutputRecord] = field(default_factory=list)
    due: list[tuple[int, str, int]] = field(default_factory=list)
    """(due at ms, execution id, partition) of what the batch holds."""
    opened: list[tuple[Suspension, int, int]] = field(default_factory=list)
    resumed_approvals: list[str] = field(default_factory=list)
    """By execution id, the approvals table's unique key."""
    cancelled_approvals: list[str] = field(default_factory=list)
    released: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(org, workflow, lead, execution) of finished runs."""
    resumed: int = 0

    def checkpoint(self, execution_id: str) -> Checkpoint:
        """Where the effects stand before one signal of `execution_id`, for `rollback`."""
        lists = self._lists()
        return Checkpoint(execution_id, self.staged.writes.get(execution_id), tuple(map(len, lists)), self.resumed)

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Undoes what one signal that failed half-way added: either all of its effects or none."""
        for effects, length in zip(self._lists(), checkpoint.lengths, strict=True):
            del effects[length:]
        self.resumed = checkpoint.resumed
        if checkpoint.staged is None:
            self.staged.writes.pop(checkpoint.execution_id, None)
        else:
            self.staged.writes[checkpoint.execution_id] = checkpoint.staged

    def _lists(self) -> tuple[list[Any], ...]:
        return (self.outputs, self.due, self.opened, self.resumed_approvals, self.cancelled_approvals, self.released)


class Orchestrator:
    def __init__(
        self,
        versions: WorkflowVersions,
        ledger: ApprovalLedger,
        outputs: ExecutionOutputs,
        client: redis.Redis,
        due: DueTimes,
        dead_letters: DeadLetters,
    ) -> None:
        self._versions = versions
        self._ledger = ledger
        self._outputs = outputs
        self._redis = client
        self.due = due
        self._dead_letters = dead_letters
        self._deferred: dict[str, int] = {}
        """Decisions whose handling failed, by execution id: not tried again before this time."""

    def handle(self, signals: Sequence[Signal], held: HeldExecutions, now_ms: int) -> Effects:
        effects = Effects(Staged(held))
        suspensions: dict[str, Suspension] = {}
        for signal in signals:
            if signal.kind == "SUSPENDED":
                try:
                    suspensions[signal.execution_id] = Suspension.from_json(signal.suspension_json or "")
                except (ValueError, KeyError, TypeError) as exc:
                    self._failed(signal, exc, now_ms, effects)
        done = self._ledger.resumed_already([s.approval_id for s in suspensions.values() if s.kind == "approval"])
        for signal in signals:
            if signal.kind == "DECIDED" and self._deferred.get(signal.execution_id, 0) > now_ms:
                continue
            self._deferred.pop(signal.execution_id, None)
            mark = effects.checkpoint(signal.execution_id)
            try:
                if signal.kind != "SUSPENDED":
                    self._act(signal, now_ms, effects)
                    continue
                suspension = suspensions.get(signal.execution_id)
                fresh = effects.staged.get(signal.execution_id) is None
                if suspension is not None and fresh and suspension.approval_id not in done:
                    self._hold(signal.partition, suspension, now_ms, effects)
            except Exception as exc:
                effects.rollback(mark)
                self._failed(signal, exc, now_ms, effects)
        return effects

    def dead_letter(self, record: ConsumedRecord, error_kind: str, error: str) -> OutputRecord:
        return self._dead_letters.record(record, error_kind, error)

    def _failed(self, signal: Signal, exc: Exception, now_ms: int, effects: Effects) -> None:
        """Logged with the ids only (a suspension holds lead data); then out of the way, not lost."""
        log.error(
            "cannot handle %s of execution %s (org %s): %s: %s",
            signal.kind,
            signal.execution_id,
            signal.org_id,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, UnknownVersion),
        )
        if signal.source is not None:
            effects.outputs.append(self.dead_letter(signal.source, "orchestrate", f"{type(exc).__name__}: {exc}"))
        elif signal.kind == "DUE":
            effects.due.append((now_ms + RETRY_AFTER_MS, signal.execution_id, signal.partition))
        else:
            self._deferred[signal.execution_id] = now_ms + RETRY_AFTER_MS

    def settle_table(self, effects: Effects) -> None:
        """After the batch's outputs are acknowledged, first: the table (on the faust app's loop)."""
        effects.staged.apply()
        for entry in effects.due:
            self.due.add(*entry)

    def settle_stores(self, effects: Effects) -> None:
        """Then PostgreSQL and Redis (blocking calls, for a thread)."""
        self._ledger.settle(effects.opened, effects.cancelled_approvals, effects.resumed_approvals)
        if effects.released:
            redis_batch.execute(
                self._redis,
                [
                    ("HSET", state_keys.released_runs(org), state_keys.released_field(workflow, lead), execution)
                    for org, workflow, lead, execution in effects.released
                ],
            )

    def _act(self, signal: Signal, now_ms: int, effects: Effects) -> None:
        stored = effects.staged.get(signal.execution_id)
        if stored is None:
            if signal.kind == "DECIDED":
                effects.resumed_approvals.append(signal.execution_id)
            return
        current = Held.from_json(stored)
        suspension = current.suspension
        if suspension.kind == "approval":
            if signal.kind == "EXIT":
                effects.cancelled_approvals.append(signal.execution_id)
            elif signal.kind == "DUE":
                if suspension.due_at_ms != signal.outcome_at_ms:
                    return
                if not self._ledger.time_out(suspension.approval_id, signal.outcome_at_ms):
                    return
            effects.resumed_approvals.append(signal.execution_id)
        elif signal.kind == "DECIDED" or (signal.kind == "DUE" and suspension.due_at_ms != signal.outcome_at_ms):
            return
        resumption = Resumption(Outcome(signal.outcome), signal.outcome_at_ms, signal.actor, signal.note)
        started = suspension.execution
        workflow = self._versions.get(signal.org_id, started["workflow_id"], started["workflow_version"])
        execution = resume(workflow, suspension, resumption, now_ms)
        if execution.pause is not None:
            self._hold(current.partition, suspend(execution, now_ms), now_ms, effects)
        else:
            effects.staged.release(current.partition, signal.execution_id)
            effects.released.append(
                (execution.org_id, execution.workflow_id, execution.lead_id, execution.execution_id)
            )
        effects.resumed += 1
        self._outputs.emit(execution, now_ms, effects.outputs)

    def _hold(self, partition: int, suspension: Suspension, now_ms: int, effects: Effects) -> None:
        effects.staged.hold(partition, suspension.execution_id, Held(partition, suspension).to_json())
        effects.due.append((suspension.due_at_ms, suspension.execution_id, partition))
        if suspension.kind == "approval":
            effects.opened.append((suspension, partition, now_ms))
