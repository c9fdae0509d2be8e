"""Indexes for the filters of the audit log, the approvals and the change requests, so each list
reads one page of its org rather than the table (plans on a million audit rows: docs/operations.md).
The audit log is now read newest first by (at, id), so its (org_id, id) index gives way to ones on
(org_id, [filter,] at, id).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0003"
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


def upgrade() -> None:
    """`if_not_exists`: an operator with a large audit log may build these beforehand with CREATE
    INDEX CONCURRENTLY under the same names (docs/operations.md), and the migration keeps them."""
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False, if_not_exists=True)
    op.create_index(
        "ix_approvals_approvers", "approvals", ["approvers"], unique=False, postgresql_using="gin", if_not_exists=True
    )
    op.drop_index("ix_audit_log_org_id_id", table_name="audit_log", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_audit_log_org_id_id", "audit_log", ["org_id", "id"], unique=False)
    op.drop_index("ix_approvals_approvers", table_name="approvals")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
