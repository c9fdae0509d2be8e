"""Unit prices per organization: what its executions cost.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "org_unit_prices",
        sa.Column("org_id", sa.Text(), nullable=False),
        sa.Column("prices", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name=op.f("fk_org_unit_prices_org_id_organizations")),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_unit_prices")),
    )


def downgrade() -> None:
    op.drop_table("org_unit_prices")
