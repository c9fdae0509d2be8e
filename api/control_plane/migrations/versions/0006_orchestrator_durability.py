"""The orchestrator keeps what it holds in PostgreSQL: paused executions survive a broker that loses
its topics (the embedded one keeps them in memory), and a decision can tell whether its execution is
still held anywhere. Approvers named by email are stored lower-case, as deciders are compared.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_executions",
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column(
            "partition", sa.Integer(), nullable=False, comment="the orchestrator inbox partition holding the execution"
        ),
        sa.Column("kind", sa.Text(), nullable=False, comment="approval | wait"),
        sa.Column("step", sa.Text(), nullable=False, comment="the step it paused at"),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False, comment="the wait's end or the timeout"),
        sa.Column(
            "suspension",
            sa.Text(),
            nullable=False,
            comment="processors.orchestration.Suspension as JSON (text: written and read whole, never queried)",
        ),
        sa.Column("held_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "outcome",
            sa.Text(),
            nullable=True,
            comment="a wait's outcome (wait_elapsed | exited), taken before its resume is produced: the one that won",
        ),
        sa.Column("outcome_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_held_executions_org_id_organizations")),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_held_executions")),
    )
    op.create_index(op.f("ix_held_executions_partition"), "held_executions", ["partition"], unique=False)
    op.create_table(
        "held_partitions",
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("adopted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("partition", name=op.f("pk_held_partitions")),
        comment="inbox partitions whose changelog-only executions were copied into held_executions once",
    )
    op.execute(
        "UPDATE approvals SET approvers = ARRAY(SELECT CASE WHEN a LIKE 'role:%' THEN a ELSE lower(a) END "
        "FROM unnest(approvers) WITH ORDINALITY AS u(a, n) ORDER BY n) WHERE approvers::text <> lower(approvers::text)"
    )


def downgrade() -> None:
    op.drop_table("held_partitions")
    op.drop_index(op.f("ix_held_executions_partition"), table_name="held_executions")
    op.drop_table("held_executions")
