"""Schedule runners a test drives itself, on the real control plane, broker and ClickHouse, over its
own workflows only (the stack's schedulers keep the rest).

Run as `python -m tests.schedule_runners WORKFLOW_ID FIRE_MS LEASE_MS`, it is a scheduler process
that claims that fire time and then never finishes reading the segment: a holder that stays alive
until the test kills it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from drippulse.settings import Settings
from drippulse.workers import topic_serde
from streams import topics
from streams.orchestrator.schedules import LEASE_MS, ScheduleRunner
from streams.runtime.kafka import make_producer
from streams.runtime.schema_registry import make_registry
from streams.sinks.clickhouse import ClickHouse
from streams.state.control_plane import ControlPlaneReader, connect


class OnlyThese:
    """The control plane's scheduled workflows narrowed to the given ids, in their order."""

    def __init__(self, engine: Engine, workflow_ids: Sequence[str]) -> None:
        self._reader = ControlPlaneReader(engine)
        self._ids = list(workflow_ids)

    def scheduled_workflows(self) -> list[tuple[str, str, int, dict[str, Any], datetime | None]]:
        found = {row[1]: row for row in self._reader.scheduled_workflows()}
        return [found[workflow_id] for workflow_id in self._ids if workflow_id in found]


class FailingFor:
    """ClickHouse that fails every query about one org, as a broken or overloaded segment would."""

    def __init__(self, clickhouse: ClickHouse, org_id: str) -> None:
        self.database = clickhouse.database
        self._clickhouse = clickhouse
        self._org_id = org_id

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if (params or {}).get("org_id") == self._org_id:
            raise RuntimeError(f"the segment of {self._org_id} failed")
        return self._clickhouse.query(sql, params)


class Stalled:
    """ClickHouse whose queries never return."""

    database = "drippulse"

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        threading.Event().wait()
        raise AssertionError("unreachable")


def runner(
    settings: Settings,
    engine: Engine,
    clickhouse: Any,
    workflow_ids: Sequence[str],
    name: str,
    lease_ms: int = LEASE_MS,
) -> ScheduleRunner:
    inbound = topic_serde(topics.INBOUND_EVENTS, settings, make_registry(settings.schema_registry_url))
    return ScheduleRunner(
        engine,
        OnlyThese(engine, workflow_ids),
        clickhouse,
        make_producer(settings.kafka),
        inbound,
        name,
        settings.schedule_min_interval_s,
        lease_ms,
    )


def main(workflow_id: str, fire_ms: int, lease_ms: int) -> None:
    settings = Settings()
    holder = runner(settings, connect(settings.database_url), Stalled(), [workflow_id], "holder", lease_ms)
    holder.tick(fire_ms + 1000)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
