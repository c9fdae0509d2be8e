"""Workflows the workers could not compile are quarantined: taken out of the active set, with why.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "workflows",
        sa.Column(
            "quarantine_reason",
            sa.Text(),
            nullable=True,
            comment="why the workers refused the active version; set with status = 'quarantined'",
        ),
    )


def downgrade() -> None:
    op.drop_column("workflows", "quarantine_reason")
