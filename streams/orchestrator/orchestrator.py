"""What the orchestrator does with each signal, free of faust.

It holds every paused execution until its outcome. Signals:
- SUSPENDED (inbox, from the qualifier): hold it, and for an approval open it in PostgreSQL;
- EXIT (inbox, from the qualifier): the lead matched the exit condition: a wait ends `exited`; an
  approval is taken for the exit first (`ApprovalLedger.cancel`), the same conditional update from
  `pending` as a person's decision, so only one of them wins: the exit ends the execution `exited`
  only if it took the approval, and a person who decided first has their decision carried out;
- DECIDED (found in PostgreSQL by the decision poll): a person's decision, or a timeout or exit
  taken earlier: resume;
- DUE (found by the due timer): the wait ended (resume), or the approval's timeout came: take the
  timeout's decision in PostgreSQL, where it races a person's, and resume only if it won.
A resumed execution either finishes (released: the lead is no longer enrolled) or pauses at a later
step and is held again.

Order is the guarantee, and every step is idempotent, so a turn that stops anywhere converges when
its signals come again: `handle` only plans (outputs, and the changes to what is held, staged beside
the table); the caller produces the outputs and waits for the broker's acknowledgement; then
`settle_stores` writes Redis (runs released), then PostgreSQL in one transaction (what is held, the
approvals opened and marked resumed: the commit point), and `settle_table` the faust table. Until
the commit the signal is found again (the inbox message is not acknowledged, the decision not marked
resumed, the wait still due and still held), so it resumes again with the same ids, which every
consumer deduplicates, and a release is written again, which changes nothing. After the commit the
table may lag PostgreSQL; `recover` rebuilds it from PostgreSQL after every rebalance. The caller
retries each step while a store is down (`turns.py`).

One signal that cannot be handled (a corrupt suspension, a version missing from PostgreSQL, a
defect) must not stop the others: it is logged, and an inbox message goes to the dead-letter topic
with the reason, a due time is tried again later, and a decision is left out of the decision poll
for a while (`set_aside`, which the caller also uses for a signal whose turn cannot be produced or
settled). A store that is down is not a reason to set a signal aside: `handle` raises, and the
caller tries the whole turn again.

Each process settles only the partitions it took over (`recover` records the generation of each);
a turn of a partition another process took over since is abandoned (`Fenced`): nothing of it is
written, and the new owner finds its signals again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from processors.orchestration import Outcome, Resumption, Suspension, resume, suspend
from streams.execution_outputs import ExecutionOutputs
from streams.orchestrator.approval_ledger import Fenced, Settlement, WaitOutcome
from streams.orchestrator.due_times import DueTimes
from streams.orchestrator.workflow_versions import UnknownVersion, WorkflowVersions
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.state import redis_batch, state_keys

log = logging.getLogger(__name__)

RETRY_AFTER_MS = 60_000
"""How long a due time or a decision whose handling failed waits before it is tried again."""
UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeout, redis.RedisError)
"""A store that is down: the turn is tried again whole, no signal is set aside for it. Any other
error (a constraint, a value PostgreSQL refuses, a defect) fails the same way when tried again."""

Run = tuple[str, str, str, str]
"""(org, workflow, lead, execution) of a finished run."""


class NotHeld(LookupError):
    """A decision for an execution that nothing holds, neither the table nor PostgreSQL."""


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
    approval_id: str = ""
    """The approval a DECIDED signal decided: an execution has one per approval step."""

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

    def same_pause(self, other: Held) -> bool:
        mine, theirs = self.suspension, other.suspension
        return (self.partition, mine.step, mine.kind, mine.due_at_ms) == (
            other.partition,
            theirs.step,
            theirs.kind,
            theirs.due_at_ms,
        )


class HeldExecutions(Protocol):
    """Paused executions by id; in production the faust table."""

    def get(self, execution_id: str) -> bytes | None: ...

    def hold(self, partition: int, execution_id: str, held: bytes) -> None: ...

    def release(self, partition: int, execution_id: str) -> None: ...

    def entries(self) -> Iterable[tuple[str, bytes]]: ...

    def forget(self, execution_id: str) -> None:
        """Drops an entry of a partition this process no longer owns, writing nothing."""


class Ledger(Protocol):
    """`ApprovalLedger`, PostgreSQL."""

    def resumed_already(self, approval_ids: Sequence[str]) -> set[str]: ...

    def time_out(self, approval_id: str, at_ms: int) -> bool: ...

    def cancel(self, approval_id: str, at_ms: int, note: str) -> str | None: ...

    def take_waits(self, candidates: Sequence[WaitOutcome]) -> dict[str, WaitOutcome]: ...

    def settle(self, settlement: Settlement) -> None: ...

    def held(self, partitions: Sequence[int]) -> dict[str, tuple[int, Suspension]]: ...

    def held_executions(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, Suspension]]: ...

    def take_over(
        self, partitions: Sequence[int], changelog: Iterable[tuple[int, Suspension]], now_ms: int
    ) -> dict[int, int]: ...


class Releases(Protocol):
    def release(self, runs: Sequence[Run]) -> None:
        """The lead of each run is no longer enrolled; writing one again changes nothing."""


class RedisReleases:
    """`dp:{org}:released`, which the qualifier reads (processors.enrollment: a release naming an
    older run than the lead's current one changes nothing)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def release(self, runs: Sequence[Run]) -> None:
        redis_batch.execute(
            self._client,
            [
                ("HSET", state_keys.released_runs(org), state_keys.released_field(workflow, lead), execution)
                for org, workflow, lead, execution in runs
            ],
        )


class Staged:
    """The held executions as one batch sees them: the table, overlaid with what the batch holds and
    releases, which reach the table only when the batch settles."""

    def __init__(self, held: HeldExecutions) -> None:
        self._held = held
        self.writes: dict[str, tuple[int, Held | None]] = {}
        self._read: dict[str, Held | None] = {}
        """What the table holds, parsed once per batch."""

    def get(self, execution_id: str) -> Held | None:
        staged = self.writes.get(execution_id)
        if staged is not None:
            return staged[1]
        if execution_id not in self._read:
            stored = self._held.get(execution_id)
            self._read[execution_id] = Held.from_json(stored) if stored is not None else None
        return self._read[execution_id]

    def hold(self, held: Held) -> None:
        self.writes[held.suspension.execution_id] = (held.partition, held)

    def release(self, partition: int, execution_id: str) -> None:
        self.writes[execution_id] = (partition, None)

    def settlement(self) -> dict[str, tuple[int, Suspension | None]]:
        return {e: (p, held.suspension if held is not None else None) for e, (p, held) in self.writes.items()}

    def apply(self) -> None:
        for execution_id, (partition, held) in self.writes.items():
            if held is None:
                self._held.release(partition, execution_id)
            else:
                self._held.hold(partition, execution_id, held.to_json())


@dataclass(frozen=True, slots=True)
class Checkpoint:
    execution_id: str
    staged: tuple[int, Held | None] | None
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
    """By approval id: an execution has an approval per approval step."""
    released: list[Run] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    """Approval ids this turn opens and an exit of the same turn took before they were out."""
    resumed: int = 0

    def settlement(self) -> Settlement:
        withheld = set(self.withheld)
        opened = [o for o in self.opened if o[0].approval_id not in withheld]
        return Settlement(self.staged.settlement(), opened, self.resumed_approvals)

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
        return (self.outputs, self.due, self.opened, self.resumed_approvals, self.released, self.withheld)


class Orchestrator:
    def __init__(
        self,
        versions: WorkflowVersions,
        ledger: Ledger,
        outputs: ExecutionOutputs,
        releases: Releases,
        due: DueTimes,
        dead_letters: DeadLetters,
    ) -> None:
        self._versions = versions
        self._ledger = ledger
        self._outputs = outputs
        self._releases = releases
        self.due = due
        self._dead_letters = dead_letters
        self._deferred: dict[str, int] = {}
        """Decisions whose handling failed, by execution id: not tried again before this time."""
        self._generations: dict[int, int] = {}
        """The inbox partitions this process took over, with the generation of that takeover."""

    def holding(self) -> frozenset[int]:
        """The inbox partitions whose turns this process may settle."""
        return frozenset(self._generations)

    def let_go(self, partitions: Iterable[int]) -> None:
        """Another process took these partitions over: their turns are abandoned from now on."""
        for partition in partitions:
            self._generations.pop(partition, None)

    def deferred(self, now_ms: int) -> list[str]:
        """The executions whose decisions the decision poll leaves out for now."""
        for execution_id in [e for e, until in self._deferred.items() if until <= now_ms]:
            del self._deferred[execution_id]
        return list(self._deferred)

    def handle(self, signals: Sequence[Signal], held: HeldExecutions, now_ms: int) -> Effects:
        """Plans a turn. Raises (one of `UNAVAILABLE`) when a store is down: try the turn again."""
        effects = Effects(Staged(held))
        suspensions: dict[str, Suspension] = {}
        for signal in signals:
            if signal.kind == "SUSPENDED":
                try:
                    suspensions[signal.execution_id] = Suspension.from_json(signal.suspension_json or "")
                except (ValueError, KeyError, TypeError) as exc:
                    self._failed(signal, exc, now_ms, effects.outputs, effects.due)
        done = self._ledger.resumed_already([s.approval_id for s in suspensions.values() if s.kind == "approval"])
        taken = self._ledger.take_waits(self._wait_outcomes(signals, effects.staged))
        for signal in signals:
            if signal.kind == "DECIDED" and self._deferred.get(signal.execution_id, 0) > now_ms:
                continue
            self._deferred.pop(signal.execution_id, None)
            mark = effects.checkpoint(signal.execution_id)
            try:
                if signal.kind == "SUSPENDED":
                    suspension = suspensions.get(signal.execution_id)
                    if suspension is not None and suspension.approval_id not in done:
                        self._suspended(signal.partition, suspension, now_ms, effects)
                else:
                    self._act(signal, now_ms, effects, taken)
            except UNAVAILABLE:
                raise
            except Exception as exc:
                effects.rollback(mark)
                self._failed(signal, exc, now_ms, effects.outputs, effects.due)
        return effects

    def dead_letter(self, record: ConsumedRecord, error_kind: str, error: str) -> OutputRecord:
        return self._dead_letters.record(record, error_kind, error)

    def set_aside(self, signal: Signal, exc: Exception, now_ms: int) -> list[OutputRecord]:
        """A signal whose turn fails however often it is tried (it cannot be produced or settled):
        out of the way as one that cannot be handled. Returns its dead letter, to produce."""
        letters: list[OutputRecord] = []
        later: list[tuple[int, str, int]] = []
        self._failed(signal, exc, now_ms, letters, later)
        for entry in later:
            self.due.add(*entry)
        return letters

    def _failed(
        self,
        signal: Signal,
        exc: Exception,
        now_ms: int,
        outputs: list[OutputRecord],
        due: list[tuple[int, str, int]],
    ) -> None:
        """Logged with the ids only (a suspension holds lead data; PostgreSQL's errors leave their
        parameters out); then out of the way, not lost."""
        log.error(
            "cannot handle %s of execution %s (org %s): %s: %s",
            signal.kind,
            signal.execution_id,
            signal.org_id,
            type(exc).__name__,
            exc,
            exc_info=not isinstance(exc, UnknownVersion | NotHeld),
        )
        if signal.source is not None:
            outputs.append(self.dead_letter(signal.source, "orchestrate", f"{type(exc).__name__}: {exc}"))
        elif signal.kind == "DUE":
            due.append((now_ms + RETRY_AFTER_MS, signal.execution_id, signal.partition))
        else:
            self._deferred[signal.execution_id] = now_ms + RETRY_AFTER_MS

    def settle_stores(self, effects: Effects) -> None:
        """Once the batch's outputs are acknowledged: Redis, then PostgreSQL, whose transaction is
        the commit point (blocking calls, for a thread). Idempotent: call again until it returns.
        Raises `Fenced`, writing nothing to PostgreSQL, when another process took over a partition
        the turn writes."""
        settlement = effects.settlement()
        lost = settlement.partitions() - self._generations.keys()
        if lost:
            raise Fenced(lost)
        settlement.generations = {partition: self._generations[partition] for partition in settlement.partitions()}
        if effects.released:
            self._releases.release(effects.released)
        self._ledger.settle(settlement)

    def settle_table(self, effects: Effects) -> None:
        """Then the table (on the faust app's loop), and the due times of what the batch holds."""
        effects.staged.apply()
        for entry in effects.due:
            self.due.add(*entry)

    def recover(self, held: HeldExecutions, partitions: Iterable[int], now_ms: int) -> int:
        """After a rebalance, before any signal of `partitions` is acted on: the partitions taken over
        (a turn of their previous owner settles nothing from now on), what their changelog holds and
        PostgreSQL never saw adopted into PostgreSQL, then the table made to hold what PostgreSQL
        says these partitions hold (a changelog lost with the broker's topics, or behind PostgreSQL
        after a crash, is rebuilt), and the due times rebuilt. Returns how many executions the
        partitions hold."""
        mine = sorted(set(partitions))
        table = {execution_id: Held.from_json(value) for execution_id, value in list(held.entries())}
        changelog = [(h.partition, h.suspension) for h in table.values() if h.partition in mine]
        self._generations = self._ledger.take_over(mine, changelog, now_ms)
        truth = {e: Held(p, s) for e, (p, s) in self._ledger.held(mine).items()}
        for execution_id, current in table.items():
            if current.partition not in mine:
                held.forget(execution_id)
            elif execution_id not in truth:
                held.release(current.partition, execution_id)
        for execution_id, kept in truth.items():
            current_or_none = table.get(execution_id)
            if current_or_none is None or not current_or_none.same_pause(kept):
                held.hold(kept.partition, execution_id, kept.to_json())
        self.due.rebuild((h.suspension.due_at_ms, e, h.partition) for e, h in truth.items())
        return len(truth)

    def _suspended(self, partition: int, suspension: Suspension, now_ms: int, effects: Effects) -> None:
        """Holds a paused execution; the same suspension again (a message handled again after a crash,
        or a replayed batch of the qualifier) ensures what it needs is there, as it was."""
        current = effects.staged.get(suspension.execution_id)
        if current is None:
            self._hold(Held(partition, suspension), now_ms, effects)
        elif current.suspension.step == suspension.step:
            self._hold(current, now_ms, effects)

    @staticmethod
    def _wait_outcomes(signals: Sequence[Signal], staged: Staged) -> list[WaitOutcome]:
        """The outcome each wait a DUE or an EXIT of the turn ends would take: the first signal per
        wait, in the order they came."""
        candidates: dict[str, WaitOutcome] = {}
        for signal in signals:
            if signal.kind not in ("DUE", "EXIT") or signal.execution_id in candidates:
                continue
            current = staged.get(signal.execution_id)
            if current is None or current.suspension.kind != "wait":
                continue
            if signal.kind == "DUE" and current.suspension.due_at_ms != signal.outcome_at_ms:
                continue
            candidates[signal.execution_id] = WaitOutcome(
                signal.execution_id, current.suspension.step, signal.outcome, signal.outcome_at_ms, signal.note
            )
        return list(candidates.values())

    def _act(self, signal: Signal, now_ms: int, effects: Effects, taken: dict[str, WaitOutcome]) -> None:
        current = effects.staged.get(signal.execution_id)
        if signal.kind == "DECIDED" and (current is None or current.suspension.approval_id != signal.approval_id):
            current = self._held_elsewhere(signal)
        if current is None:
            return
        suspension = current.suspension
        resumption = Resumption(Outcome(signal.outcome), signal.outcome_at_ms, signal.actor, signal.note)
        if suspension.kind == "approval":
            if signal.kind == "EXIT":
                if not self._exit_takes(suspension, signal, effects):
                    return
            elif signal.kind == "DUE":
                if suspension.due_at_ms != signal.outcome_at_ms:
                    return
                if not self._ledger.time_out(suspension.approval_id, signal.outcome_at_ms):
                    return
            effects.resumed_approvals.append(suspension.approval_id)
        elif signal.kind == "DECIDED":
            raise NotHeld(f"a decision for execution {signal.execution_id}, which waits at step {suspension.step}")
        else:
            won = taken.get(signal.execution_id)
            if won is not None and won.step == suspension.step:
                resumption = Resumption(Outcome(won.outcome), won.at_ms, "", won.note)
            elif signal.kind == "DUE" and suspension.due_at_ms != signal.outcome_at_ms:
                return
        started = suspension.execution
        workflow = self._versions.get(signal.org_id, started["workflow_id"], started["workflow_version"])
        execution = resume(workflow, suspension, resumption, now_ms)
        if execution.pause is not None:
            self._hold(Held(current.partition, suspend(execution, now_ms)), now_ms, effects)
        else:
            effects.staged.release(current.partition, signal.execution_id)
            effects.released.append(
                (execution.org_id, execution.workflow_id, execution.lead_id, execution.execution_id)
            )
        effects.resumed += 1
        self._outputs.emit(execution, now_ms, effects.outputs)
        if signal.kind == "EXIT" and resumption.outcome is not Outcome.EXITED and execution.pause is not None:
            # The wait had ended before the exit (an earlier try of this turn took that): the lead
            # leaves at the step the run went on to.
            self._act(signal, now_ms, effects, taken)

    def _exit_takes(self, suspension: Suspension, signal: Signal, effects: Effects) -> bool:
        """Whether an exit takes this approval: in PostgreSQL, against a person's decision and the
        timeout. An approval with no row yet (this very turn opens it) nobody can have decided: the
        exit takes it, and it is not opened."""
        status = self._ledger.cancel(suspension.approval_id, signal.outcome_at_ms, signal.note)
        if status is None:
            effects.withheld.append(suspension.approval_id)
        return status in (None, "cancelled")

    def _held_elsewhere(self, signal: Signal) -> Held:
        """A decision whose execution the table does not hold at its approval: PostgreSQL may, when
        the table lags it. A decision for an execution held nowhere at that approval is never marked
        resumed: it is an error to look at."""
        found = self._ledger.held_executions([signal.execution_id]).get(signal.execution_id)
        if found is None or found[1].approval_id != signal.approval_id:
            raise NotHeld(f"a decision for execution {signal.execution_id}, which nothing holds at that approval")
        return Held(*found)

    def _hold(self, held: Held, now_ms: int, effects: Effects) -> None:
        effects.staged.hold(held)
        suspension = held.suspension
        effects.due.append((suspension.due_at_ms, suspension.execution_id, held.partition))
        if suspension.kind == "approval":
            effects.opened.append((suspension, held.partition, now_ms))
