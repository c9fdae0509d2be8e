"""Builds each batch worker from settings: the wiring, kept out of the code that does the work."""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from sqlalchemy import Engine

from api.control_plane.database import migrate
from drippulse.settings import Settings, secret_box
from streams import topics
from streams.agent_calls import AgentCalls
from streams.clock import now_ms
from streams.delivery.crm_applier import CrmCommandApplier, CrmConfig
from streams.delivery.webhook_dispatcher import DispatchConfig, WebhookDispatcher
from streams.delivery.webhook_intake import WebhookIntake
from streams.delivery.webhook_schedule import DeliverySchedule
from streams.orchestrator.schedules import SCHEDULE_TICK_S, ScheduleRunner
from streams.qualifier import LeadQualifier
from streams.runtime.batch_runtime import BatchProcessor, BatchWorker
from streams.runtime.dlq import DeadLetters
from streams.runtime.kafka import ensure_topics, make_batch_producer, make_consumer, make_producer
from streams.runtime.readiness import ReadyFile
from streams.runtime.schema_registry import SchemaRegistry, make_registry
from streams.runtime.serde import AvroSerde
from streams.sinks.clickhouse import ClickHouse
from streams.sinks.clickhouse_sink import (
    ClickHouseSink,
    RowBuilder,
    crm_result_row,
    execution_row,
    inbound_event_row,
    inbound_refusals,
    webhook_attempt_row,
)
from streams.state import redis_clients
from streams.state.control_plane import ControlPlaneReader, RevisionCache, connect
from streams.state.lead_models import LeadModels, ModelStore
from streams.state.lead_snapshot_store import LeadSnapshotStore
from streams.state.processor_state import ProcessorStateStore
from streams.state.workflow_catalog import WorkflowCatalog
from streams.trainer import ModelTrainer, TrainerConfig

log = logging.getLogger(__name__)

QUALIFIER_GROUP = "drippulse-qualifier"
TRAINER_GROUP = "drippulse-trainer"
CRM_GROUP = "drippulse-crm"
WEBHOOK_INTAKE_GROUP = "drippulse-webhooks"
SINKS: dict[str, tuple[topics.Topic, str, RowBuilder]] = {
    "executions": (topics.EXECUTIONS, "executions", execution_row),
    "inbound-history": (topics.INBOUND_EVENTS, "inbound_events", inbound_event_row),
    "webhook-attempts": (topics.WEBHOOK_ATTEMPTS, "webhook_attempts", webhook_attempt_row),
    "crm-results": (topics.CRM_RESULTS, "crm_command_results", crm_result_row),
}
"""Sink name -> (topic, ClickHouse table, row builder); each sink is its own consumer group."""


def topic_serde(topic: topics.Topic, settings: Settings, registry: SchemaRegistry) -> tuple[AvroSerde, str]:
    name = topics.topic_name(topic, settings.topic_prefix)
    return AvroSerde(topic, name, registry), name


def dead_letter_writer(settings: Settings, registry: SchemaRegistry, group: str) -> DeadLetters:
    serde, name = topic_serde(topics.EVENTS_DLQ, settings, registry)
    return DeadLetters(serde, name, group)


def _batch_worker(
    settings: Settings,
    group: str,
    processor: BatchProcessor,
    topic_name: str,
    name: str,
    ready_file: Path | ReadyFile | None = None,
    batch_timeout_s: float | None = None,
    process_idle: bool = False,
) -> BatchWorker:
    """`ready_file`: a path this worker alone makes ready, or a ReadyFile several share."""
    return BatchWorker(
        consumer=make_consumer(settings.kafka, group),
        producer=make_batch_producer(settings.kafka),
        processor=processor,
        topics=[topic_name],
        batch_size=settings.batch_size,
        batch_timeout_s=batch_timeout_s or settings.batch_timeout_s,
        name=name,
        ready=ReadyFile(ready_file, [name]) if isinstance(ready_file, Path) else ready_file,
        process_idle=process_idle,
    )


def agent_calls(
    settings: Settings, registry: SchemaRegistry, reader: ControlPlaneReader, dead_letters: DeadLetters
) -> AgentCalls:
    """What sends the calls of `agent` steps, for a worker that evaluates steps (the qualifier, the
    orchestrator), dead-lettering the refused ones under that worker's name."""
    return AgentCalls(
        topic_serde(topics.INBOUND_EVENTS, settings, registry), dead_letters, reader, settings.workflow_refresh_s
    )


def control_plane(settings: Settings) -> ControlPlaneReader:
    """The workers' read access to the control plane, once its schema is there (every process
    applies the migrations at start-up, like the topics: whichever starts first creates them)."""
    migrate(settings.database_url)
    return ControlPlaneReader(connect(settings.database_url))


def build_qualifier(settings: Settings, ready_file: Path | None = None) -> BatchWorker:
    ensure_topics(settings.kafka)
    registry = make_registry(settings.schema_registry_url)
    client = redis_clients.connect(settings.redis_url)
    inbound, inbound_topic = topic_serde(topics.INBOUND_EVENTS, settings, registry)
    reader = control_plane(settings)
    dead_letters = dead_letter_writer(settings, registry, QUALIFIER_GROUP)
    qualifier = LeadQualifier(
        inbound=inbound,
        executions=topic_serde(topics.EXECUTIONS, settings, registry),
        crm_commands=topic_serde(topics.CRM_COMMANDS, settings, registry),
        webhook_deliveries=topic_serde(topics.WEBHOOK_DELIVERIES, settings, registry),
        orchestrator_inbox=topic_serde(topics.ORCHESTRATOR_INBOX, settings, registry),
        dead_letters=dead_letters,
        catalog=WorkflowCatalog(reader, settings.workflow_refresh_s),
        state_store=ProcessorStateStore(client),
        lead_models=LeadModels(connect(settings.database_url), settings.model_refresh_s),
        agent_calls=agent_calls(settings, registry, reader, dead_letters),
    )
    return _batch_worker(settings, QUALIFIER_GROUP, qualifier, inbound_topic, "qualifier", ready_file)


def build_trainer(settings: Settings, ready_file: Path | None = None) -> BatchWorker:
    """Its own consumer group on the inbound topic: the qualifier never waits for it. Called on idle
    polls too, so what it learned is checkpointed within `model_checkpoint_s` once outcomes stop."""
    ensure_topics(settings.kafka)
    control_plane(settings)
    registry = make_registry(settings.schema_registry_url)
    inbound, inbound_topic = topic_serde(topics.INBOUND_EVENTS, settings, registry)
    trainer = ModelTrainer(
        inbound=inbound,
        snapshots=LeadSnapshotStore(redis_clients.connect(settings.redis_url)),
        store=ModelStore(connect(settings.database_url), TRAINER_GROUP, settings.model_versions_kept),
        config=TrainerConfig(
            checkpoint_every=settings.model_checkpoint_updates,
            checkpoint_s=settings.model_checkpoint_s,
            unknown_org_retry_s=settings.workflow_refresh_s,
        ),
    )
    return _batch_worker(settings, TRAINER_GROUP, trainer, inbound_topic, "trainer", ready_file, process_idle=True)


def build_sinks(settings: Settings, clickhouse: ClickHouse, ready_file: Path | None = None) -> list[BatchWorker]:
    """One worker per sink; the ready file is written once every one of them owns partitions."""
    ensure_topics(settings.kafka)
    registry = make_registry(settings.schema_registry_url)
    ready = ReadyFile(ready_file, [f"sink-{name}" for name in SINKS]) if ready_file is not None else None
    workers = []
    for name, (topic, table, to_row) in SINKS.items():
        serde, topic_name = topic_serde(topic, settings, registry)
        group = f"drippulse-sink-{name}"
        refuses = inbound_refusals if topic is topics.INBOUND_EVENTS else None
        sink = ClickHouseSink(serde, clickhouse, table, to_row, dead_letter_writer(settings, registry, group), refuses)
        workers.append(
            _batch_worker(
                settings,
                group,
                sink,
                topic_name,
                f"sink-{name}",
                ready,
                batch_timeout_s=max(settings.batch_timeout_s, 0.2),
            )
        )
    return workers


def build_crm_applier(settings: Settings, ready_file: Path | None = None) -> BatchWorker:
    ensure_topics(settings.kafka)
    registry = make_registry(settings.schema_registry_url)
    commands, commands_topic = topic_serde(topics.CRM_COMMANDS, settings, registry)
    reader = control_plane(settings)
    applier = CrmCommandApplier(
        commands=commands,
        results=topic_serde(topics.CRM_RESULTS, settings, registry),
        dead_letters=dead_letter_writer(settings, registry, CRM_GROUP),
        redis_url=settings.redis_url,
        connections=RevisionCache(reader, reader.integration_connections, settings.workflow_refresh_s),
        box=secret_box(settings),
        config=CrmConfig(
            max_attempts=settings.crm_max_attempts,
            backoff_s=settings.crm_backoff,
            timeout_s=settings.crm_timeout_s,
            max_retry_after_s=settings.crm_max_retry_after_s,
            connection_concurrency=settings.crm_connection_concurrency,
            applied_retention_s=settings.webhook_retention_s,
            allow_loopback=settings.webhook_allow_loopback,
            park_schedule_s=settings.crm_park_schedule,
            batch_budget_s=settings.crm_batch_budget_s,
        ),
    )
    return _batch_worker(settings, CRM_GROUP, applier, commands_topic, "crm", ready_file, process_idle=True)


def build_webhook_intake(settings: Settings, reader: ControlPlaneReader, ready_file: Path | None = None) -> BatchWorker:
    registry = make_registry(settings.schema_registry_url)
    serde, topic_name = topic_serde(topics.WEBHOOK_DELIVERIES, settings, registry)
    intake = WebhookIntake(
        serde=serde,
        client=redis_clients.connect(settings.redis_url),
        subscriptions=RevisionCache(reader, reader.webhook_subscriptions, settings.workflow_refresh_s),
        dead_letters=dead_letter_writer(settings, registry, WEBHOOK_INTAKE_GROUP),
        first_delay_ms=int(settings.webhook_retry_schedule[0] * 1000),
    )
    return _batch_worker(settings, WEBHOOK_INTAKE_GROUP, intake, topic_name, "webhook-intake", ready_file)


def build_webhook_dispatcher(settings: Settings, reader: ControlPlaneReader) -> WebhookDispatcher:
    """Builds inside the running event loop: the async Redis client binds to it."""
    registry = make_registry(settings.schema_registry_url)
    client = redis_clients.connect_async(settings.redis_url)
    return WebhookDispatcher(
        schedule=DeliverySchedule(client),
        control_plane=reader,
        box=secret_box(settings),
        producer=make_producer(settings.kafka),
        attempts=topic_serde(topics.WEBHOOK_ATTEMPTS, settings, registry),
        config=DispatchConfig(
            retry_schedule_s=settings.webhook_retry_schedule,
            timeout_s=settings.webhook_timeout_s,
            max_in_flight=settings.webhook_max_in_flight,
            endpoint_concurrency=settings.webhook_endpoint_concurrency,
            disable_after_s=settings.webhook_disable_after_s,
            response_excerpt_bytes=settings.webhook_response_excerpt_bytes,
            allow_loopback=settings.webhook_allow_loopback,
            retention_s=settings.webhook_retention_s,
            subscription_refresh_s=settings.workflow_refresh_s,
        ),
    )


def run_webhook_worker(settings: Settings, ready_file: Path | None = None) -> None:
    """Intake (the batch loop, in a thread) and dispatcher (asyncio on uvloop, this thread) until
    SIGINT/SIGTERM. uvloop measured 10-20 % more deliveries per second than the default loop. If
    either part fails, both stop and the process exits 1, so a supervisor restarts the whole worker
    instead of keeping a half of it alive."""
    ensure_topics(settings.kafka)
    reader = control_plane(settings)
    stop = _stop_on_signals()
    (intake,) = run_in_threads([build_webhook_intake(settings, reader, ready_file)], stop)

    async def dispatch() -> None:
        await build_webhook_dispatcher(settings, reader).run(stop)

    try:
        uvloop.run(dispatch())
    finally:
        stop.set()
        intake.thread.join(timeout=15)
    if intake.failed:
        raise SystemExit(1)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


@dataclass
class WorkerThread:
    """A batch worker running in a thread, which says in `failed` if it died (the batch runtime
    retries what a dependency fails, so only a fatal error kills it). With `stop_siblings`, its
    death sets the shared `stop`, so its siblings stop rather than run on beside a dead part (the
    webhook worker's intake and dispatcher); without, they run on (the API's independent sinks)."""

    worker: BatchWorker
    stop_siblings: bool = True
    failed: bool = False
    thread: threading.Thread = field(init=False)

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self._run, args=(stop,), name=self.worker.name, daemon=True)
        self.thread.start()

    def _run(self, stop: threading.Event) -> None:
        try:
            self.worker.run(stop)
        except Exception:
            log.exception("%s failed%s", self.worker.name, "; stopping its siblings" if self.stop_siblings else "")
            self.failed = True
            if self.stop_siblings:
                stop.set()

    @property
    def name(self) -> str:
        return self.worker.name

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    @property
    def failing(self) -> bool:
        """Dead, or retrying batches a dependency keeps failing."""
        return not self.alive or self.worker.stats.failures_in_a_row > 0

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout=timeout_s)


def run_in_threads(workers: list[BatchWorker], stop: threading.Event, stop_siblings: bool = True) -> list[WorkerThread]:
    running = [WorkerThread(worker, stop_siblings) for worker in workers]
    for handle in running:
        handle.start(stop)
    return running


@dataclass
class PeriodicTask:
    """A function run every `interval_s` in a thread until stopped; `failing` when its last run raised
    or the thread died, as a worker thread reports it."""

    name: str
    run_once: Callable[[], object]
    interval_s: float
    failed_last: bool = False
    thread: threading.Thread = field(init=False)

    def start(self, stop: threading.Event) -> None:
        self.thread = threading.Thread(target=self._run, args=(stop,), name=self.name, daemon=True)
        self.thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.run_once()
                self.failed_last = False
            except Exception:
                log.exception("%s failed; retrying in %.0f s", self.name, self.interval_s)
                self.failed_last = True

    @property
    def failing(self) -> bool:
        return self.failed_last or not self.thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout=timeout_s)


def schedule_runner(
    settings: Settings, engine: Engine, clickhouse: ClickHouse, inbound: tuple[AvroSerde, str]
) -> ScheduleRunner:
    """Named after its process, which its claims of fire times record."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    return ScheduleRunner(
        engine,
        ControlPlaneReader(engine),
        clickhouse,
        make_producer(settings.kafka),
        inbound,
        name,
        settings.schedule_min_interval_s,
    )


def embedded_background(settings: Settings) -> Callable[[ClickHouse, threading.Event], Sequence[BackgroundTask]]:
    """What `drippulse api` runs beside the API with chdb (one process per data directory): the
    ClickHouse sinks, each in its own thread, independent of one another, and the scheduled
    workflows, which read ClickHouse."""

    def start(clickhouse: ClickHouse, stop: threading.Event) -> Sequence[BackgroundTask]:
        if not settings.embedded_clickhouse:
            return []
        tasks: list[BackgroundTask] = list(run_in_threads(build_sinks(settings, clickhouse), stop, stop_siblings=False))
        registry = make_registry(settings.schema_registry_url)
        runner = schedule_runner(
            settings, connect(settings.database_url), clickhouse, topic_serde(topics.INBOUND_EVENTS, settings, registry)
        )
        schedules = PeriodicTask("schedules", lambda: runner.tick(now_ms()), SCHEDULE_TICK_S)
        schedules.start(stop)
        return [*tasks, schedules]

    return start


BackgroundTask = WorkerThread | PeriodicTask


def tune_gc_for_batches() -> None:
    """Call once a worker process has built its workers.

    Such a heap is mostly long-lived: modules, compiled workflows, caches. A batch's garbage is
    freed by reference counting as the batch ends. With CPython's default thresholds (a young
    collection every 700 net allocations) the qualifier's batches survived into the old generation,
    and a full collection ran in almost every batch, scanning the whole heap. That cost 16-19 µs
    per event, about 12 % of its time.

    Freezing what exists now, and collecting young objects every 100,000 net allocations, brought
    it under 1 µs. Cycles are still collected, only less often.
    """
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


def run_until_signalled(*workers: BatchWorker) -> None:
    """Runs workers until SIGINT/SIGTERM; each finishes its current batch, then stops."""
    tune_gc_for_batches()
    stop = _stop_on_signals()
    if len(workers) == 1:
        workers[0].run(stop)
        return
    running = run_in_threads(list(workers), stop)
    for handle in running:
        while handle.alive:
            handle.thread.join(timeout=0.5)
    if any(handle.failed for handle in running):
        raise SystemExit(1)
