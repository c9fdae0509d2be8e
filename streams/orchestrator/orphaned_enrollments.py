"""Leads enrolled in a paused run that nothing holds any more, released.

The qualifier records a lead as enrolled (Redis) before it hands the paused run to the orchestrator
through the inbox. The embedded broker keeps its topics in memory, so a suspension still on the inbox
at `drippulse dev down` is gone while the enrollment is not: the lead would stay enrolled for ever,
and never enroll again. Once the broker is new, nothing in flight can reach the orchestrator any
more, so every enrollment whose run PostgreSQL does not hold (`held_executions`) is such an orphan,
or a run that ended and whose release Redis lost: either way it is released the way the orchestrator
releases a finished run (`dp:{org}:released`, which the qualifier reads). `drippulse dev up` does it
before it starts a new broker, so no event can enroll a lead meanwhile. It reads every lead's state
once, which is fine for the embedded stack and never runs on the hot path.
"""

from __future__ import annotations

import logging

import orjson
import redis
from sqlalchemy import Engine, text

from processors.enrollment import Enrollment
from streams.orchestrator.orchestrator import RedisReleases, Run
from streams.state import state_keys

log = logging.getLogger(__name__)

_LEADS = state_keys.lead_state("*")
_PREFIX, _SUFFIX = _LEADS.split("*")


def enrolled_runs(client: redis.Redis) -> list[Run]:
    """(org, workflow, lead, execution) of every lead enrolled in a paused run."""
    runs: list[Run] = []
    for key in client.scan_iter(match=_LEADS, count=1000):
        org_id = key.decode()[len(_PREFIX) : -len(_SUFFIX)]
        for lead_id, stored in client.hscan_iter(key, count=1000):
            for workflow_id, raw in orjson.loads(stored).get("enrollments", {}).items():
                enrollment = Enrollment.from_json(raw)
                if enrollment.active and enrollment.execution_id:
                    runs.append((org_id, workflow_id, lead_id.decode(), enrollment.execution_id))
    return runs


def release_orphans(client: redis.Redis, engine: Engine) -> int:
    """Releases the enrollments whose paused run PostgreSQL does not hold; returns how many. Call
    only while no broker holds a suspension the orchestrator has not handled yet."""
    runs = enrolled_runs(client)
    if not runs:
        return 0
    with engine.connect() as connection:
        if connection.execute(text("SELECT to_regclass('held_executions')")).scalar() is None:
            return 0
        held = {
            row[0]
            for row in connection.execute(
                text("SELECT execution_id FROM held_executions WHERE execution_id = ANY(:ids)"),
                {"ids": [run[3] for run in runs]},
            )
        }
    orphans = [run for run in runs if run[3] not in held]
    if orphans:
        RedisReleases(client).release(orphans)
        log.info("released %d enrollments whose paused run no orchestrator holds", len(orphans))
    return len(orphans)
