"""Scheduled workflows: a cron schedule over a segment of the leads DripPulse has seen, each fire
time run once, with two orchestrators and across a restart."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from drippulse.processes import spawn, terminate
from drippulse.settings import Settings
from processors.model import Schedule
from processors.schedules import DAY_MS, latest_fire
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from streams.clock import moment, now_ms
from streams.orchestrator.schedules import ScheduledWorkflow
from streams.sinks.clickhouse import ClickHouse, ServerClickHouse, apply_schema
from streams.state.control_plane import connect
from tests import control_plane, schedule_runners
from tests.integration.helpers import activate_workflow
from tests.stack import ApiServer, WorkerProcess, read_topic, wait_until

pytestmark = pytest.mark.stack
EVERY_2_S = "* * * * * */2"
TAG = {"type": "action", "action": "add_tag", "tag": "re-engage"}


def _scheduled(cron: str, segment: dict[str, Any]) -> dict[str, Any]:
    return {"trigger": {"schedule": {"cron": cron, "timezone": "Europe/Berlin", "segment": segment}}, "steps": [TAG]}


def _completed(settings: Settings, workflow_id: str, at_least: int) -> list[dict[str, Any]]:
    fires = [f for f in control_plane.schedule_fires(settings, workflow_id) if f["completed"]]
    return fires if len(fires) >= at_least else []


def _lead(n: int, org_id: str) -> dict[str, Any]:
    return {"lead_id": f"{org_id}-lead-{n}", "email": f"lead{n}@initech.net", "title": "VP Sales"}


def _seed(clickhouse: ClickHouse, org_id: str) -> None:
    """Five leads seen an hour ago, three of them last recorded in tier B."""
    now = datetime.now(UTC).timestamp()
    leads = [_lead(n, org_id) for n in range(5)]
    clickhouse.insert_rows(
        "inbound_events",
        [
            {
                "org_id": org_id,
                "event_id": f"{org_id}-e{n}",
                "event_type": "lead.created",
                "lead_id": lead["lead_id"],
                "occurred_at": now - 3600,
                "event_json": orjson.dumps({"event_type": "lead.created", "trigger": "EVENT", "lead": lead}).decode(),
            }
            for n, lead in enumerate(leads)
        ],
    )
    clickhouse.insert_rows(
        "executions",
        [
            {
                "execution_id": f"{org_id}-x{n}",
                "org_id": org_id,
                "workflow_id": "wf_lq",
                "workflow_version": 1,
                "event_id": f"{org_id}-e{n}",
                "event_type": "lead.created",
                "lead_id": lead["lead_id"],
                "status": "completed",
                "tier": "B" if n % 2 == 0 else "A",
                "event_occurred_at": now - 3600,
                "evaluated_at": now - 3600,
            }
            for n, lead in enumerate(leads)
        ],
    )


def test_a_schedule_firing_more_often_than_the_floor_is_refused_naming_its_cron_field(
    org_factory: Any, settings: Settings
) -> None:
    """The test stack lowers the floor to 2 s (DRIPPULSE_SCHEDULE_MIN_INTERVAL_S); every second is
    below it, as every minute is below the default 5 minutes."""
    assert settings.schedule_min_interval_s == 2
    admin = org_factory()["client"]
    every_second = _scheduled("* * * * * *", {"field": "tier", "op": "eq", "value": "B"})
    created = admin.post("/api/v1/workflows", json={"name": "too often", "definition": every_second})
    assert created.status_code == 422, created.text
    problem = created.json()
    assert problem["type"].endswith("validation")
    assert [e["field"] for e in problem["errors"]] == ["$.definition.trigger.schedule.cron"]
    assert "at most once every 2 seconds" in problem["errors"][0]["message"]
    often_enough = _scheduled(EVERY_2_S, {"field": "tier", "op": "exists"})
    allowed = admin.post("/api/v1/workflows", json={"name": "often enough", "definition": often_enough})
    assert allowed.status_code == 201, allowed.text
    patched = admin.patch(f"/api/v1/workflows/{allowed.json()['id']}", json={"definition": every_second})
    assert patched.status_code == 422 and patched.json()["errors"][0]["field"] == "$.definition.trigger.schedule.cron"


def test_a_schedule_runs_the_leads_of_its_segment_through_the_pipeline(
    org_factory: Any, settings: Settings, api_server: ApiServer, qualifier: WorkerProcess
) -> None:
    """Embedded: the API process (which holds chdb) runs the schedules."""
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    activate_workflow(admin, "LQ", LEAD_QUALIFICATION)
    long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    events = [
        {"event_type": "lead.created", "lead": _lead(n, org_id), **({"occurred_at": long_ago} if n < 3 else {})}
        for n in range(6)
    ]
    assert admin.post("/api/v1/events", json=events).status_code == 202
    wait_until(
        lambda: admin.get("/api/v1/executions/summary").json()["executions"] == 6, 60, "the leads in the history"
    )
    workflow = activate_workflow(
        admin, "re-engage", _scheduled(EVERY_2_S, {"field": "days_inactive", "op": "gte", "value": 30})
    )
    fires = wait_until(lambda: _completed(settings, workflow["id"], 2), 60, "two fire times")
    assert all(f["leads"] == 3 for f in fires), "the three leads inactive for 40 days"
    fire_times = {f["fire_at_ms"] for f in fires}

    def scheduled_runs() -> list[dict[str, Any]] | None:
        """A fire time completes once its events are on the inbound topic; the qualifier follows, as
        long as the workflow is active (a run asked for before a deactivation is not run after it)."""
        found = [
            e
            for e in read_topic(settings, topics.EXECUTIONS, key=org_id, quiet_s=0.5)
            if e["workflow_id"] == workflow["id"] and e["event_occurred_at_ms"] in fire_times
        ]
        return found if len(found) >= 3 * len(fires) else None

    runs = wait_until(scheduled_runs, 60, "the executions of every fire time")
    admin.post(f"/api/v1/workflows/{workflow['id']}/deactivate")
    per_fire: dict[int, set[str]] = defaultdict(set)
    for execution in runs:
        assert execution["trigger"] == "schedule" and execution["actions"] == ["add_tag"]
        per_fire[execution["event_occurred_at_ms"]].add(execution["lead_id"])
    assert list(per_fire.values()) == [{_lead(n, org_id)["lead_id"] for n in range(3)}] * len(fires)


def test_two_orchestrators_run_each_fire_time_once_also_across_a_restart(
    org_factory: Any, settings: Settings, api_server: ApiServer, clickhouse_http: tuple[str, Path]
) -> None:
    """With a ClickHouse server the orchestrators run the schedules; here two of them, on topics of
    their own (a prefix), against the HTTP interface of a chdb seeded with a small history. The test
    session's API runs schedules too (it holds the embedded chdb, seeded alike): three processes
    compete for every fire time. Which one claims it depends on whose tick comes first after the
    fire moment, so the test checks the outcome (each fire time once, none skipped), not the winner."""
    url, _ = clickhouse_http
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    server = ServerClickHouse(url, settings.clickhouse_database)
    apply_schema(server)
    for clickhouse in (server, api_server.clickhouse):
        _seed(clickhouse, org_id)
    leads = [_lead(n, org_id) for n in range(5)]
    tier_b = {leads[n]["lead_id"] for n in (0, 2, 4)}
    prefix = f"sched-{org_id}."
    env = {"CLICKHOUSE_URL": url, "DRIPPULSE_TOPIC_PREFIX": prefix}
    first, second = WorkerProcess(settings, "orchestrator", env), WorkerProcess(settings, "orchestrator", env)
    first.starts, second.starts = 100, 200
    first.start()
    second.start()
    try:
        workflow = activate_workflow(
            admin, "tier B", _scheduled("* * * * * */3", {"field": "tier", "op": "eq", "value": "B"})
        )
        done = len(wait_until(lambda: _completed(settings, workflow["id"], 2), 60, "two fire times"))
        first.kill()
        done = len(wait_until(lambda: _completed(settings, workflow["id"], done + 1), 30, "a fire time alone"))
        first.start()
        wait_until(lambda: _completed(settings, workflow["id"], done + 2), 60, "fire times after the restart")
        admin.post(f"/api/v1/workflows/{workflow['id']}/deactivate")
    finally:
        first.stop()
        second.stop()
    fires = control_plane.schedule_fires(settings, workflow["id"])
    assert all(f["completed"] and f["leads"] == 3 for f in fires), fires
    steps = {later["fire_at_ms"] - earlier["fire_at_ms"] for earlier, later in itertools.pairwise(fires)}
    assert steps == {3000}, "no fire time skipped, the restart's included"
    prefixed = settings.model_copy(update={"topic_prefix": prefix})
    embedded = [e for e in read_topic(settings, topics.INBOUND_EVENTS, key=org_id) if e["trigger"] == "SCHEDULE"]
    scheduled = read_topic(prefixed, topics.INBOUND_EVENTS, key=org_id) + embedded
    ids = [e["event_id"] for e in scheduled]
    assert len(ids) == len(set(ids)) == 3 * len(fires), "each fire time's events, once"
    for fire in fires:
        leads_of_fire = {e["lead"]["lead_id"] for e in scheduled if e["occurred_at_ms"] == fire["fire_at_ms"]}
        assert leads_of_fire == tier_b


YEARLY = "0 0 1 1 *"
"""A fire time the stack's own schedulers never reach during a test: the test ticks its runners at
next New Year itself."""
LEASE_MS = 2000


def _next_new_year() -> int:
    return latest_fire(YEARLY, "Europe/Berlin", now_ms() + 366 * DAY_MS)


def _claim_of(engine: Engine, workflow_id: str, fire_ms: int) -> dict[str, Any] | None:
    """The fire time's row, and the database's clock as it was read (the clock leases run on)."""
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT claimed_by, completed_at IS NOT NULL AS completed, clock_timestamp() AS db_now "
                "FROM schedule_fires WHERE workflow_id = :id AND fire_at = :at"
            ),
            {"id": workflow_id, "at": moment(fire_ms)},
        ).first()
    return dict(row._mapping) if row is not None else None


def _db_now(engine: Engine) -> datetime:
    with engine.connect() as connection:
        found: datetime = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
    return found


def test_a_slow_run_keeps_its_fire_time_while_its_process_lives_and_loses_it_once_the_process_dies(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    """The holder claims next New Year's fire time and never finishes reading the segment. For three
    leases another runner finds the fire time taken; once the holder is killed, it takes it over and
    runs it whole."""
    org = org_factory()
    admin, org_id = org["client"], org["org_id"]
    _seed(api_server.clickhouse, org_id)
    workflow = activate_workflow(admin, "yearly", _scheduled(YEARLY, {"field": "tier", "op": "eq", "value": "B"}))
    fire_ms = _next_new_year()
    started = time.monotonic()

    def now() -> int:
        """The runners' clock: next New Year, moving on like the real one."""
        return fire_ms + 1000 + int((time.monotonic() - started) * 1000)

    engine = connect(settings.database_url)
    holder = spawn(
        [sys.executable, "-m", "tests.schedule_runners", workflow["id"], str(fire_ms), str(LEASE_MS)],
        settings.log_dir / "schedule-holder.log",
        attached=True,
        env=dict(os.environ),
    )
    taker = schedule_runners.runner(settings, engine, api_server.clickhouse, [workflow["id"]], "taker", LEASE_MS)
    try:
        claimed = wait_until(lambda: _claim_of(engine, workflow["id"], fire_ms), 30, "the holder's claim")
        assert claimed["claimed_by"].startswith("holder")
        wait_until(
            lambda: (_db_now(engine) - claimed["db_now"]).total_seconds() * 1000 > 3 * LEASE_MS,
            30,
            "three leases to run out since the claim",
        )
        assert holder.poll() is None, "the holder is alive"
        assert taker.tick(now()) == 0
        still = _claim_of(engine, workflow["id"], fire_ms)
        assert still is not None and still["claimed_by"].startswith("holder") and not still["completed"]
    finally:
        terminate(holder.pid, stop_signal=signal.SIGKILL)
    wait_until(lambda: taker.tick(now()) == 1, 30, "the taker to take the fire time over")
    admin.post(f"/api/v1/workflows/{workflow['id']}/deactivate")
    (fire,) = control_plane.schedule_fires(settings, workflow["id"])
    assert fire["completed"] and fire["leads"] == 3 and fire["claimed_by"].startswith("taker")
    scheduled = [
        e
        for e in read_topic(settings, topics.INBOUND_EVENTS, key=org_id)
        if e["trigger"] == "SCHEDULE" and e["occurred_at_ms"] == fire_ms
    ]
    assert sorted(e["lead"]["lead_id"] for e in scheduled) == [_lead(n, org_id)["lead_id"] for n in (0, 2, 4)]


def _history_row(org_id: str, n: int, at_s: float, lead: dict[str, Any], kind: str = "lead.created") -> dict[str, Any]:
    return {
        "org_id": org_id,
        "event_id": f"{org_id}-e{n}",
        "event_type": kind,
        "lead_id": lead["lead_id"],
        "occurred_at": at_s,
        "event_json": orjson.dumps({"event_type": kind, "trigger": "EVENT", "lead": lead}).decode(),
    }


def _execution_row(org_id: str, name: str, lead_id: str, tier: str, occurred_s: float, **row: Any) -> dict[str, Any]:
    return {
        "execution_id": f"{org_id}-{name}",
        "org_id": org_id,
        "workflow_id": "wf_lq",
        "workflow_version": 1,
        "event_id": f"{org_id}-{name}",
        "event_type": "lead.updated",
        "lead_id": lead_id,
        "status": "completed",
        "tier": tier,
        "event_occurred_at": occurred_s,
        "evaluated_at": occurred_s,
        **row,
    }


def test_a_fire_time_run_again_after_tiers_and_leads_changed_makes_the_same_events(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    """What happened after the fire time is not the fire time's segment: re-tiered leads, a lead
    whose values changed, a new lead, a paused execution that resumed. A run after a takeover reads
    the same leads with the same values, so it makes exactly the events the first run made."""
    org_id = org_factory()["org_id"]
    clickhouse = api_server.clickhouse
    fire_s = now_ms() / 1000 - 3600
    before, after = fire_s - 3600, fire_s + 600
    leads = [_lead(n, org_id) for n in range(5)]
    clickhouse.insert_rows("inbound_events", [_history_row(org_id, n, before, leads[n]) for n in range(4)])
    clickhouse.insert_rows(
        "executions",
        [
            _execution_row(org_id, "x0", leads[0]["lead_id"], "B", before),
            _execution_row(org_id, "x1", leads[1]["lead_id"], "A", before),
            _execution_row(org_id, "x2", leads[2]["lead_id"], "B", before),
            _execution_row(org_id, "x3", leads[3]["lead_id"], "B", before + 60, status="awaiting_approval", revision=1),
        ],
    )
    schedule = Schedule.model_validate({"cron": YEARLY, "segment": {"field": "tier", "op": "eq", "value": "B"}})
    workflow = ScheduledWorkflow(org_id, "wf_segment", 1, schedule, 0)
    runner = schedule_runners.runner(settings, connect(settings.database_url), clickhouse, [], "segment")
    fire_ms = round(fire_s * 1000)
    first = runner.fire_events(workflow, fire_ms)
    assert [e["lead"]["lead_id"] for e in first] == [leads[n]["lead_id"] for n in (0, 2, 3)]

    promoted = {**leads[2], "title": "CEO"}
    clickhouse.insert_rows(
        "inbound_events",
        [
            _history_row(org_id, 10, after, promoted, "lead.updated"),
            _history_row(org_id, 11, after, leads[4]),
        ],
    )
    clickhouse.insert_rows(
        "executions",
        [
            _execution_row(org_id, "y0", leads[0]["lead_id"], "A", after),
            _execution_row(org_id, "y1", leads[1]["lead_id"], "B", after),
            _execution_row(org_id, "y4", leads[4]["lead_id"], "B", after),
            _execution_row(org_id, "x3", leads[3]["lead_id"], "B", before + 60, evaluated_at=after, revision=2),
        ],
    )
    assert runner.fire_events(workflow, fire_ms) == first


def test_one_orgs_failing_segment_does_not_keep_another_orgs_fire_time_from_running(
    org_factory: Any, settings: Settings, api_server: ApiServer
) -> None:
    broken, healthy = org_factory(), org_factory()
    _seed(api_server.clickhouse, healthy["org_id"])
    segment = {"field": "tier", "op": "eq", "value": "B"}
    workflows = [activate_workflow(org["client"], "yearly", _scheduled(YEARLY, segment)) for org in (broken, healthy)]
    ids = [w["id"] for w in workflows]
    clickhouse = schedule_runners.FailingFor(api_server.clickhouse, broken["org_id"])
    runner = schedule_runners.runner(settings, connect(settings.database_url), clickhouse, ids, "isolated")
    fire_ms = _next_new_year()
    assert runner.tick(fire_ms + 1000) == 1
    for org, workflow in zip((broken, healthy), workflows, strict=True):
        org["client"].post(f"/api/v1/workflows/{workflow['id']}/deactivate")
    assert [f["completed"] for f in control_plane.schedule_fires(settings, ids[0])] == [False]
    assert [(f["completed"], f["leads"]) for f in control_plane.schedule_fires(settings, ids[1])] == [(True, 3)]
