"""The FastAPI application and its lifespan: connections, migrations, topics, DDL, and in embedded mode
the ClickHouse sinks (chdb allows one process per data directory, so the process serving reads also
writes)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Protocol

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api import problems
from api.agent_budgets import AgentBudgets
from api.agent_summaries import AgentSummaries
from api.budget_usage import TodaysCost, cost_today
from api.control_plane.database import Database, migrate
from api.crm_results_reader import CrmResultsReader
from api.deliveries_reader import DeliveriesReader
from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher
from api.executions_reader import ExecutionsReader
from api.history_reader import InboundHistoryReader
from api.login_throttle import LoginThrottle
from api.metrics_reader import MetricsReader
from api.outcome_history_reader import OutcomeHistoryReader
from api.request_context import RequestIdMiddleware
from api.request_limits import RequestLimits
from api.routes import (
    agent_calls,
    agent_history,
    agent_templates,
    agents,
    api_keys,
    approvals,
    audit_log,
    auth,
    change_requests,
    crm_commands,
    events,
    executions,
    health,
    hooks,
    inbound_sources,
    integration_connections,
    members,
    models,
    projects,
    schema_registry,
    unit_prices,
    webhooks,
    workflow_history,
    workflow_runs,
    workflows,
)
from api.run_keys import RunKeys
from api.summarizer import Summarizer
from drippulse.settings import Settings, load_settings, secret_box
from streams import topics
from streams.delivery.crm_parking import ParkedCommands
from streams.delivery.webhook_schedule import DeliverySchedule
from streams.runtime.dlq import DeadLetters
from streams.runtime.kafka import ensure_topics, make_producer
from streams.runtime.schema_registry import make_registry
from streams.runtime.serde import AvroSerde
from streams.sinks.clickhouse import ClickHouse, apply_schema, connect_clickhouse
from streams.state import redis_clients

log = logging.getLogger(__name__)
API_GROUP = "drippulse-api"
"""The name the API's dead letters go under (`consumer_group`): what it accepted and did not publish."""


class BackgroundWorker(Protocol):
    """A worker the API process runs beside itself (the embedded ClickHouse sinks), for health."""

    @property
    def name(self) -> str: ...

    @property
    def failing(self) -> bool: ...

    def join(self, timeout_s: float) -> None: ...


Background = Callable[[ClickHouse, threading.Event], Sequence[BackgroundWorker]]
"""Starts the background workers on the API's ClickHouse handle; the composition root decides which."""


def create_app(settings: Settings | None = None, background: Background | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(migrate, settings.database_url)
        await run_in_threadpool(ensure_topics, settings.kafka)
        clickhouse = connect_clickhouse(settings.clickhouse_url, settings.chdb_path, settings.clickhouse_database)
        await run_in_threadpool(apply_schema, clickhouse)
        redis_client = redis_clients.connect_async(settings.redis_url)
        inbound_topic = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
        registry = make_registry(settings.schema_registry_url)
        dlq_topic = topics.topic_name(topics.EVENTS_DLQ, settings.topic_prefix)
        publisher = EventPublisher(
            make_producer(settings.kafka, **{"linger.ms": 2}),
            inbound_topic,
            AvroSerde(topics.INBOUND_EVENTS, inbound_topic, registry),
            settings.event_ack_timeout_s,
            DeadLetters(AvroSerde(topics.EVENTS_DLQ, dlq_topic, registry), dlq_topic, API_GROUP),
        )
        database = Database(settings.database_url, settings.database_pool_size, 0, settings.database_pool_timeout_s)
        app.state.settings = settings
        app.state.database = database
        app.state.redis = redis_client
        app.state.secret_box = secret_box(settings)
        summarizer = Summarizer(settings.webhook_allow_loopback, settings.summary_max_concurrent)
        app.state.summarizer = summarizer
        app.state.event_dedup = EventIdDedup(redis_client, settings.event_dedup_window_s)
        app.state.run_keys = RunKeys(redis_client, settings.event_dedup_window_s)
        app.state.login_throttle = LoginThrottle(redis_client)
        app.state.crm_results = CrmResultsReader(clickhouse)
        app.state.crm_parking = ParkedCommands(redis_client, settings.crm_park_schedule)
        app.state.publisher = publisher
        app.state.clickhouse = clickhouse
        app.state.executions = ExecutionsReader(clickhouse)
        app.state.metrics = MetricsReader(clickhouse)
        app.state.history = InboundHistoryReader(clickhouse)
        app.state.outcome_history = OutcomeHistoryReader(clickhouse)
        app.state.delivery_schedule = DeliverySchedule(redis_client)
        costs = TodaysCost(partial(cost_today, database, app.state.metrics))
        app.state.agent_budgets = AgentBudgets(database, redis_client, app.state.delivery_schedule, costs)
        app.state.agent_summaries = AgentSummaries(summarizer, app.state.secret_box, clickhouse)
        app.state.deliveries = DeliveriesReader(clickhouse)
        stop = threading.Event()
        sinks = background(clickhouse, stop) if background is not None else []
        app.state.sinks = sinks
        try:
            yield
        finally:
            stop.set()
            for sink in sinks:
                sink.join(10)
            publisher.close()
            await summarizer.close()
            await database.close()
            await redis_client.aclose()
            clickhouse.close()

    app = FastAPI(
        title="DripPulse API",
        version="0.1.0",
        description="Manage projects, workflows, people, keys, webhooks and integrations; send events; read "
        "executions. Authenticate with `Authorization: Bearer <API key or session token>`. Errors are RFC 9457 "
        "problems (`application/problem+json`).",
        lifespan=lifespan,
    )
    app.add_middleware(RequestLimits, routes=app.routes)
    problems.install(app)
    problems.install_openapi(app)
    app.add_middleware(RequestIdMiddleware)
    for module in (
        health,
        auth,
        projects,
        workflows,
        workflow_runs,
        workflow_history,
        change_requests,
        approvals,
        events,
        executions,
        members,
        api_keys,
        webhooks,
        inbound_sources,
        hooks,
        integration_connections,
        crm_commands,
        audit_log,
        models,
        unit_prices,
        agent_templates,
        agents,
        agent_calls,
        agent_history,
    ):
        app.include_router(module.router)
    if not settings.schema_registry_url:
        app.include_router(schema_registry.router)
    return app
