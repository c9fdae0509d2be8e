"""Migrations that change what recorded rows mean, run on rows recorded before them, in a database of
their own beside the stack's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import Connection, create_engine, text

from api.control_plane.database import alembic_config
from drippulse import embedded_postgres
from drippulse.devstack import EmbeddedStack

pytestmark = pytest.mark.stack


@pytest.fixture
def database_at_0003(stack: EmbeddedStack) -> Iterator[Connection]:
    port = stack.settings.embedded_postgres_port
    name = f"migration_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(embedded_postgres.admin_url(port), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}")
    try:
        with engine.connect() as connection:
            _upgrade(connection, "0003")
            yield connection
    finally:
        engine.dispose()
        with psycopg.connect(embedded_postgres.admin_url(port), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}"')


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    connection.commit()


def _insert(connection: Connection, table: str, **row: Any) -> None:
    columns = ", ".join(row)
    connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})"), row)


def test_upgrading_gives_what_was_done_through_a_persons_keys_to_that_person(database_at_0003: Connection) -> None:
    """Before 0005 a key's actor had no person: a key issued through Ada's key, a version written and a
    change request asked for through one recorded nobody, and Ada could approve that open request."""
    db = database_at_0003
    _insert(db, "organizations", id="org_a", name="A")
    _insert(db, "projects", id="prj_a", org_id="org_a", name="Default", is_default=True)
    _insert(db, "users", id="usr_ada", email="ada@acme.test")
    _insert(db, "memberships", org_id="org_a", user_id="usr_ada", roles=["admin", "editor", "approver"])
    keys = {"key_1": "usr_ada", "key_2": None, "key_3": None, "key_cli": None}
    for key_id, person in keys.items():
        _insert(
            db,
            "api_keys",
            id=key_id,
            org_id="org_a",
            name=key_id,
            role="admin",
            key_hash=key_id,
            prefix="dpk_",
            issued_by="someone",
            issued_by_user_id=person,
        )
    for issuer, issued in (("key_1", "key_2"), ("key_2", "key_3")):
        _insert(
            db,
            "audit_log",
            org_id="org_a",
            actor_type="api_key",
            actor_id=issuer,
            actor_label="key",
            action="api_key.create",
            resource_type="api_key",
            resource_id=issued,
        )
    _insert(db, "workflows", id="wf_1", org_id="org_a", project_id="prj_a", name="w", status="draft", latest_version=2)
    for version, author in ((1, "key_3"), (2, "key_cli")):
        db.execute(
            text(
                "INSERT INTO workflow_versions (workflow_id, version, org_id, status, definition, authored_by) "
                "VALUES ('wf_1', :version, 'org_a', 'proposed', '{}'::jsonb, :author)"
            ),
            {"version": version, "author": author},
        )
    db.execute(
        text(
            "INSERT INTO change_requests (id, org_id, project_id, workflow_id, kind, version, diff, status, "
            "requested_by) VALUES ('cr_1', 'org_a', 'prj_a', 'wf_1', 'workflow.activate', 1, '[]'::jsonb, 'open', "
            """'{"type": "api_key", "id": "key_2", "label": "key", "user_id": null}'::jsonb)"""
        )
    )
    db.commit()

    _upgrade(db, "head")

    issuers = dict(db.execute(text("SELECT id, issued_by_user_id FROM api_keys")).all())
    assert issuers == {"key_1": "usr_ada", "key_2": "usr_ada", "key_3": "usr_ada", "key_cli": None}
    authors = dict(db.execute(text("SELECT version, authored_by_user_id FROM workflow_versions")).all())
    assert authors == {1: "usr_ada", 2: None}, "a key the CLI issued acts for nobody"
    requester = db.scalar(text("SELECT requested_by ->> 'user_id' FROM change_requests WHERE id = 'cr_1'"))
    assert requester == "usr_ada"
