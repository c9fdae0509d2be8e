"""Builds each batch worker from settings: the wiring, kept out of the code that does the work."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import redis

from drippulse.settings import Settings
from streams import topics
from streams.batch_runtime import BatchWorker
from streams.clickhouse import ClickHouse
from streams.dlq import DeadLetters
from streams.execution_sink import ExecutionSink
from streams.kafka import ensure_topics, make_consumer, make_producer
from streams.processor_state import ProcessorStateStore
from streams.qualifier import LeadQualifier
from streams.schema_registry import SchemaRegistry, make_registry
from streams.serde import AvroSerde
from streams.workflow_catalog import WorkflowCatalog

log = logging.getLogger(__name__)

QUALIFIER_GROUP = "drippulse-qualifier"
EXECUTION_SINK_GROUP = "drippulse-execution-sink"


def _serde(topic: topics.Topic, settings: Settings, registry: SchemaRegistry) -> tuple[AvroSerde, str]:
    name = topics.topic_name(topic, settings)
    return AvroSerde(topic, name, registry), name


def _dead_letters(settings: Settings, registry: SchemaRegistry) -> DeadLetters:
    serde, name = _serde(topics.EVENTS_DLQ, settings, registry)
    return DeadLetters(serde, name)


def build_qualifier(settings: Settings, ready_file: Path | None = None) -> BatchWorker:
    ensure_topics(settings)
    registry = make_registry(settings.schema_registry_url)
    client = redis.Redis.from_url(settings.redis_url)
    inbound, inbound_topic = _serde(topics.INBOUND_EVENTS, settings, registry)
    qualifier = LeadQualifier(
        inbound=inbound,
        executions=_serde(topics.EXECUTIONS, settings, registry),
        crm_commands=_serde(topics.CRM_COMMANDS, settings, registry),
        webhook_deliveries=_serde(topics.WEBHOOK_DELIVERIES, settings, registry),
        dead_letters=_dead_letters(settings, registry),
        catalog=WorkflowCatalog(client, settings.workflow_refresh_s),
        state_store=ProcessorStateStore(client),
    )
    return BatchWorker(
        consumer=make_consumer(settings, QUALIFIER_GROUP),
        producer=make_producer(settings),
        processor=qualifier,
        topics=[inbound_topic],
        batch_size=settings.batch_size,
        batch_timeout_s=settings.batch_timeout_s,
        name="qualifier",
        ready_file=ready_file,
    )


def build_execution_sink(settings: Settings, clickhouse: ClickHouse) -> BatchWorker:
    ensure_topics(settings)
    registry = make_registry(settings.schema_registry_url)
    serde, name = _serde(topics.EXECUTIONS, settings, registry)
    return BatchWorker(
        consumer=make_consumer(settings, EXECUTION_SINK_GROUP),
        producer=make_producer(settings),
        processor=ExecutionSink(serde, clickhouse, _dead_letters(settings, registry)),
        topics=[name],
        batch_size=settings.batch_size,
        batch_timeout_s=max(settings.batch_timeout_s, 0.2),
        name="execution-sink",
    )


def run_until_signalled(worker: BatchWorker) -> None:
    """Runs a worker in the foreground; SIGINT/SIGTERM finish the current batch, then stop."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
