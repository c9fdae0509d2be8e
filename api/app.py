"""The FastAPI application and its lifespan: connections, topics, DDL, and in embedded mode the
ClickHouse sinks (chdb allows one process per data directory, so the process serving reads also writes)."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from api import problems
from api.crm_results_reader import CrmResultsReader
from api.deliveries_reader import DeliveriesReader
from api.event_publisher import EventPublisher
from api.executions_reader import ExecutionsReader
from api.history_reader import InboundHistoryReader
from api.inbound_sources import InboundSources
from api.routes import (
    api_keys,
    crm_commands,
    events,
    executions,
    health,
    hooks,
    inbound_sources,
    integration_connections,
    schema_registry,
    webhooks,
    workflows,
)
from api.store import ControlPlaneStore
from drippulse.settings import Settings, load_settings
from drippulse.workers import build_sinks, run_in_threads
from streams import topics
from streams.clickhouse import apply_schema, connect_clickhouse
from streams.crm_parking import ParkedCommands
from streams.integration_connections import IntegrationConnections
from streams.kafka import ensure_topics, make_producer
from streams.schema_registry import make_registry
from streams.secret_box import secret_box
from streams.serde import AvroSerde
from streams.webhook_schedule import DeliverySchedule
from streams.webhook_subscriptions import WebhookSubscriptions

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(ensure_topics, settings)
        clickhouse = connect_clickhouse(settings)
        await run_in_threadpool(apply_schema, clickhouse)
        redis_client = aioredis.Redis.from_url(settings.redis_url)
        inbound_topic = topics.topic_name(topics.INBOUND_EVENTS, settings)
        registry = make_registry(settings.schema_registry_url)
        publisher = EventPublisher(
            make_producer(settings, **{"linger.ms": 2}),
            inbound_topic,
            AvroSerde(topics.INBOUND_EVENTS, inbound_topic, registry),
        )
        app.state.settings = settings
        app.state.redis = redis_client
        app.state.store = ControlPlaneStore(redis_client)
        box = secret_box(settings)
        app.state.webhooks = WebhookSubscriptions(redis_client, box)
        app.state.inbound_sources = InboundSources(redis_client, box)
        app.state.integrations = IntegrationConnections(redis_client, box)
        app.state.crm_results = CrmResultsReader(clickhouse)
        app.state.crm_parking = ParkedCommands(redis_client, settings.crm_park_schedule)
        app.state.publisher = publisher
        app.state.clickhouse = clickhouse
        app.state.executions = ExecutionsReader(clickhouse)
        app.state.history = InboundHistoryReader(clickhouse)
        app.state.delivery_schedule = DeliverySchedule(redis_client)
        app.state.deliveries = DeliveriesReader(clickhouse)
        stop = threading.Event()
        sinks = run_in_threads(build_sinks(settings, clickhouse), stop) if settings.embedded_clickhouse else []
        app.state.sinks = sinks
        try:
            yield
        finally:
            stop.set()
            for sink in sinks:
                sink.thread.join(timeout=10)
            publisher.close()
            await redis_client.aclose()
            clickhouse.close()

    app = FastAPI(
        title="DripPulse API",
        version="0.1.0",
        description="Manage workflows, API keys and events; read executions. Errors are RFC 9457 problems.",
        lifespan=lifespan,
    )
    problems.install(app)
    routers = (health, workflows, events, executions, api_keys, webhooks, inbound_sources, hooks)
    for module in (*routers, integration_connections, crm_commands):
        app.include_router(module.router)
    if not settings.schema_registry_url:
        app.include_router(schema_registry.router)
    return app
