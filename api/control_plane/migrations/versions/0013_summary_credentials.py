"""An agent template version's summary provider credential, sealed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-11 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "agent_template_versions",
        sa.Column(
            "summary_credential",
            sa.Text(),
            nullable=True,
            comment="the summary provider's credential, sealed with DRIPPULSE_SECRET_KEY",
        ),
    )


def downgrade() -> None:
    op.drop_column("agent_template_versions", "summary_credential")
