"""Scheduled workflows: each fire time runs once, whichever and however many processes watch.

Every tick, for each active workflow with a schedule, the latest fire time at or before now is
claimed in PostgreSQL (`schedule_fires`, keyed by workflow and fire time): an insert that at most
one process wins. The winner reads the segment from ClickHouse, produces one inbound event per lead
(its id derives from workflow, fire time and lead) and marks the fire time completed, renewing its
claim all along (`fire_claims.py`). A claim left unrenewed for `LEASE_MS` (its process died) is
taken over and run again. The segment is a function of the fire time (the history before it), so
the run again makes the same events, and the qualifier the same executions of them. A fire time
missed while no process ran is still run up to `GRACE_MS` late; older ones are skipped. Stored
schedules that fire more often than the floor run only the first fire time of each floor-long
period, which is what a tick claims however late in the period it comes (`due_fire`).

It needs ClickHouse, so it runs where ClickHouse is: in each orchestrator with a ClickHouse server,
in the API process with chdb (one process per data directory).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from confluent_kafka import Producer
from sqlalchemy import Engine

from processors.conditions import compile_condition
from processors.model import Schedule
from processors.schedules import (
    DAY_MS,
    MIN_INTERVAL_S,
    due_fire,
    scheduled_event,
    segment_context,
)
from streams.clock import moment
from streams.orchestrator.fire_claims import FireClaims
from streams.runtime.kafka import deliver_all
from streams.runtime.serde import AvroSerde
from streams.sinks.clickhouse import ClickHouse

log = logging.getLogger(__name__)

GRACE_MS = 3_600_000
LEASE_MS = 60_000
REFRESH_S = 2.0
SCHEDULE_TICK_S = 1.0
SEGMENT_BUDGET_S = 60
"""The longest a segment query may run: the fire times of every org wait behind it."""
SEGMENT_HISTORY_MS = 89 * DAY_MS
"""The history a segment reads: the 89 days before the fire time. The history keeps 90 and drops
older events whenever ClickHouse merges; the day between keeps a run an hour late (or a takeover)
reading what the first run read."""


@dataclass(frozen=True)
class ScheduledWorkflow:
    org_id: str
    workflow_id: str
    version: int
    schedule: Schedule
    activated_at_ms: int


class ScheduledWorkflows(Protocol):
    def scheduled_workflows(self) -> list[tuple[str, str, int, dict[str, Any], datetime | None]]: ...


class ScheduleRunner:
    def __init__(
        self,
        engine: Engine,
        reader: ScheduledWorkflows,
        clickhouse: ClickHouse,
        producer: Producer,
        inbound: tuple[AvroSerde, str],
        name: str,
        floor_s: int = MIN_INTERVAL_S,
        lease_ms: int = LEASE_MS,
    ) -> None:
        self._reader = reader
        self._claims = FireClaims(engine, name, lease_ms)
        self._clickhouse = clickhouse
        self._producer = producer
        self._inbound, self._inbound_topic = inbound
        self._floor_s = floor_s
        self._workflows: list[ScheduledWorkflow] = []
        self._loaded_at = -1e9
        self._done: set[tuple[str, int]] = set()

    def tick(self, now_ms: int) -> int:
        """Runs every fire time that is due and unclaimed; how many it ran. One that fails (its
        segment query, the broker) is logged and left to its lease, so any process tries it again
        once the lease runs out; the other workflows' fire times go on."""
        if time.monotonic() - self._loaded_at >= REFRESH_S:
            self._workflows = self._scheduled()
            self._loaded_at = time.monotonic()
        ran = 0
        for workflow in self._workflows:
            fire_ms = due_fire(workflow.schedule.cron, workflow.schedule.timezone, now_ms, self._floor_s)
            key = (workflow.workflow_id, fire_ms)
            if key in self._done or fire_ms < workflow.activated_at_ms or now_ms - fire_ms > GRACE_MS:
                continue
            try:
                ran += self._fire(workflow, fire_ms)
            except Exception:
                log.exception(
                    "schedule of %s (org %s) failed at %s; tried again once its claim's lease runs out",
                    workflow.workflow_id,
                    workflow.org_id,
                    moment(fire_ms),
                )
        if len(self._done) > 10_000:
            self._done.clear()
        return ran

    def _fire(self, workflow: ScheduledWorkflow, fire_ms: int) -> int:
        """Runs the fire time if this process claims it, renewing the claim while it runs: 1 if it
        ran, 0 if another process holds it or it is done."""
        claim = self._claims.claim(workflow.org_id, workflow.workflow_id, workflow.version, fire_ms)
        if claim is None:
            if self._claims.completed(workflow.workflow_id, fire_ms):
                self._done.add((workflow.workflow_id, fire_ms))
            return 0
        with self._claims.held(claim) as lease:
            records = self.fire_events(workflow, fire_ms)
            lease.check()
            deliver_all(
                self._producer,
                [(self._inbound_topic, workflow.org_id.encode(), self._inbound.encode(r)) for r in records],
            )
            self._claims.complete(claim, len(records))
        self._done.add((workflow.workflow_id, fire_ms))
        log.info("schedule of %s fired for %s: %d leads", workflow.workflow_id, moment(fire_ms), len(records))
        return 1

    def _scheduled(self) -> list[ScheduledWorkflow]:
        found = []
        for org_id, workflow_id, version, schedule, activated_at in self._reader.scheduled_workflows():
            try:
                parsed = Schedule.model_validate(schedule)
            except ValueError as exc:
                log.error("workflow %s has a schedule that no longer validates: %s", workflow_id, exc)
                continue
            activated_ms = round(activated_at.timestamp() * 1000) if activated_at else 0
            found.append(ScheduledWorkflow(org_id, workflow_id, version, parsed, activated_ms))
        return found

    def fire_events(self, workflow: ScheduledWorkflow, fire_ms: int) -> list[dict[str, Any]]:
        """The inbound events a fire time runs: one per lead of the segment."""
        leads = self._segment(workflow, fire_ms)
        return [scheduled_event(workflow.org_id, workflow.workflow_id, fire_ms, lead) for lead in leads]

    def _segment(self, workflow: ScheduledWorkflow, fire_ms: int) -> list[dict[str, Any]]:
        """The leads of the segment as the history stood at the fire time, so a run after a takeover
        makes the same events: each lead's latest lead event before it (within the history window
        before it), the tier recorded for its latest event before it. Ties go to the greater id, not
        to the order ClickHouse reads rows in. Executions are read FINAL and bounded by the time of
        their event, which every revision of an execution shares: one paused before the fire time
        that resumed after it counts alike in both runs. Runs DripPulse started itself (manual,
        scheduled) do not count as a lead's activity."""
        database = self._clickhouse.database
        rows = self._clickhouse.query(
            "SELECT l.lead_id AS lead_id, l.latest_json AS latest_json, l.last_ms AS last_ms, "
            "t.latest_tier AS tier FROM ("
            "SELECT lead_id, argMaxIf(event_json, (occurred_at, event_id), startsWith(event_type, 'lead.')) "
            "AS latest_json, toUnixTimestamp64Milli(max(occurred_at)) AS last_ms "
            f"FROM {database}.inbound_events FINAL WHERE org_id = {{org_id:String}} "
            "AND JSONExtractString(event_json, 'trigger') IN ('', 'EVENT') "
            "AND occurred_at >= fromUnixTimestamp64Milli({since_ms:Int64}) "
            "AND occurred_at < fromUnixTimestamp64Milli({fire_ms:Int64}) "
            "GROUP BY lead_id HAVING countIf(startsWith(event_type, 'lead.')) > 0) AS l "
            "LEFT JOIN (SELECT lead_id, argMax(tier, (event_occurred_at, execution_id)) AS latest_tier "
            f"FROM {database}.executions FINAL WHERE org_id = {{org_id:String}} AND tier != '' "
            "AND event_occurred_at < fromUnixTimestamp64Milli({fire_ms:Int64}) GROUP BY lead_id) AS t "
            f"USING (lead_id) ORDER BY lead_id SETTINGS max_execution_time = {SEGMENT_BUDGET_S}",
            {"org_id": workflow.org_id, "fire_ms": fire_ms, "since_ms": fire_ms - SEGMENT_HISTORY_MS},
        )
        keeps = compile_condition(workflow.schedule.segment) if workflow.schedule.segment is not None else None
        leads = []
        for row in rows:
            lead = orjson.loads(row["latest_json"])["lead"]
            context = segment_context(lead, row["tier"], int(row["last_ms"]), fire_ms)
            if keeps is None or keeps(context):
                leads.append(lead)
        return leads
