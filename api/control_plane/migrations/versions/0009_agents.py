"""Agents: templates with their versions, deployed agents and their backing workflows, and change
requests for template activations and agent upgrades.

A deployed agent runs as a workflow of kind 'agent' (every workflow so far is of kind 'workflow').
A change request now names a workflow, a template, or both (an upgrade), so `workflow_id` may be
null; an open template activation is unique per template like an open activation per workflow.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _now() -> sa.Column[datetime]:
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def _updated() -> sa.Column[datetime]:
    return sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def upgrade() -> None:
    op.add_column(
        "workflows",
        sa.Column(
            "kind",
            sa.Text(),
            server_default="workflow",
            nullable=False,
            comment="workflow | agent: an agent's backing workflow, changed only through /agents",
        ),
    )
    op.create_table(
        "agent_templates",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("copied_from", sa.Text(), nullable=True, comment="builtin:<key> or the id of the template copied"),
        sa.Column("status", sa.Text(), nullable=False, comment="draft | active | archived"),
        sa.Column("active_version", sa.Integer(), nullable=True),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        _now(),
        _updated(),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_agent_templates_org_id_organizations")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_agent_templates_project_id_projects")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_templates")),
    )
    op.create_index("ix_agent_templates_org_id_created_at", "agent_templates", ["org_id", "created_at"])
    op.create_index(op.f("ix_agent_templates_project_id"), "agent_templates", ["project_id"])
    op.create_table(
        "agent_template_versions",
        sa.Column("template_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, comment="draft | proposed | active | superseded | archived"),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("authored_by", sa.Text(), nullable=False, comment="actor id of the last author"),
        sa.Column("authored_by_user_id", sa.Text(), nullable=True),
        _now(),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["template_id"], ["agent_templates.id"], name=op.f("fk_agent_template_versions_template_id_agent_templates")
        ),
        sa.PrimaryKeyConstraint("template_id", "version", name=op.f("pk_agent_template_versions")),
    )
    op.create_index(op.f("ix_agent_template_versions_org_id"), "agent_template_versions", ["org_id"])
    op.create_table(
        "agents",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("project_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("template_id", sa.Text(), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.Text(), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, comment="active | paused | archived"),
        sa.Column(
            "paused_reason", sa.Text(), nullable=True, comment="paused_by_person | over_budget | template_archived"
        ),
        sa.Column("paused_detail", sa.Text(), nullable=True),
        sa.Column("connection_ids", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("webhook_ids", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_by", postgresql.JSONB(astext_type=sa.Text()), nullable=False, comment="actor"),
        _now(),
        _updated(),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_agents_org_id_organizations")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_agents_project_id_projects")),
        sa.ForeignKeyConstraint(
            ["template_id"], ["agent_templates.id"], name=op.f("fk_agents_template_id_agent_templates")
        ),
        sa.ForeignKeyConstraint(["workflow_id"], ["workflows.id"], name=op.f("fk_agents_workflow_id_workflows")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_agents_workflow_id")),
    )
    op.create_index("ix_agents_org_id_created_at", "agents", ["org_id", "created_at"])
    op.create_index(op.f("ix_agents_project_id"), "agents", ["project_id"])
    op.create_index(op.f("ix_agents_template_id"), "agents", ["template_id"])
    op.alter_column("change_requests", "workflow_id", nullable=True)
    op.add_column("change_requests", sa.Column("agent_template_id", sa.Text(), nullable=True))
    op.add_column("change_requests", sa.Column("agent_id", sa.Text(), nullable=True))
    op.add_column("change_requests", sa.Column("template_version", sa.Integer(), nullable=True))
    op.create_foreign_key(
        op.f("fk_change_requests_agent_template_id_agent_templates"),
        "change_requests",
        "agent_templates",
        ["agent_template_id"],
        ["id"],
    )
    op.create_foreign_key(op.f("fk_change_requests_agent_id_agents"), "change_requests", "agents", ["agent_id"], ["id"])
    op.create_index(
        "uq_change_requests_open_template",
        "change_requests",
        ["agent_template_id"],
        unique=True,
        postgresql_where=sa.text("status = 'open' AND kind = 'agent_template.activate'"),
    )


def downgrade() -> None:
    op.drop_index("uq_change_requests_open_template", table_name="change_requests")
    op.execute("DELETE FROM change_requests WHERE workflow_id IS NULL")
    op.drop_constraint(op.f("fk_change_requests_agent_id_agents"), "change_requests", type_="foreignkey")
    op.drop_constraint(
        op.f("fk_change_requests_agent_template_id_agent_templates"), "change_requests", type_="foreignkey"
    )
    for column in ("template_version", "agent_id", "agent_template_id"):
        op.drop_column("change_requests", column)
    op.alter_column("change_requests", "workflow_id", nullable=False)
    op.drop_table("agents")
    op.drop_table("agent_template_versions")
    op.drop_table("agent_templates")
    op.drop_column("workflows", "kind")
