"""Dependencies every route declares in its signature: the caller, its org, and the stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar, cast

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
T = TypeVar("T")


@dataclass(frozen=True)
class Principal:
    org_id: str
    key_id: str
    role: str


def _app_state(name: str, kind: type[T]) -> Callable[[Request], T]:
    """A dependency reading one object the lifespan put on `app.state`; `kind` types it for mypy."""

    def get(request: Request) -> T:
        return cast(T, getattr(request.app.state, name))

    return get


get_store = _app_state("store", ControlPlaneStore)
get_settings = _app_state("settings", Settings)
get_publisher = _app_state("publisher", EventPublisher)
get_webhooks = _app_state("webhooks", WebhookSubscriptions)
get_delivery_schedule = _app_state("delivery_schedule", DeliverySchedule)
get_deliveries = _app_state("deliveries", DeliveriesReader)
get_inbound_sources = _app_state("inbound_sources", InboundSources)
get_integrations = _app_state("integrations", IntegrationConnections)
get_crm_parking = _app_state("crm_parking", ParkedCommands)
get_redis = _app_state("redis", aioredis.Redis)
get_crm_results = _app_state("crm_results", CrmResultsReader)
get_history = _app_state("history", InboundHistoryReader)
get_executions = _app_state("executions", ExecutionsReader)


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
