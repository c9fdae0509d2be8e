"""What the orchestrator holds is named by its inbox topic as well as the partition number: deployments
sharing a broker through topic prefixes may share one PostgreSQL, and one group's takeover of its
partition 1 must neither fence nor adopt nor resume what another group holds in its own partition 1.
Rows written before (`inbox` null) are claimed by the first takeover of their partition.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-11 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_INBOX = "the orchestrator inbox topic whose partition this is; null: written before inboxes were named"
_UNDELIVERED = sa.text("status <> 'pending' AND resumed_at IS NULL")


def upgrade() -> None:
    op.add_column("held_partitions", sa.Column("inbox", sa.Text(), server_default="", nullable=False))
    op.drop_constraint("pk_held_partitions", "held_partitions", type_="primary")
    op.create_primary_key("pk_held_partitions", "held_partitions", ["inbox", "partition"])
    op.alter_column("held_partitions", "inbox", server_default=None, comment="the orchestrator inbox topic")
    for table in ("held_executions", "approvals"):
        op.add_column(table, sa.Column("inbox", sa.Text(), nullable=True, comment=_INBOX))
    op.drop_index(op.f("ix_held_executions_partition"), table_name="held_executions")
    op.create_index(op.f("ix_held_executions_inbox_partition"), "held_executions", ["inbox", "partition"])
    op.drop_index("ix_approvals_undelivered", table_name="approvals", postgresql_where=_UNDELIVERED)
    op.create_index(
        "ix_approvals_undelivered", "approvals", ["inbox", "partition", "decided_at"], postgresql_where=_UNDELIVERED
    )


def downgrade() -> None:
    op.drop_index("ix_approvals_undelivered", table_name="approvals", postgresql_where=_UNDELIVERED)
    op.create_index("ix_approvals_undelivered", "approvals", ["partition", "decided_at"], postgresql_where=_UNDELIVERED)
    op.drop_index(op.f("ix_held_executions_inbox_partition"), table_name="held_executions")
    op.create_index(op.f("ix_held_executions_partition"), "held_executions", ["partition"])
    for table in ("held_executions", "approvals"):
        op.drop_column(table, "inbox")
    op.execute("DELETE FROM held_partitions WHERE inbox <> ''")
    op.drop_constraint("pk_held_partitions", "held_partitions", type_="primary")
    op.create_primary_key("pk_held_partitions", "held_partitions", ["partition"])
    op.drop_column("held_partitions", "inbox")
