"""The orchestrator's side of PostgreSQL: the `approvals` table and what it holds (`held_executions`).

The approvals table is the one source of truth for a decision: the API takes a person's decision
there with a conditional update from `pending`, and a timeout or an exit is taken the same way here,
so exactly one of them wins (the loser changes nothing). Opening an approval is idempotent (its id
derives from the execution and the step), and so is marking it resumed.

`held_executions` is the one durable record of what the orchestrator holds: a turn writes it in the
same transaction as the approvals it opened and marked resumed (`settle`), so the two always agree,
and the faust table is rebuilt from it after every rebalance (a broker that lost its changelog, as
the in-memory embedded one does at `dev down`, loses nothing). An execution released is remembered
in `released_executions` for `RELEASED_KEPT`, so a changelog entry of it that a crash left behind is
never taken for one PostgreSQL has not seen (`take_over`).

Each inbox partition has a generation (`held_partitions`), bumped by every takeover in the same
transaction as the takeover reads what the partition holds. A turn is written only while every
partition it writes still has the generation its process took over (`settle` checks it under a
share lock, which a takeover's update waits for): a process that lost a partition while its turn
was retried can no longer overwrite what the new owner did.

Partitions are named by their inbox topic too (`inbox`): deployments that share a broker with topic
prefixes may share one PostgreSQL, and each orchestrator group takes over, holds, fences and polls
the decisions of its own inbox only. Rows written before inboxes were named (`inbox` null) belong
to the one deployment there was then, and its first takeover of their partitions claims them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from processors.orchestration import Suspension
from streams.clock import moment

log = logging.getLogger(__name__)

RELEASED_KEPT = "7 days"
"""How long a released execution is remembered. A changelog holds one after its release only when a
process died between the PostgreSQL commit and its table write, until the next takeover of the
partition writes the tombstone: minutes, not days."""


class Fenced(RuntimeError):
    """Another process took these inbox partitions over after this one did: nothing of the turn was
    written, and the new owner finds its signals again."""

    def __init__(self, partitions: Iterable[int]) -> None:
        self.partitions = frozenset(partitions)
        super().__init__(f"inbox partitions {sorted(self.partitions)} were taken over by another process")


@dataclass(frozen=True, slots=True)
class Decision:
    approval_id: str
    execution_id: str
    org_id: str
    partition: int
    status: str
    """approved | rejected | timed_out | cancelled"""
    decided_by: str
    comment: str
    decided_at_ms: int


@dataclass(frozen=True, slots=True)
class WaitOutcome:
    execution_id: str
    step: str
    outcome: str
    """wait_elapsed | exited"""
    at_ms: int
    note: str


@dataclass
class Settlement:
    """What one orchestrator turn writes, in one transaction."""

    held: dict[str, tuple[int, Suspension | None]] = field(default_factory=dict)
    """By execution id: (inbox partition, the suspension it is held at), or None once it ended."""
    opened: list[tuple[Suspension, int, int]] = field(default_factory=list)
    """An approval per (suspension, inbox partition, requested at ms); one that exists is kept."""
    resumed: list[str] = field(default_factory=list)
    """By approval id, approvals acted on, which the decision poll stops returning. An execution has
    an approval per approval step, so the one its run pauses at next is not among them."""
    generations: dict[int, int] = field(default_factory=dict)
    """The generation of each inbox partition the turn writes, as its process took the partition
    over: the turn is written only while every one of them is still the partition's."""

    def __bool__(self) -> bool:
        return bool(self.held or self.opened or self.resumed)

    def partitions(self) -> set[int]:
        """The inbox partitions the turn writes (an approval resumed is always its execution's too)."""
        return {partition for partition, _ in self.held.values()} | {partition for _, partition, _ in self.opened}


class ApprovalLedger:
    def __init__(self, engine: Engine, inbox: str) -> None:
        self._engine = engine
        self._inbox = inbox
        """The orchestrator inbox topic whose partitions this ledger's numbers are."""

    def resumed_already(self, approval_ids: Sequence[str]) -> set[str]:
        """Which of these approvals were decided and resumed: a suspension of theirs arriving again
        (the qualifier replayed a batch) must not be held a second time."""
        if not approval_ids:
            return set()
        with self._engine.connect() as connection:
            rows = connection.execute(
                text("SELECT id FROM approvals WHERE id = ANY(:ids) AND resumed_at IS NOT NULL"),
                {"ids": list(approval_ids)},
            )
            return {row[0] for row in rows}

    def time_out(self, approval_id: str, at_ms: int) -> bool:
        """Takes the timeout's decision, with its audit entry; False when someone decided first."""
        return self._take(approval_id, "timed_out", at_ms, "approval.timeout", None) == "timed_out"

    def cancel(self, approval_id: str, at_ms: int, note: str) -> str | None:
        """Takes the approval for an exit (the lead matched the exit condition), with its audit
        entry. Returns the approval's status then: `cancelled` when this exit took it (now, or an
        earlier try of the same turn), another when a person or the timeout decided first (the exit
        loses, and that decision resumes the execution), None when there is no such approval."""
        return self._take(approval_id, "cancelled", at_ms, "approval.cancel", note)

    def _take(self, approval_id: str, status: str, at_ms: int, action: str, note: str | None) -> str | None:
        """The status the approval has after trying to take it from `pending` for `status`."""
        with self._engine.begin() as connection:
            row = connection.execute(
                text(
                    "UPDATE approvals SET status = :status, decided_at = :at, comment = :note "
                    "WHERE id = :id AND status = 'pending' RETURNING org_id, project_id"
                ),
                {"id": approval_id, "status": status, "at": moment(at_ms), "note": note},
            ).first()
            if row is None:
                current: str | None = connection.execute(
                    text("SELECT status FROM approvals WHERE id = :id"), {"id": approval_id}
                ).scalar()
                return current
            after: dict[str, Any] = {"status": status, **({"reason": note} if note else {})}
            connection.execute(
                text(
                    "INSERT INTO audit_log (org_id, actor_type, actor_id, actor_label, action, resource_type, "
                    "resource_id, project_id, before, after) VALUES (:org, 'system', 'system:orchestrator', "
                    "'orchestrator', :action, 'approval', :id, :project, CAST(:before AS jsonb), "
                    "CAST(:after AS jsonb))"
                ),
                {
                    "org": row[0],
                    "action": action,
                    "id": approval_id,
                    "project": row[1],
                    "before": '{"status": "pending"}',
                    "after": orjson.dumps(after).decode(),
                },
            )
        return status

    def take_waits(self, candidates: Sequence[WaitOutcome]) -> dict[str, WaitOutcome]:
        """A wait's outcome (its end, or an exit) is taken here before its resume is produced, as an
        approval's decision is: the first one taken wins, and a turn tried again after a crash
        resumes with it whatever signal comes first then. Returns the outcomes that won, by
        execution id, for the candidates' executions still held at those steps."""
        if not candidates:
            return {}
        columns = {
            "ids": [c.execution_id for c in candidates],
            "steps": [c.step for c in candidates],
            "outcomes": [c.outcome for c in candidates],
            "ats": [c.at_ms for c in candidates],
            "notes": [c.note for c in candidates],
        }
        with self._engine.begin() as connection:
            taken = {
                row[0]: _wait_outcome(row)
                for row in connection.execute(
                    text(
                        "UPDATE held_executions h SET outcome = v.outcome, outcome_at_ms = v.at, outcome_note = v.note "
                        "FROM unnest(CAST(:ids AS text[]), CAST(:steps AS text[]), CAST(:outcomes AS text[]), "
                        "CAST(:ats AS bigint[]), CAST(:notes AS text[])) AS v(execution_id, step, outcome, at, note) "
                        "WHERE h.execution_id = v.execution_id AND h.step = v.step AND h.outcome IS NULL "
                        "RETURNING h.execution_id, h.step, h.outcome, h.outcome_at_ms, h.outcome_note"
                    ),
                    columns,
                )
            }
            earlier = [c for c in candidates if c.execution_id not in taken]
            if earlier:
                rows = connection.execute(
                    text(
                        "SELECT h.execution_id, h.step, h.outcome, h.outcome_at_ms, h.outcome_note "
                        "FROM held_executions h JOIN unnest(CAST(:ids AS text[]), CAST(:steps AS text[])) "
                        "AS v(execution_id, step) ON h.execution_id = v.execution_id AND h.step = v.step "
                        "WHERE h.outcome IS NOT NULL"
                    ),
                    {"ids": [c.execution_id for c in earlier], "steps": [c.step for c in earlier]},
                )
                taken |= {row[0]: _wait_outcome(row) for row in rows}
            return taken

    def settle(self, settlement: Settlement) -> None:
        """What one orchestrator turn did, in one transaction: what it holds and no longer holds, the
        approvals it opened (in the workflow's project) and those it acted on. Every statement is
        idempotent, so a turn settled again after a crash changes nothing the second time."""
        if not settlement:
            return
        with self._engine.begin() as connection:
            _fence(connection, self._inbox, settlement.generations)
            _write_held(connection, self._inbox, settlement.held)
            _open(connection, self._inbox, settlement.opened)
            if settlement.resumed:
                connection.execute(
                    text("UPDATE approvals SET resumed_at = now() WHERE id = ANY(:ids) AND resumed_at IS NULL"),
                    {"ids": settlement.resumed},
                )

    def held(self, partitions: Sequence[int]) -> dict[str, tuple[int, Suspension]]:
        """What these inbox partitions hold, by execution id: the truth the table is rebuilt from."""
        return self._held("inbox = :inbox AND partition = ANY(:keys)", list(partitions))

    def held_executions(self, execution_ids: Sequence[str]) -> dict[str, tuple[int, Suspension]]:
        return self._held("execution_id = ANY(:keys)", list(execution_ids))

    def _held(self, where: str, keys: list[Any]) -> dict[str, tuple[int, Suspension]]:
        if not keys:
            return {}
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(f"SELECT execution_id, partition, suspension FROM held_executions WHERE {where}"),
                {"keys": keys, "inbox": self._inbox},
            )
            held: dict[str, tuple[int, Suspension]] = {}
            for execution_id, partition, suspension in rows:
                try:
                    held[execution_id] = (partition, Suspension.from_json(suspension))
                except (KeyError, TypeError, ValueError) as exc:
                    # One row that cannot be read must not hold up every other of its partition.
                    log.error(
                        "held execution %s cannot be read (%s: %s); left as it is",
                        execution_id,
                        type(exc).__name__,
                        exc,
                    )
            return held

    def take_over(
        self, partitions: Sequence[int], changelog: Iterable[tuple[int, Suspension]], now_ms: int
    ) -> dict[int, int]:
        """This process takes the inbox partitions over: their generations bumped, returned by
        partition. What their changelog holds that PostgreSQL has never seen, neither held nor
        released (a suspension a build before PostgreSQL kept them held in its changelog only), is
        adopted into `held_executions`, with its approval; every takeover does it, so an older
        process that held the partition meanwhile loses nothing. An execution PostgreSQL released
        is never adopted back, whatever a changelog still says."""
        mine = {"partitions": sorted(set(partitions)), "inbox": self._inbox}
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO held_partitions (inbox, partition) "
                    "SELECT :inbox, unnest(CAST(:partitions AS integer[])) ON CONFLICT (inbox, partition) DO NOTHING"
                ),
                mine,
            )
            connection.execute(
                text(
                    "SELECT 1 FROM held_partitions WHERE inbox = :inbox AND partition = ANY(:partitions) "
                    "ORDER BY partition FOR UPDATE"
                ),
                mine,
            )
            generations = {
                partition: generation
                for partition, generation in connection.execute(
                    text(
                        "UPDATE held_partitions SET generation = generation + 1 "
                        "WHERE inbox = :inbox AND partition = ANY(:partitions) RETURNING partition, generation"
                    ),
                    mine,
                )
            }
            for table in ("held_executions", "approvals"):
                connection.execute(
                    text(f"UPDATE {table} SET inbox = :inbox WHERE inbox IS NULL AND partition = ANY(:partitions)"),
                    mine,
                )
            _adopt(
                connection,
                self._inbox,
                [(partition, s) for partition, s in changelog if partition in generations],
                now_ms,
            )
            connection.execute(
                text(f"DELETE FROM released_executions WHERE released_at < now() - interval '{RELEASED_KEPT}'")
            )
        return generations

    def undelivered(self, partitions: Sequence[int], limit: int, deferred: Sequence[str] = ()) -> list[Decision]:
        """Decided approvals of these inbox partitions that nothing resumed from yet, oldest
        decision first, without the `deferred` executions (whose handling failed and waits): what
        the orchestrator owning those partitions still has to act on. Leaving the deferred out in the
        query keeps them from filling the window and hiding the decisions behind them."""
        if not partitions:
            return []
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, execution_id, org_id, partition, status, decided_by->>'label', comment, decided_at "
                    "FROM approvals WHERE status <> 'pending' AND resumed_at IS NULL AND inbox = :inbox "
                    "AND partition = ANY(:partitions) AND execution_id <> ALL(:deferred) "
                    "ORDER BY decided_at LIMIT :limit"
                ),
                {"partitions": list(partitions), "limit": limit, "deferred": list(deferred), "inbox": self._inbox},
            )
            return [
                Decision(
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    row[5] or "",
                    row[6] or "",
                    round(row[7].timestamp() * 1000) if row[7] is not None else 0,
                )
                for row in rows
            ]


def _fence(connection: Connection, inbox: str, generations: dict[int, int]) -> None:
    """Raises `Fenced` unless every partition still has the generation its process took over. The
    share lock holds a takeover's update back until this transaction ends, and a settle that comes
    after the takeover sees its generation."""
    if not generations:
        return
    current = {
        partition: generation
        for partition, generation in connection.execute(
            text(
                "SELECT partition, generation FROM held_partitions WHERE inbox = :inbox "
                "AND partition = ANY(:partitions) ORDER BY partition FOR SHARE"
            ),
            {"partitions": sorted(generations), "inbox": inbox},
        )
    }
    taken = [partition for partition, generation in generations.items() if current.get(partition) != generation]
    if taken:
        raise Fenced(taken)


def _adopt(connection: Connection, inbox: str, changelog: Sequence[tuple[int, Suspension]], now_ms: int) -> None:
    """Holds what the changelog holds and PostgreSQL has never seen; an organization deleted meanwhile
    has nothing adopted."""
    if not changelog:
        return
    unseen = {
        row[0]
        for row in connection.execute(
            text(
                "SELECT v.id FROM unnest(CAST(:ids AS text[])) AS v(id) "
                "WHERE NOT EXISTS (SELECT 1 FROM held_executions h WHERE h.execution_id = v.id) "
                "AND NOT EXISTS (SELECT 1 FROM released_executions r WHERE r.execution_id = v.id)"
            ),
            {"ids": [s.execution_id for _, s in changelog]},
        )
    }
    orgs = {str(s.execution["org_id"]) for _, s in changelog if s.execution_id in unseen}
    existing = {
        row[0]
        for row in connection.execute(text("SELECT id FROM organizations WHERE id = ANY(:ids)"), {"ids": sorted(orgs)})
    }
    found = [(p, s) for p, s in changelog if s.execution_id in unseen and s.execution["org_id"] in existing]
    if found:
        log.info("adopting %d paused executions only a changelog held", len(found))
    _write_held(connection, inbox, {s.execution_id: (partition, s) for partition, s in found}, keep_existing=True)
    _open(connection, inbox, [(s, partition, now_ms) for partition, s in found if s.kind == "approval"])


def _open(connection: Connection, inbox: str, opened: Sequence[tuple[Suspension, int, int]]) -> None:
    """An approval per (suspension, inbox partition, requested at ms), in the workflow's project;
    one that exists already is left as it is."""
    if not opened:
        return
    connection.execute(
        text(
            "INSERT INTO approvals (id, org_id, project_id, workflow_id, workflow_version, "
            "execution_id, step, lead_id, lead, explanation, approvers, status, requested_at, due_at, "
            "inbox, partition) SELECT :id, :org_id, w.project_id, w.id, :workflow_version, :execution_id, "
            ":step, :lead_id, CAST(:lead AS jsonb), CAST(:explanation AS jsonb), :approvers, 'pending', "
            ":requested_at, :due_at, :inbox, :partition FROM workflows w "
            "WHERE w.id = :workflow_id AND w.org_id = :org_id ON CONFLICT (id) DO NOTHING"
        ),
        [_approval_row(suspension, inbox, partition, at_ms) for suspension, partition, at_ms in opened],
    )


def _write_held(
    connection: Connection, inbox: str, held: dict[str, tuple[int, Suspension | None]], keep_existing: bool = False
) -> None:
    ended = [execution_id for execution_id, (_, suspension) in held.items() if suspension is None]
    rows = [
        {
            "execution_id": execution_id,
            "org_id": suspension.execution["org_id"],
            "inbox": inbox,
            "partition": partition,
            "kind": suspension.kind,
            "step": suspension.step,
            "due_at": moment(suspension.due_at_ms),
            "suspension": suspension.to_json().decode(),
        }
        for execution_id, (partition, suspension) in held.items()
        if suspension is not None
    ]
    if ended:
        connection.execute(text("DELETE FROM held_executions WHERE execution_id = ANY(:ids)"), {"ids": ended})
        connection.execute(
            text(
                "INSERT INTO released_executions (execution_id) SELECT unnest(CAST(:ids AS text[])) "
                "ON CONFLICT (execution_id) DO NOTHING"
            ),
            {"ids": ended},
        )
    if rows:
        on_conflict = (
            "DO NOTHING"
            if keep_existing
            else "DO UPDATE SET inbox = excluded.inbox, partition = excluded.partition, kind = excluded.kind, "
            "step = excluded.step, "
            "due_at = excluded.due_at, suspension = excluded.suspension, held_at = now(), "
            "outcome = CASE WHEN held_executions.step = excluded.step THEN held_executions.outcome END, "
            "outcome_at_ms = CASE WHEN held_executions.step = excluded.step THEN held_executions.outcome_at_ms END, "
            "outcome_note = CASE WHEN held_executions.step = excluded.step THEN held_executions.outcome_note END"
        )
        connection.execute(
            text(
                "INSERT INTO held_executions (execution_id, org_id, inbox, partition, kind, step, due_at, suspension) "
                "VALUES (:execution_id, :org_id, :inbox, :partition, :kind, :step, :due_at, :suspension) "
                f"ON CONFLICT (execution_id) {on_conflict}"
            ),
            rows,
        )


def _wait_outcome(row: Any) -> WaitOutcome:
    return WaitOutcome(row[0], row[1], row[2], row[3], row[4] or "")


def _approval_row(suspension: Suspension, inbox: str, partition: int, at_ms: int) -> dict[str, Any]:
    execution, context = suspension.execution, suspension.context
    subject = context.get("lead") or context.get("crm_object") or {}
    return {
        "id": suspension.approval_id,
        "org_id": execution["org_id"],
        "workflow_id": execution["workflow_id"],
        "workflow_version": execution["workflow_version"],
        "execution_id": suspension.execution_id,
        "step": suspension.step,
        "lead_id": execution["lead_id"],
        "lead": orjson.dumps(subject).decode(),
        "explanation": orjson.dumps(
            {
                "score": execution["score"],
                "score_breakdown": execution["score_breakdown"],
                "tier": execution["tier"],
                "owner": execution["owner"],
                "routing_reason": execution["routing_reason"],
                "decisions": execution["decisions"],
                "actions": execution["actions"],
            }
        ).decode(),
        "approvers": [a if a.startswith("role:") else a.lower() for a in suspension.approvers],
        "requested_at": moment(at_ms),
        "due_at": moment(suspension.due_at_ms),
        "inbox": inbox,
        "partition": partition,
    }
