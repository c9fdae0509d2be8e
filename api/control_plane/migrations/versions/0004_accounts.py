"""Accounts belong to nobody until a password is proven: memberships are accepted (the password was
proven for them) or wait for their invitation; an operator's invitation names the account whose first
password it may set. Indexes for the member and invitation pages.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "memberships",
        sa.Column(
            "accepted_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="when the password was proven for this membership; null while it waits for its invitation",
        ),
    )
    op.add_column(
        "invitations",
        sa.Column(
            "user_id",
            sa.Text(),
            nullable=True,
            comment="set on the invitation of a membership an operator made: the one that may set a first password",
        ),
    )
    op.create_foreign_key(op.f("fk_invitations_user_id_users"), "invitations", "users", ["user_id"], ["id"])
    # Memberships of accounts with a password were usable before: they stay so. Those of accounts
    # without one wait, and the pending invitation of their organization is theirs.
    op.execute(
        "UPDATE memberships SET accepted_at = memberships.created_at FROM users "
        "WHERE users.id = memberships.user_id AND users.password_hash IS NOT NULL"
    )
    op.execute(
        "UPDATE invitations SET user_id = users.id FROM users JOIN memberships ON memberships.user_id = users.id "
        "WHERE users.email = invitations.email AND memberships.org_id = invitations.org_id "
        "AND users.password_hash IS NULL AND invitations.accepted_at IS NULL AND invitations.revoked_at IS NULL"
    )
    op.create_index(
        "ix_memberships_org_id_created_at_user_id", "memberships", ["org_id", "created_at", "user_id"], unique=False
    )
    op.create_index(
        "ix_invitations_pending",
        "invitations",
        ["org_id", "created_at", "id"],
        unique=False,
        postgresql_where=sa.text("accepted_at IS NULL AND revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_invitations_pending", table_name="invitations")
    op.drop_index("ix_memberships_org_id_created_at_user_id", table_name="memberships")
    op.drop_constraint(op.f("fk_invitations_user_id_users"), "invitations", type_="foreignkey")
    op.drop_column("invitations", "user_id")
    op.drop_column("memberships", "accepted_at")
