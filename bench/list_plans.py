"""The query plan of every filter of the control plane's growing lists, on a million audit rows:
`python -m bench.list_plans` (its own embedded stack under a temporary home, whatever the
environment points at).

The audit log gets 1,000,000 entries over 20 organizations, half of them in one (the tenant whose
lists are asked for): 35 actions with a long tail (the commonest is half the entries, the rarest
under 0.1 %; org.create 10 entries in all), their resource types, 20,000 resources per type, 400
actors, 40 projects,
over 180 days, the time growing with the id as it does when entries are appended. Approvals
(200,000, on 400 workflows) and change requests (20,000) get the same shape. Each filter is asked
through the store function `GET /audit_log`, `GET /approvals` or `GET /change_requests` calls, as
the first page of 100 rows (plus the one that says whether more follow), and the statement it sent
is run again under `EXPLAIN (ANALYZE, BUFFERS)`: once at migration 0003, once after 0005 added the
indexes. Timings are from one run on the 2-core machine; the plan shape is the point.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, create_engine, event, text

from api.control_plane import approvals, audit, change_requests
from api.control_plane.actors import Scope
from api.control_plane.database import Database, alembic_config
from drippulse.devstack import EmbeddedStack, isolated_env
from drippulse.settings import Settings

BIG_ORG = "org_bench_big"
PAT, SAM = "pat@acme.test", "sam@acme.test"
"""The approvers one approval in 50 and one in 5,000 name by email; the others name role:approver."""
EXTERNAL_SERVICES = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "CLICKHOUSE_URL", "SCHEMA_REGISTRY_URL", "DATABASE_URL")
ROWS = int(os.environ.get("PLANS_AUDIT_ROWS", "1000000"))
PAGE = 101
ACTIONS = [
    ("workflow", ["update", "activate", "create", "test", "deactivate", "archive", "quarantine"]),
    ("change_request", ["create", "approve", "reject", "cancel"]),
    ("approval", ["approve", "reject", "timeout"]),
    ("webhook", ["create", "update", "rotate_secret", "delete", "disable"]),
    ("api_key", ["create", "revoke"]),
    ("member", ["invite", "set_roles", "deactivate", "reactivate", "accept"]),
    ("project", ["create", "update", "delete"]),
    ("inbound_source", ["create", "rotate_secret", "delete"]),
    ("integration_connection", ["create", "update", "delete"]),
    ("org", ["create"]),
]
FILL = [
    "INSERT INTO organizations (id, name) SELECT 'org_bench_' || n, 'bench ' || n FROM generate_series(0, 18) n "
    "UNION ALL SELECT :big, 'bench big'",
    "INSERT INTO projects (id, org_id, name) SELECT 'prj_' || n, :big, 'p' || n FROM generate_series(0, 39) n",
    "INSERT INTO workflows (id, org_id, project_id, name, status, latest_version) "
    "SELECT 'wf_' || n, :big, 'prj_' || (n % 40), 'w' || n, 'active', 1 FROM generate_series(0, 399) n",
    # A long tail: the i-th commonest action is drawn with weight 1/(i(i+1)); org.create is 10 entries in all.
    "INSERT INTO audit_log (org_id, at, actor_type, actor_id, actor_label, action, resource_type, resource_id, "
    "project_id, before, after, request_id) "
    "SELECT CASE WHEN g % 2 = 0 THEN :big ELSE 'org_bench_' || (g % 19) END, "
    "now() - interval '180 days' + g * interval '180 days' / :rows, "
    "'user', 'usr_' || (g * 7 % 400), 'someone', a.action, split_part(a.action, '.', 1), "
    "split_part(a.action, '.', 1) || '_' || (g * 13 % 20000), 'prj_' || (g * 11 % 40), "
    '\'{"status": "draft"}\'::jsonb, \'{"status": "active"}\'::jsonb, md5(g::text) '
    "FROM generate_series(1, :rows) g CROSS JOIN LATERAL (SELECT CASE WHEN g % 100000 = 0 THEN 'org.create' "
    "ELSE (CAST(:actions AS text[]))[floor(1 / (1.0 / :tail + random() * (1 - 1.0 / :tail)))::int] END "
    "AS action) a",
    "INSERT INTO approvals (id, org_id, project_id, workflow_id, workflow_version, execution_id, step, lead_id, lead, "
    "explanation, approvers, status, requested_at, due_at, partition) "
    "SELECT 'apr_' || g, :big, 'prj_' || (g % 400 % 40), 'wf_' || (g % 400), 1, 'ex_' || g, '4.0.0', 'l-' || g, "
    "'{}'::jsonb, '{}'::jsonb, "
    "CASE WHEN g % 5000 = 0 THEN ARRAY[:sam] WHEN g % 50 = 0 THEN ARRAY[:pat] ELSE ARRAY['role:approver'] END, "
    "CASE WHEN g > 199000 THEN 'pending' ELSE 'approved' END, "
    "now() - interval '180 days' + g * interval '180 days' / 200000, now() + interval '1 day', g % 12 "
    "FROM generate_series(1, 200000) g",
    "INSERT INTO change_requests (id, org_id, project_id, workflow_id, kind, version, diff, status, requested_by, "
    "created_at) "
    "SELECT 'cr_' || g, :big, 'prj_' || (g % 400 % 40), 'wf_' || (g % 400), 'workflow.activate', 1, '[]'::jsonb, "
    "CASE WHEN g > 19960 THEN 'open' WHEN g % 3 = 0 THEN 'rejected' ELSE 'approved' END, '{}'::jsonb, "
    "now() - interval '180 days' + g * interval '180 days' / 20000 "
    "FROM generate_series(1, 20000) g",
]


def _actions() -> list[str]:
    """Every action but org.create, commonest first."""
    return [f"{resource}.{verb}" for resource, verbs in ACTIONS for verb in verbs if resource != "org"]


def _lists(now: datetime) -> list[tuple[str, Callable[[Any], Awaitable[Any]]]]:
    """(what, the store call an API list makes) for each filter worth a plan."""
    big = Scope(BIG_ORG)

    def log(**filters: str) -> Callable[[Any], Awaitable[Any]]:
        since, until = filters.pop("since", None), filters.pop("until", None)
        return lambda s: audit.entries(
            s,
            BIG_ORG,
            filters,
            now - timedelta(days=float(since)) if since else None,
            now - timedelta(days=float(until)) if until else None,
            PAGE,
            None,
        )

    def approval_list(**filters: Any) -> Callable[[Any], Awaitable[Any]]:
        return lambda s: approvals.list_approvals(
            s, big, filters.get("status"), filters.get("project"), filters.get("workflow"), filters.get("who"), PAGE
        )

    def request_list(**filters: Any) -> Callable[[Any], Awaitable[Any]]:
        return lambda s: change_requests.list_requests(
            s, big, filters.get("status"), filters.get("project"), filters.get("workflow"), PAGE
        )

    return [
        ("audit: no filter", log()),
        ("audit: action (common: workflow.update)", log(action="workflow.update")),
        ("audit: action (rare: org.create)", log(action="org.create")),
        ("audit: resource_type (rare: org)", log(resource_type="org")),
        ("audit: resource_id", log(resource_id="workflow_1234")),
        ("audit: actor_id", log(actor_id="usr_42")),
        ("audit: project_id", log(project_id="prj_7")),
        ("audit: action + project_id", log(action="api_key.revoke", project_id="prj_7")),
        ("audit: since (last day)", log(since="1")),
        ("audit: since + until (a week, 100 days ago)", log(since="107", until="100")),
        ("approvals: no filter", approval_list()),
        ("approvals: assignee (an email on 1 in 50)", approval_list(who=[PAT])),
        ("approvals: assignee (an email on 1 in 5,000)", approval_list(who=[SAM])),
        (
            "approvals: assignee=me, status=pending",
            approval_list(who=["pat@acme.test", "role:approver"], status="pending"),
        ),
        ("approvals: workflow_id", approval_list(workflow="wf_7")),
        ("approvals: project_id", approval_list(project="prj_7")),
        ("change requests: no filter", request_list()),
        ("change requests: workflow_id", request_list(workflow="wf_7")),
        ("change requests: status=open", request_list(status="open")),
        ("change requests: project_id", request_list(project="prj_7")),
    ]


def _fill(connection: Connection) -> None:
    started = time.monotonic()
    actions = _actions()
    values = {"big": BIG_ORG, "rows": ROWS, "actions": actions, "tail": len(actions), "pat": PAT, "sam": SAM}
    for statement in FILL:
        connection.execute(text(statement), values)
    connection.execute(text("ANALYZE"))
    connection.commit()
    took = time.monotonic() - started
    print(f"filled {ROWS:,} audit entries, 200,000 approvals, 20,000 change requests in {took:.0f} s")


async def _plans(database: Database, now: datetime) -> dict[str, str]:
    """Each list's statement, as the store function sent it, under EXPLAIN ANALYZE."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
    plans = {}
    for what, call in _lists(now):
        async with database.transaction() as session:
            sent.clear()
            await call(session)
            statement, parameters = sent[-1]
            explained = await session.connection()
            rows = await explained.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            plans[what] = "\n".join(row[0] for row in rows)
    event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
    return plans


def _summary(plan: str) -> str:
    """The access path (the first scan node) and the execution time."""
    scan = re.search(r"((?:Parallel )?(?:Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)[^(]*)", plan)
    took = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return f"{(scan.group(1).strip() if scan else '?')} — {took.group(1) if took else '?'} ms"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="drippulse-plans-") as home:
        for external in (
            "KAFKA_BOOTSTRAP_SERVERS",
            "REDIS_URL",
            "CLICKHOUSE_URL",
            "SCHEMA_REGISTRY_URL",
            "DATABASE_URL",
        ):
            os.environ.pop(external, None)
        os.environ.update(isolated_env(Path(home)))
        settings = Settings()
        stack = EmbeddedStack(settings, attached=True)
        stack.start()
        try:
            engine = create_engine(settings.database_url)
            with engine.connect() as connection:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "0003")
                connection.commit()
                _fill(connection)
            now = datetime.now(UTC)
            database = Database(settings.database_url, pool_size=1)
            before = asyncio.run(_plans(database, now))
            with engine.connect() as connection:
                config.attributes["connection"] = connection
                started = time.monotonic()
                command.upgrade(config, "head")
                connection.execute(text("ANALYZE"))
                connection.commit()
                print(f"migration to head (the indexes) took {time.monotonic() - started:.1f} s")
            after = asyncio.run(_plans(database, now))
            engine.dispose()
        finally:
            stack.stop()
    print("\n| list and filter | before (0003) | after (0005) |\n|---|---|---|")
    for what in before:
        print(f"| {what} | {_summary(before[what])} | {_summary(after[what])} |")
    for what in after:
        print(f"\n## {what}\n{after[what]}")


if __name__ == "__main__":
    main()
