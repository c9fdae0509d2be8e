"""Builds and runs `drippulse worker orchestrator`: the faust app with its dependencies."""

from __future__ import annotations

import logging
from pathlib import Path

import faust

from api.control_plane.database import migrate
from drippulse.settings import Settings
from drippulse.workers import agent_calls, dead_letter_writer, schedule_runner, topic_serde
from streams import topics
from streams.clock import now_ms
from streams.execution_outputs import ExecutionOutputs
from streams.orchestrator.app import build_app
from streams.orchestrator.approval_ledger import ApprovalLedger
from streams.orchestrator.due_times import DueTimes
from streams.orchestrator.orchestrator import Orchestrator, RedisReleases
from streams.orchestrator.workflow_versions import WorkflowVersions
from streams.runtime.kafka import ensure_topics, make_producer
from streams.runtime.readiness import ReadyFile
from streams.runtime.schema_registry import make_registry
from streams.runtime.serde import AvroSerde
from streams.sinks.clickhouse import connect_clickhouse
from streams.state import redis_clients
from streams.state.control_plane import ControlPlaneReader, connect

APP_ID = "drippulse-orchestrator"


def build_orchestrator_app(settings: Settings, ready_file: Path | None = None) -> faust.App:
    ensure_topics(settings.kafka)
    migrate(settings.database_url)
    engine = connect(settings.database_url)
    registry = make_registry(settings.schema_registry_url)

    def serde(topic: topics.Topic) -> tuple[AvroSerde, str]:
        return topic_serde(topic, settings, registry)

    inbox, inbox_topic = serde(topics.ORCHESTRATOR_INBOX)
    ledger = ApprovalLedger(engine, inbox_topic)
    reader = ControlPlaneReader(engine)
    dead_letters = dead_letter_writer(settings, registry, APP_ID)
    orchestrator = Orchestrator(
        WorkflowVersions(reader),
        ledger,
        ExecutionOutputs(
            serde(topics.EXECUTIONS),
            serde(topics.CRM_COMMANDS),
            serde(topics.WEBHOOK_DELIVERIES),
            agent_calls(settings, registry, reader, dead_letters),
        ),
        RedisReleases(redis_clients.connect(settings.redis_url)),
        DueTimes(),
        dead_letters,
    )
    schedules = None
    if not settings.embedded_clickhouse:
        clickhouse = connect_clickhouse(settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database)
        schedules = schedule_runner(settings, engine, clickhouse, serde(topics.INBOUND_EVENTS))
    return build_app(
        settings.topic_prefix + APP_ID,
        settings.kafka,
        inbox_topic,
        inbox,
        orchestrator,
        ledger,
        make_producer(settings.kafka),
        now_ms,
        settings.home.resolve() / "orchestrator",
        settings.embedded_kafka,
        ReadyFile(ready_file, ["orchestrator"]) if ready_file is not None else None,
        schedules,
    )


def run_orchestrator(settings: Settings, ready_file: Path | None = None) -> None:
    """Runs until SIGINT/SIGTERM, faust's worker handling the signals."""
    app = build_orchestrator_app(settings, ready_file)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    faust.Worker(app, loglevel=level if isinstance(level, str) else "info", quiet=True).execute_from_commandline()
