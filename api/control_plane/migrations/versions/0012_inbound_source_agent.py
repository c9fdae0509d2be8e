"""An inbound source can target a deployed agent instead of the org's workflows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "inbound_sources",
        sa.Column("agent_id", sa.Text(), nullable=True, comment="the agent its events call; null: the org's workflows"),
    )
    op.create_foreign_key(op.f("fk_inbound_sources_agent_id_agents"), "inbound_sources", "agents", ["agent_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("fk_inbound_sources_agent_id_agents"), "inbound_sources", type_="foreignkey")
    op.drop_column("inbound_sources", "agent_id")
