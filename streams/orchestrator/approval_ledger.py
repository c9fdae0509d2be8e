"""The orchestrator's side of the `approvals` table in PostgreSQL.

The table is the one source of truth for a decision: the API takes a person's decision there with a
conditional update from `pending`, and a timeout is taken the same way here, so exactly one of them
wins. Opening an approval is idempotent (its id derives from the execution and the step), and so is
marking it resumed: a message handled twice after a crash changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, text

from processors.orchestration import Suspension
from streams.clock import moment


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


class ApprovalLedger:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

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
        """Takes the timeout's decision, with its audit entry; False when a person decided first."""
        with self._engine.begin() as connection:
            row = connection.execute(
                text(
                    "UPDATE approvals SET status = 'timed_out', decided_at = :at "
                    "WHERE id = :id AND status = 'pending' RETURNING org_id, project_id"
                ),
                {"id": approval_id, "at": moment(at_ms)},
            ).first()
            if row is None:
                return False
            connection.execute(
                text(
                    "INSERT INTO audit_log (org_id, actor_type, actor_id, actor_label, action, resource_type, "
                    "resource_id, project_id, before, after) VALUES (:org, 'system', 'system:orchestrator', "
                    "'orchestrator', 'approval.timeout', 'approval', :id, :project, CAST(:before AS jsonb), "
                    "CAST(:after AS jsonb))"
                ),
                {
                    "org": row[0],
                    "id": approval_id,
                    "project": row[1],
                    "before": '{"status": "pending"}',
                    "after": '{"status": "timed_out"}',
                },
            )
        return True

    def settle(
        self,
        opened: Sequence[tuple[Suspension, int, int]],
        cancelled: Sequence[str],
        resumed: Sequence[str],
    ) -> None:
        """What one orchestrator turn did, in one transaction:
        - `opened`: an approval per (suspension, inbox partition, requested at ms), in the workflow's
          project; one that exists already (a message handled again) is left as it is;
        - `cancelled`: by execution id, pending approvals whose leads left (exit condition);
        - `resumed`: by execution id, approvals acted on, which the decision poll stops returning."""
        if not (opened or cancelled or resumed):
            return
        with self._engine.begin() as connection:
            if opened:
                connection.execute(
                    text(
                        "INSERT INTO approvals (id, org_id, project_id, workflow_id, workflow_version, "
                        "execution_id, step, lead_id, lead, explanation, approvers, status, requested_at, due_at, "
                        "partition) SELECT :id, :org_id, w.project_id, w.id, :workflow_version, :execution_id, "
                        ":step, :lead_id, CAST(:lead AS jsonb), CAST(:explanation AS jsonb), :approvers, 'pending', "
                        ":requested_at, :due_at, :partition FROM workflows w "
                        "WHERE w.id = :workflow_id AND w.org_id = :org_id ON CONFLICT (id) DO NOTHING"
                    ),
                    [_approval_row(suspension, partition, at_ms) for suspension, partition, at_ms in opened],
                )
            if cancelled:
                connection.execute(
                    text(
                        "UPDATE approvals SET status = 'cancelled', decided_at = now() "
                        "WHERE execution_id = ANY(:ids) AND status = 'pending'"
                    ),
                    {"ids": list(cancelled)},
                )
            if resumed:
                connection.execute(
                    text(
                        "UPDATE approvals SET resumed_at = now() WHERE execution_id = ANY(:ids) AND resumed_at IS NULL"
                    ),
                    {"ids": list(resumed)},
                )

    def undelivered(self, partitions: Sequence[int], limit: int) -> list[Decision]:
        """Decided approvals of these inbox partitions whose executions have not resumed yet, oldest
        decision first: what the orchestrator owning those partitions still has to act on."""
        if not partitions:
            return []
        with self._engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT id, execution_id, org_id, partition, status, decided_by->>'label', comment, decided_at "
                    "FROM approvals WHERE status <> 'pending' AND resumed_at IS NULL AND partition = ANY(:partitions) "
                    "ORDER BY decided_at LIMIT :limit"
                ),
                {"partitions": list(partitions), "limit": limit},
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


def _approval_row(suspension: Suspension, partition: int, at_ms: int) -> dict[str, Any]:
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
        "approvers": list(suspension.approvers),
        "requested_at": moment(at_ms),
        "due_at": moment(suspension.due_at_ms),
        "partition": partition,
    }
