"""In-memory stand-ins for what the orchestrator writes, for tests with no I/O. They mirror the real
stores' semantics, conditional updates and unique constraints included (streams/orchestrator/
approval_ledger.py, the API's decision in api/control_plane/approvals.py, the approvals table's
constraints as api/control_plane/tables.py declares them), and fail on command: `down` makes every
call raise as a store that is down does; `crash_at` raises `Crash` at a named point, as a process
dying there."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint
from sqlalchemy.exc import IntegrityError, OperationalError

from api.control_plane.tables import Approval, Base
from processors.compiler import CompiledWorkflow
from processors.orchestration import Suspension
from streams.orchestrator.approval_ledger import Fenced, Settlement, WaitOutcome
from streams.orchestrator.orchestrator import Run
from streams.orchestrator.workflow_versions import UnknownVersion


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing in memory survives."""


def unavailable(what: str) -> OperationalError:
    return OperationalError(f"-- {what}", {}, ConnectionRefusedError(f"{what} is down"))


APPROVALS = Base.metadata.tables[Approval.__tablename__]
APPROVAL_KEYS: list[tuple[str, ...]] = [
    tuple(column.name for column in constraint.columns)
    for constraint in APPROVALS.constraints
    if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint)
] + [tuple(column.name for column in index.columns) for index in APPROVALS.indexes if index.unique]
"""The approvals table's unique keys, read from its declaration: an insert the real table refuses
is refused here too."""


@dataclass
class Faults:
    down: set[str] = field(default_factory=set)
    """Stores that refuse every call: `postgres`, `redis`."""
    crash_at: str | None = None
    """`before:<point>` or `after:<point>`, once."""
    refused: set[str] = field(default_factory=set)
    """Executions whose rows PostgreSQL refuses for good (their organization was deleted, say)."""

    def check(self, store: str) -> None:
        if store in self.down:
            raise unavailable(store)

    def point(self, when: str, name: str) -> None:
        if self.crash_at == f"{when}:{name}":
            self.crash_at = None
            raise Crash(f"{when} {name}")


@dataclass
class ApprovalRow:
    id: str
    execution_id: str
    step: str
    partition: int
    due_at_ms: int
    status: str = "pending"
    decided_at_ms: int = 0
    decided_by: str = ""
    comment: str = ""
    resumed: bool = False
    decisions: int = 0
    """How many times the row left `pending`: never more than once."""


class Ledger:
    """PostgreSQL: approvals and held_executions, one transaction per call."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.approvals: dict[str, ApprovalRow] = {}
        self.held_rows: dict[str, tuple[int, Suspension]] = {}
        self.released: set[str] = set()
        """released_executions: what was held once and released."""
        self.generations: dict[int, int] = {}
        """held_partitions.generation: bumped by every takeover."""
        self.wait_outcomes: dict[str, WaitOutcome] = {}
        """held_executions.outcome: the first outcome taken for the step the execution waits at."""
        self.opened: list[str] = []
        """Approval ids, each time an insert created the row."""

    def _call(self, name: str) -> None:
        self.faults.check("postgres")
        self.faults.point("before", name)

    def resumed_already(self, approval_ids: Sequence[str]) -> set[str]:
        self._call("resumed_already")
        return {a for a in approval_ids if a in self.approvals and self.approvals[a].resumed}

    def time_out(self, approval_id: str, at_ms: int) -> bool:
        return self._take(approval_id, "timed_out", at_ms, "") == "timed_out"

    def cancel(self, approval_id: str, at_ms: int, note: str) -> str | None:
        return self._take(approval_id, "cancelled", at_ms, note)

    def _take(self, approval_id: str, status: str, at_ms: int, note: str) -> str | None:
        self._call(status)
        row = self.approvals.get(approval_id)
        if row is None or row.status != "pending":
            return row.status if row is not None else None
        row.status, row.decided_at_ms, row.comment = status, at_ms, note
        row.decisions += 1
        self.faults.point("after", status)
        return status

    def decide(self, approval_id: str, status: str, actor: str, now_ms: int) -> int:
        """The API's decision: the HTTP status a person gets."""
        self.faults.check("postgres")
        row = self.approvals.get(approval_id)
        if row is None:
            return 404
        held = self.held_rows.get(row.execution_id)
        if row.status != "pending" or row.due_at_ms <= now_ms or held is None or held[1].approval_id != row.id:
            return 409
        row.status, row.decided_at_ms, row.decided_by = status, now_ms, actor
        row.decisions += 1
        return 200

    def take_waits(self, candidates: Sequence[WaitOutcome]) -> dict[str, WaitOutcome]:
        self._call("take_waits")
        for candidate in candidates:
            held = self.held_rows.get(candidate.execution_id)
            if held is not None and held[1].step == candidate.step:
                self.wait_outcomes.setdefault(candidate.execution_id, candidate)
        self.faults.point("after", "take_waits")
        return {
            c.execution_id: self.wait_outcomes[c.execution_id]
            for c in candidates
            if c.execution_id in self.wait_outcomes and self.wait_outcomes[c.execution_id].step == c.step
        }

    def settle(self, settlement: Settlement) -> None:
        self._call("settle")
        with self._transaction():
            lost = [p for p, generation in settlement.generations.items() if self.generations.get(p) != generation]
            if lost:
                raise Fenced(lost)
            refused = self.faults.refused & (set(settlement.held) | {s.execution_id for s, _, _ in settlement.opened})
            if refused:
                raise IntegrityError("INSERT INTO held_executions", {}, ValueError(f"refused: {sorted(refused)}"))
            for execution_id, (partition, suspension) in settlement.held.items():
                taken = self.wait_outcomes.get(execution_id)
                if taken is not None and (suspension is None or suspension.step != taken.step):
                    del self.wait_outcomes[execution_id]
                if suspension is None:
                    self.held_rows.pop(execution_id, None)
                    self.released.add(execution_id)
                else:
                    self.held_rows[execution_id] = (partition, suspension)
            self._open(settlement.opened)
            for approval_id in settlement.resumed:
                if approval_id in self.approvals:
                    self.approvals[approval_id].resumed = True
        self.faults.point("after", "settle")

    def _open(self, opened: Sequence[tuple[Suspension, int, int]]) -> None:
        for suspension, partition, _ in opened:
            if suspension.approval_id not in self.approvals:
                row = ApprovalRow(
                    suspension.approval_id, suspension.execution_id, suspension.step, partition, suspension.due_at_ms
                )
                self._insert(row)
                self.opened.append(suspension.approval_id)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """All of the block's writes or none, as one PostgreSQL transaction."""
        held, outcomes, opened = dict(self.held_rows), dict(self.wait_outcomes), list(self.opened)
        released, generations = set(self.released), dict(self.generations)
        approvals = {approval_id: replace(row) for approval_id, row in self.approvals.items()}
        try:
            yield
        except Exception:
            self.held_rows, self.wait_outcomes, self.opened, self.approvals = held, outcomes, opened, approvals
            self.released, self.generations = released, generations
            raise

    def _insert(self, row: ApprovalRow) -> None:
        """INSERT ... ON CONFLICT (id) DO NOTHING: any other unique key it breaks is an error."""
        for key in APPROVAL_KEYS:
            values = tuple(getattr(row, column) for column in key)
            if any(tuple(getattr(other, column) for column in key) == values for other in self.approvals.values()):
                raise IntegrityError("INSERT INTO approvals", {}, ValueError(f"duplicate key {key} = {values}"))
        self.approvals[row.id] = row

    def held(self, partitions: Sequence[int]) -> dict[str, tuple[int, Suspension]]:
        self._call("held")
        return {e: held for e, held in self.held_rows.items() if held[0] in partitions}

    def held_executions(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, Suspension]]:
        self._call("held_executions")
        return {e: self.held_rows[e] for e in execution_ids if e in self.held_rows}

    def take_over(
        self, partitions: Sequence[int], changelog: Iterable[tuple[int, Suspension]], now_ms: int
    ) -> dict[int, int]:
        self._call("take_over")
        with self._transaction():
            for partition in partitions:
                self.generations[partition] = self.generations.get(partition, 0) + 1
            found = [
                (partition, s)
                for partition, s in changelog
                if partition in partitions
                and s.execution_id not in self.held_rows
                and s.execution_id not in self.released
            ]
            for partition, suspension in found:
                self.held_rows[suspension.execution_id] = (partition, suspension)
            self._open([(s, partition, now_ms) for partition, s in found if s.kind == "approval"])
        self.faults.point("after", "take_over")
        return {partition: self.generations[partition] for partition in partitions}

    def undelivered(self, partitions: Sequence[int], limit: int, deferred: Sequence[str] = ()) -> list[ApprovalRow]:
        self._call("undelivered")
        rows = [
            row
            for row in self.approvals.values()
            if row.status != "pending"
            and not row.resumed
            and row.partition in partitions
            and row.execution_id not in deferred
        ]
        return sorted(rows, key=lambda row: row.decided_at_ms)[:limit]


class Releases:
    """Redis `dp:{org}:released`."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.released: dict[tuple[str, str, str], str] = {}

    def release(self, runs: Sequence[Run]) -> None:
        self.faults.check("redis")
        self.faults.point("before", "release")
        for org, workflow, lead, execution in runs:
            self.released[(org, workflow, lead)] = execution
        self.faults.point("after", "release")


class Table:
    """The faust table: what it holds in memory, and its changelog, whose records reach the broker
    only when flushed (a crash loses what was not)."""

    def __init__(self) -> None:
        self.rows: dict[str, bytes] = {}
        self.changelog: dict[str, bytes] = {}
        self.unflushed: list[tuple[str, bytes | None]] = []

    def get(self, execution_id: str) -> bytes | None:
        return self.rows.get(execution_id)

    def hold(self, partition: int, execution_id: str, held: bytes) -> None:
        self.rows[execution_id] = held
        self.unflushed.append((execution_id, held))

    def release(self, partition: int, execution_id: str) -> None:
        self.rows.pop(execution_id, None)
        self.unflushed.append((execution_id, None))

    def entries(self) -> Iterable[tuple[str, bytes]]:
        return list(self.rows.items())

    def forget(self, execution_id: str) -> None:
        self.rows.pop(execution_id, None)

    def flush(self) -> None:
        for execution_id, held in self.unflushed:
            if held is None:
                self.changelog.pop(execution_id, None)
            else:
                self.changelog[execution_id] = held
        self.unflushed.clear()

    def restarted(self, changelog_kept: bool = True) -> Table:
        """The table a new process recovers: the changelog, or nothing (a broker that lost it)."""
        table = Table()
        if changelog_kept:
            table.rows = dict(self.changelog)
            table.changelog = dict(self.changelog)
        return table


class Versions:
    def __init__(self, *workflows: CompiledWorkflow) -> None:
        self.workflows = {w.workflow_id: w for w in workflows}
        self.missing: set[str] = set()

    def get(self, org_id: str, workflow_id: str, version: int) -> CompiledWorkflow:
        if workflow_id in self.missing:
            raise UnknownVersion(f"no version {version} of {workflow_id}")
        return self.workflows[workflow_id]


class NoAgents:
    """The control plane as agent calls read it, for orgs that deployed no agent."""

    def revisions(self, org_ids: list[str]) -> dict[str, int]:
        return dict.fromkeys(org_ids, 1)

    def agents(self, org_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        return {org_id: [] for org_id in org_ids}
