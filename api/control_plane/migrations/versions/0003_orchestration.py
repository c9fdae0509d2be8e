"""Orchestration: approvals opened by paused executions, and the fire times of scheduled workflows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Text(), nullable=False),
        sa.Column("step", sa.Text(), nullable=False, comment="the approval step's path in the definition"),
        sa.Column("lead_id", sa.Text(), nullable=False),
        sa.Column(
            "lead", postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="the lead as the execution saw it"
        ),
        sa.Column(
            "explanation",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="score, score_breakdown, tier, owner, routing_reason, decisions so far",
        ),
        sa.Column("approvers", postgresql.ARRAY(sa.Text()), nullable=False, comment="emails, or role:<role>"),
        sa.Column("status", sa.Text(), nullable=False, comment="pending | approved | rejected | timed_out | cancelled"),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "decided_by",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment="actor; null for a timeout or an exit",
        ),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column(
            "partition", sa.Integer(), nullable=False, comment="the orchestrator inbox partition holding the execution"
        ),
        sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_approvals_org_id_organizations")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_approvals_project_id_projects")),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], name=op.f("fk_approvals_workflow_id_workflows")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint("execution_id", name=op.f("uq_approvals_execution_id")),
    )
    op.create_index(
        "ix_approvals_org_id_status_requested_at", "approvals", ["org_id", "status", "requested_at"], unique=False
    )
    op.create_index(
        "ix_approvals_undelivered",
        "approvals",
        ["partition", "decided_at"],
        unique=False,
        postgresql_where=sa.text("status <> 'pending' AND resumed_at IS NULL"),
    )
    op.create_table(
        "schedule_fires",
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=False, comment="the orchestrator process that claimed it"),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leads", sa.Integer(), nullable=True, comment="leads of the segment it ran for"),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_schedule_fires_org_id_organizations")),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name=op.f("fk_schedule_fires_workflow_id_workflows")
        ),
        sa.PrimaryKeyConstraint("workflow_id", "fire_at", name=op.f("pk_schedule_fires")),
    )
    op.create_index(op.f("ix_schedule_fires_org_id"), "schedule_fires", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_schedule_fires_org_id"), table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_index("ix_approvals_undelivered", table_name="approvals")
    op.drop_index("ix_approvals_org_id_status_requested_at", table_name="approvals")
    op.drop_table("approvals")
