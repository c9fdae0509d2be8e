"""One approval per approval step of an execution, not per execution: a workflow with two approval
steps opens a second approval for the same execution (its id derives from the execution and the
step, the primary key). What the orchestrator holds is fenced per inbox partition: each takeover of
a partition bumps its generation, and a turn settles only while the generation it recovered is
still the partition's. Executions the orchestrator released are remembered for a while, so a
changelog that still holds one is not adopted back.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_approvals_execution_id", "approvals", type_="unique")
    op.add_column(
        "held_partitions",
        sa.Column(
            "generation",
            sa.BigInteger(),
            server_default=sa.text("0"),
            nullable=False,
            comment="bumped by every takeover of the partition: a turn of an earlier owner settles nothing",
        ),
    )
    op.create_table_comment(
        "held_partitions",
        "inbox partitions an orchestrator took over, each with the generation of its latest takeover",
    )
    op.create_table(
        "released_executions",
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_released_executions")),
        comment="executions the orchestrator held and released: a changelog entry of one is never adopted again",
    )
    op.create_index(op.f("ix_released_executions_released_at"), "released_executions", ["released_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_released_executions_released_at"), table_name="released_executions")
    op.drop_table("released_executions")
    op.create_table_comment(
        "held_partitions", "inbox partitions whose changelog-only executions were copied into held_executions once"
    )
    op.drop_column("held_partitions", "generation")
    op.create_unique_constraint(op.f("uq_approvals_execution_id"), "approvals", ["execution_id"])
