"""A key acts for the person who issued it, also in what was recorded before; and indexes for the
filters of the audit log, the approvals and the change requests.

Keys issued through a person's key, the versions written through a key and the open change
requests asked for through one get that person, so that four-eyes compares people for changes
already under review at the upgrade too. Each list then reads one page of its org rather than the
table (plans on a million audit rows: docs/operations.md); the audit log is read newest first by
(at, id), so its (org_id, id) index gives way to ones on (org_id, [filter,] at, id).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

AUDIT_FILTERS = ("action", "resource_type", "resource_id", "actor_id", "project_id")
INDEXES = (
    ("ix_audit_log_org_id_at_id", "audit_log", ["org_id", "at", "id"]),
    *((f"ix_audit_log_org_id_{column}_at_id", "audit_log", ["org_id", column, "at", "id"]) for column in AUDIT_FILTERS),
    ("ix_approvals_org_id_requested_at", "approvals", ["org_id", "requested_at"]),
    ("ix_approvals_workflow_id_requested_at", "approvals", ["workflow_id", "requested_at"]),
    ("ix_approvals_project_id_requested_at", "approvals", ["project_id", "requested_at"]),
    ("ix_change_requests_org_id_created_at", "change_requests", ["org_id", "created_at"]),
    ("ix_change_requests_org_id_status_created_at", "change_requests", ["org_id", "status", "created_at"]),
    ("ix_change_requests_workflow_id_created_at", "change_requests", ["workflow_id", "created_at"]),
    ("ix_change_requests_project_id_created_at", "change_requests", ["project_id", "created_at"]),
)


KEYS_ISSUED_THROUGH_KEYS = """
UPDATE api_keys AS issued SET issued_by_user_id = issuer.issued_by_user_id
FROM audit_log AS entry JOIN api_keys AS issuer ON issuer.id = entry.actor_id
WHERE entry.action = 'api_key.create' AND entry.actor_type = 'api_key' AND entry.resource_id = issued.id
  AND entry.org_id = issued.org_id AND issued.issued_by_user_id IS NULL AND issuer.issued_by_user_id IS NOT NULL
"""
VERSIONS_WRITTEN_THROUGH_KEYS = """
UPDATE workflow_versions AS v SET authored_by_user_id = k.issued_by_user_id
FROM api_keys AS k
WHERE v.authored_by = k.id AND v.authored_by_user_id IS NULL AND k.issued_by_user_id IS NOT NULL
"""
REQUESTS_ASKED_THROUGH_KEYS = """
UPDATE change_requests AS r
SET requested_by = jsonb_set(r.requested_by, '{user_id}', to_jsonb(k.issued_by_user_id))
FROM api_keys AS k
WHERE r.status = 'open' AND r.requested_by ->> 'type' = 'api_key'
  AND r.requested_by ->> 'id' = k.id AND r.requested_by ->> 'user_id' IS NULL AND k.issued_by_user_id IS NOT NULL
"""


def _backfill_the_person_behind_each_key() -> None:
    """A key issued through a key issued through a person's key is theirs too: repeated until no
    key changes (each round reaches one issuance further)."""
    connection = op.get_bind()
    while connection.execute(sa.text(KEYS_ISSUED_THROUGH_KEYS)).rowcount:
        pass
    connection.execute(sa.text(VERSIONS_WRITTEN_THROUGH_KEYS))
    connection.execute(sa.text(REQUESTS_ASKED_THROUGH_KEYS))


def upgrade() -> None:
    """`if_not_exists`: an operator with a large audit log may build these beforehand with CREATE
    INDEX CONCURRENTLY under the same names (docs/operations.md), and the migration keeps them."""
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False, if_not_exists=True)
    op.create_index(
        "ix_approvals_approvers", "approvals", ["approvers"], unique=False, postgresql_using="gin", if_not_exists=True
    )
    op.drop_index("ix_audit_log_org_id_id", table_name="audit_log", if_exists=True)
    _backfill_the_person_behind_each_key()


def downgrade() -> None:
    op.create_index("ix_audit_log_org_id_id", "audit_log", ["org_id", "id"], unique=False)
    op.drop_index("ix_approvals_approvers", table_name="approvals")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
