"""Dependencies every route declares in its signature: the caller, its org, and the stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, cast

import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.crm_results_reader import CrmResultsReader
from api.deliveries_reader import DeliveriesReader
from api.event_publisher import EventPublisher
from api.executions_reader import ExecutionsReader
from api.history_reader import InboundHistoryReader
from api.inbound_sources import InboundSources
from api.problems import Problem
from api.store import ControlPlaneStore
from drippulse.settings import Settings
from streams.crm_parking import ParkedCommands
from streams.integration_connections import IntegrationConnections
from streams.webhook_schedule import DeliverySchedule
from streams.webhook_subscriptions import WebhookSubscriptions

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer dpk_…`")
_RANK = {"reader": 0, "writer": 1, "admin": 2}


@dataclass(frozen=True)
class Principal:
    org_id: str
    key_id: str
    role: str


def get_store(request: Request) -> ControlPlaneStore:
    return cast(ControlPlaneStore, request.app.state.store)


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_publisher(request: Request) -> EventPublisher:
    return cast(EventPublisher, request.app.state.publisher)


def get_webhooks(request: Request) -> WebhookSubscriptions:
    return cast(WebhookSubscriptions, request.app.state.webhooks)


def get_delivery_schedule(request: Request) -> DeliverySchedule:
    return cast(DeliverySchedule, request.app.state.delivery_schedule)


def get_deliveries(request: Request) -> DeliveriesReader:
    return cast(DeliveriesReader, request.app.state.deliveries)


def get_inbound_sources(request: Request) -> InboundSources:
    return cast(InboundSources, request.app.state.inbound_sources)


def get_integrations(request: Request) -> IntegrationConnections:
    return cast(IntegrationConnections, request.app.state.integrations)


def get_crm_parking(request: Request) -> ParkedCommands:
    return cast(ParkedCommands, request.app.state.crm_parking)


def get_redis(request: Request) -> aioredis.Redis:
    return cast(aioredis.Redis, request.app.state.redis)


def get_crm_results(request: Request) -> CrmResultsReader:
    return cast(CrmResultsReader, request.app.state.crm_results)


def get_history(request: Request) -> InboundHistoryReader:
    return cast(InboundHistoryReader, request.app.state.history)


def get_executions(request: Request) -> ExecutionsReader:
    return cast(ExecutionsReader, request.app.state.executions)


async def get_principal(
    store: Annotated[ControlPlaneStore, Depends(get_store)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "Missing API key", "send `Authorization: Bearer <api key>`")
    found = await store.authenticate(credentials.credentials)
    if found is None:
        raise Problem(401, "unauthorized", "Invalid API key", "the API key is unknown or revoked")
    return Principal(org_id=found["org_id"], key_id=found["key_id"], role=found["role"])


def require(role: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting callers whose key role is at least `role` (reader < writer < admin)."""

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if _RANK.get(principal.role, -1) < _RANK[role]:
            raise Problem(403, "forbidden", "Insufficient role", f"this operation needs the {role} role")
        return principal

    return check


Reader = Annotated[Principal, Depends(require("reader"))]
Writer = Annotated[Principal, Depends(require("writer"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Store = Annotated[ControlPlaneStore, Depends(get_store)]
