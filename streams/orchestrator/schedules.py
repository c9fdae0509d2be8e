"""Scheduled workflows: each fire time runs once, whichever and however many processes watch.

Every tick, for each active workflow with a schedule, the latest fire time at or before now is
claimed in PostgreSQL (`schedule_fires`, keyed by workflow and fire time): an insert that at most
one process wins. The winner reads the segment from ClickHouse, produces one inbound event per lead
(its id derives from workflow, fire time and lead) and marks the fire time completed. A claim left
uncompleted for `LEASE_MS` (its process died at the fire moment) is taken over and run again, which
reproduces the same events, so the qualifier makes the same executions of them. A fire time missed
while no process ran is still run up to `GRACE_MS` late; older ones are skipped.

It needs ClickHouse, so it runs where ClickHouse is: in each orchestrator with a ClickHouse server,
in the API process with chdb (one process per data directory).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Producer
from sqlalchemy import Engine, text

from processors.conditions import compile_condition
from processors.model import Schedule
from processors.schedules import MIN_INTERVAL_S, first_of_its_period, latest_fire, scheduled_event, segment_context
from streams.clock import moment
from streams.runtime.kafka import deliver_all
from streams.runtime.serde import AvroSerde
from streams.sinks.clickhouse import ClickHouse
from streams.state.control_plane import ControlPlaneReader

log = logging.getLogger(__name__)

GRACE_MS = 3_600_000
LEASE_MS = 60_000
REFRESH_S = 2.0
SCHEDULE_TICK_S = 1.0


@dataclass(frozen=True)
class ScheduledWorkflow:
    org_id: str
    workflow_id: str
    version: int
    schedule: Schedule
    activated_at_ms: int


class ScheduleRunner:
    def __init__(
        self,
        engine: Engine,
        reader: ControlPlaneReader,
        clickhouse: ClickHouse,
        producer: Producer,
        inbound: tuple[AvroSerde, str],
        name: str,
        floor_s: int = MIN_INTERVAL_S,
    ) -> None:
        self._engine = engine
        self._reader = reader
        self._clickhouse = clickhouse
        self._producer = producer
        self._inbound, self._inbound_topic = inbound
        self._name = name
        self._floor_s = floor_s
        self._workflows: list[ScheduledWorkflow] = []
        self._loaded_at = -1e9
        self._done: set[tuple[str, int]] = set()

    def tick(self, now_ms: int) -> int:
        """Runs every fire time that is due and unclaimed; how many it ran."""
        if time.monotonic() - self._loaded_at >= REFRESH_S:
            self._workflows = self._scheduled()
            self._loaded_at = time.monotonic()
        ran = 0
        for workflow in self._workflows:
            fire_ms = latest_fire(workflow.schedule.cron, workflow.schedule.timezone, now_ms)
            key = (workflow.workflow_id, fire_ms)
            if key in self._done or fire_ms < workflow.activated_at_ms or now_ms - fire_ms > GRACE_MS:
                continue
            if not first_of_its_period(workflow.schedule.cron, workflow.schedule.timezone, fire_ms, self._floor_s):
                continue
            if not self._claim(workflow, fire_ms, now_ms):
                continue
            leads = self._segment(workflow, fire_ms)
            records = [scheduled_event(workflow.org_id, workflow.workflow_id, fire_ms, lead) for lead in leads]
            deliver_all(
                self._producer,
                [(self._inbound_topic, workflow.org_id.encode(), self._inbound.encode(r)) for r in records],
            )
            self._complete(workflow, fire_ms, len(records))
            self._done.add(key)
            ran += 1
            log.info("schedule of %s fired for %s: %d leads", workflow.workflow_id, moment(fire_ms), len(records))
        if len(self._done) > 10_000:
            self._done.clear()
        return ran

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

    def _claim(self, workflow: ScheduledWorkflow, fire_ms: int, now_ms: int) -> bool:
        """Whether this process runs the fire time: it claimed it first, or took over a claim whose
        process left it uncompleted for longer than the lease."""
        with self._engine.begin() as connection:
            claimed = connection.execute(
                text(
                    "INSERT INTO schedule_fires "
                    "(workflow_id, fire_at, org_id, workflow_version, claimed_by, claimed_at) "
                    "VALUES (:workflow_id, :fire_at, :org_id, :version, :me, :now) "
                    "ON CONFLICT (workflow_id, fire_at) DO UPDATE SET claimed_by = EXCLUDED.claimed_by, "
                    "claimed_at = EXCLUDED.claimed_at "
                    "WHERE schedule_fires.completed_at IS NULL AND schedule_fires.claimed_at < :stale "
                    "RETURNING claimed_by"
                ),
                {
                    "workflow_id": workflow.workflow_id,
                    "fire_at": moment(fire_ms),
                    "org_id": workflow.org_id,
                    "version": workflow.version,
                    "me": self._name,
                    "now": moment(now_ms),
                    "stale": moment(now_ms - LEASE_MS),
                },
            ).first()
            if claimed is not None:
                return True
            completed = connection.execute(
                text("SELECT completed_at IS NOT NULL FROM schedule_fires WHERE workflow_id = :id AND fire_at = :at"),
                {"id": workflow.workflow_id, "at": moment(fire_ms)},
            ).scalar()
        if completed:
            self._done.add((workflow.workflow_id, fire_ms))
        return False

    def _complete(self, workflow: ScheduledWorkflow, fire_ms: int, leads: int) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE schedule_fires SET completed_at = now(), leads = :leads "
                    "WHERE workflow_id = :id AND fire_at = :at AND claimed_by = :me"
                ),
                {"leads": leads, "id": workflow.workflow_id, "at": moment(fire_ms), "me": self._name},
            )

    def _segment(self, workflow: ScheduledWorkflow, fire_ms: int) -> list[dict[str, Any]]:
        """The leads of the org's history (as of their latest lead event) the segment keeps. Runs
        DripPulse started itself (manual, scheduled) do not count as a lead's activity."""
        database = self._clickhouse.database
        rows = self._clickhouse.query(
            "SELECT l.lead_id AS lead_id, l.latest_json AS latest_json, l.last_ms AS last_ms, "
            "t.latest_tier AS tier FROM ("
            "SELECT lead_id, argMaxIf(event_json, occurred_at, startsWith(event_type, 'lead.')) AS latest_json, "
            "toUnixTimestamp64Milli(max(occurred_at)) AS last_ms "
            f"FROM {database}.inbound_events FINAL WHERE org_id = {{org_id:String}} "
            "AND JSONExtractString(event_json, 'trigger') IN ('', 'EVENT') AND occurred_at <= "
            "fromUnixTimestamp64Milli({fire_ms:Int64}) "
            "GROUP BY lead_id HAVING countIf(startsWith(event_type, 'lead.')) > 0) AS l "
            "LEFT JOIN (SELECT lead_id, argMax(tier, evaluated_at) AS latest_tier "
            f"FROM {database}.executions FINAL WHERE org_id = {{org_id:String}} AND tier != '' GROUP BY lead_id) AS t "
            "USING (lead_id) ORDER BY lead_id",
            {"org_id": workflow.org_id, "fire_ms": fire_ms},
        )
        keeps = compile_condition(workflow.schedule.segment) if workflow.schedule.segment is not None else None
        leads = []
        for row in rows:
            lead = orjson.loads(row["latest_json"])["lead"]
            context = segment_context(lead, row["tier"], int(row["last_ms"]), fire_ms)
            if keeps is None or keeps(context):
                leads.append(lead)
        return leads
