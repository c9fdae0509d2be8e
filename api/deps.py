"""Dependencies every route declares in its signature: what it does (its permission), and what it
touches (the database, the readers and queues the lifespan built).

`Allowed(action)` is the one place a caller is authenticated and checked against the permission
matrix; `Public()` marks the few routes that take no credentials. Every route has exactly one of the
two, which the role-matrix test verifies from the app's own route table.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, TypeVar, cast

import redis.asyncio as aioredis
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from api.agent_budgets import AgentBudgets
from api.agent_summaries import AgentSummaries
from api.authentication import authenticate, authenticate_session
from api.control_plane.database import Database
from api.crm_results_reader import CrmResultsReader
from api.deliveries_reader import DeliveriesReader
from api.event_dedup import EventIdDedup
from api.event_publisher import EventPublisher
from api.executions_reader import ExecutionsReader
from api.history_reader import InboundHistoryReader
from api.login_throttle import LoginThrottle
from api.metrics_reader import MetricsReader
from api.outcome_history_reader import OutcomeHistoryReader
from api.permissions import Action, Principal, Refusal, check
from api.problems import Problem
from api.run_keys import RunKeys
from drippulse.settings import Settings
from streams.delivery.crm_parking import ParkedCommands
from streams.delivery.webhook_schedule import DeliverySchedule
from streams.state.secret_box import SecretBox

SESSION_COOKIE = "dp_session"
CSRF_HEADER = "X-CSRF-Token"
_bearer = HTTPBearer(
    auto_error=False, description="An API key (`dpk_…`) or a session token (`dps_…`): `Authorization: Bearer …`"
)
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description=f"The dashboard's session cookie; requests that change something also send `{CSRF_HEADER}`.",
)
T = TypeVar("T")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _app_state(name: str, kind: type[T]) -> Callable[[Request], T]:
    """A dependency reading one object the lifespan put on `app.state`; `kind` types it for mypy."""

    def get(request: Request) -> T:
        return cast(T, getattr(request.app.state, name))

    return get


get_database = _app_state("database", Database)
get_settings = _app_state("settings", Settings)
get_secret_box = _app_state("secret_box", SecretBox)
get_publisher = _app_state("publisher", EventPublisher)
get_event_dedup = _app_state("event_dedup", EventIdDedup)
get_run_keys = _app_state("run_keys", RunKeys)
get_login_throttle = _app_state("login_throttle", LoginThrottle)
get_delivery_schedule = _app_state("delivery_schedule", DeliverySchedule)
get_deliveries = _app_state("deliveries", DeliveriesReader)
get_crm_parking = _app_state("crm_parking", ParkedCommands)
get_redis = _app_state("redis", aioredis.Redis)
get_crm_results = _app_state("crm_results", CrmResultsReader)
get_history = _app_state("history", InboundHistoryReader)
get_executions = _app_state("executions", ExecutionsReader)
get_outcome_history = _app_state("outcome_history", OutcomeHistoryReader)
get_metrics = _app_state("metrics", MetricsReader)
get_agent_budgets = _app_state("agent_budgets", AgentBudgets)
get_agent_summaries = _app_state("agent_summaries", AgentSummaries)

Db = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Box = Annotated[SecretBox, Depends(get_secret_box)]
Schedule = Annotated[DeliverySchedule, Depends(get_delivery_schedule)]
Budgets = Annotated[AgentBudgets, Depends(get_agent_budgets)]
Summaries = Annotated[AgentSummaries, Depends(get_agent_summaries)]


async def principal_of(database: Database, method: str, bearer: str | None, cookie: str | None, csrf: str) -> Principal:
    """From `Authorization: Bearer`, else from the session cookie. A cookie is sent by the browser
    on its own, so a cookie request that changes something must also prove it came from our page:
    the session's CSRF token in a header, which another site cannot read. The header may hold any
    byte, so it is compared as bytes (`compare_digest` refuses non-ASCII text)."""
    if bearer is not None:
        return await authenticate(database, bearer)
    if cookie:
        principal, csrf_token = await authenticate_session(database, cookie)
        if method not in _SAFE_METHODS and not hmac.compare_digest(csrf.encode(), csrf_token.encode()):
            raise Problem(403, "csrf", "CSRF token missing or wrong", f"send the session's csrf_token in {CSRF_HEADER}")
        return principal
    raise Problem(401, "unauthorized", "Not authenticated", "send `Authorization: Bearer <API key or session token>`")


AUTHENTICATED = "principal"
"""Where on `request.state` a request's principal is kept once known: `api.request_limits`
authenticates a body route's caller before its body is read, and the route's dependencies reuse it."""


async def current_principal(
    request: Request,
    database: Db,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    known: Principal | None = getattr(request.state, AUTHENTICATED, None)
    if known is not None:
        return known
    token = bearer.credentials if bearer is not None and bearer.scheme.lower() == "bearer" else None
    principal = await principal_of(database, request.method, token, cookie, request.headers.get(CSRF_HEADER, ""))
    setattr(request.state, AUTHENTICATED, principal)
    return principal


class Permission:
    """What a route does, as the permission matrix names it."""

    def __init__(self, action: Action) -> None:
        self.action = action


class Allowed(Permission):
    async def __call__(self, principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        try:
            check(principal, self.action)
        except Refusal as refusal:
            raise Problem(403, "forbidden", "Not allowed", str(refusal)) from None
        return principal


class Public(Permission):
    """No credentials: the route authenticates its caller otherwise (a signature, a password) or
    serves what anyone may read."""

    def __init__(self) -> None:
        super().__init__(Action.PUBLIC)

    async def __call__(self) -> None:
        return None


PublicRoute = Annotated[None, Depends(Public())]
Account = Annotated[Principal, Depends(Allowed(Action.ACCOUNT))]
ProjectsRead = Annotated[Principal, Depends(Allowed(Action.PROJECTS_READ))]
ProjectsManage = Annotated[Principal, Depends(Allowed(Action.PROJECTS_MANAGE))]
WorkflowsRead = Annotated[Principal, Depends(Allowed(Action.WORKFLOWS_READ))]
WorkflowsAuthor = Annotated[Principal, Depends(Allowed(Action.WORKFLOWS_AUTHOR))]
WorkflowsTest = Annotated[Principal, Depends(Allowed(Action.WORKFLOWS_TEST))]
WorkflowsActivate = Annotated[Principal, Depends(Allowed(Action.WORKFLOWS_ACTIVATE))]
WorkflowsRun = Annotated[Principal, Depends(Allowed(Action.WORKFLOWS_RUN))]
ChangeRequestsRead = Annotated[Principal, Depends(Allowed(Action.CHANGE_REQUESTS_READ))]
ChangeRequestsDecide = Annotated[Principal, Depends(Allowed(Action.CHANGE_REQUESTS_DECIDE))]
ApprovalsRead = Annotated[Principal, Depends(Allowed(Action.APPROVALS_READ))]
ApprovalsDecide = Annotated[Principal, Depends(Allowed(Action.APPROVALS_DECIDE))]
ExecutionsRead = Annotated[Principal, Depends(Allowed(Action.EXECUTIONS_READ))]
EventsSend = Annotated[Principal, Depends(Allowed(Action.EVENTS_SEND))]
WebhooksRead = Annotated[Principal, Depends(Allowed(Action.WEBHOOKS_READ))]
WebhooksManage = Annotated[Principal, Depends(Allowed(Action.WEBHOOKS_MANAGE))]
InboundSourcesRead = Annotated[Principal, Depends(Allowed(Action.INBOUND_SOURCES_READ))]
InboundSourcesManage = Annotated[Principal, Depends(Allowed(Action.INBOUND_SOURCES_MANAGE))]
IntegrationsRead = Annotated[Principal, Depends(Allowed(Action.INTEGRATIONS_READ))]
IntegrationsManage = Annotated[Principal, Depends(Allowed(Action.INTEGRATIONS_MANAGE))]
CrmCommandsRead = Annotated[Principal, Depends(Allowed(Action.CRM_COMMANDS_READ))]
CrmCommandsRetry = Annotated[Principal, Depends(Allowed(Action.CRM_COMMANDS_RETRY))]
ApiKeysManage = Annotated[Principal, Depends(Allowed(Action.API_KEYS_MANAGE))]
MembersManage = Annotated[Principal, Depends(Allowed(Action.MEMBERS_MANAGE))]
AuditRead = Annotated[Principal, Depends(Allowed(Action.AUDIT_READ))]
ModelsRead = Annotated[Principal, Depends(Allowed(Action.MODELS_READ))]
ModelsBacktest = Annotated[Principal, Depends(Allowed(Action.MODELS_BACKTEST))]
UnitPricesRead = Annotated[Principal, Depends(Allowed(Action.UNIT_PRICES_READ))]
UnitPricesManage = Annotated[Principal, Depends(Allowed(Action.UNIT_PRICES_MANAGE))]
AgentTemplatesRead = Annotated[Principal, Depends(Allowed(Action.AGENT_TEMPLATES_READ))]
AgentTemplatesAuthor = Annotated[Principal, Depends(Allowed(Action.AGENT_TEMPLATES_AUTHOR))]
AgentTemplatesActivate = Annotated[Principal, Depends(Allowed(Action.AGENT_TEMPLATES_ACTIVATE))]
AgentsRead = Annotated[Principal, Depends(Allowed(Action.AGENTS_READ))]
AgentsManage = Annotated[Principal, Depends(Allowed(Action.AGENTS_MANAGE))]
AgentsInvoke = Annotated[Principal, Depends(Allowed(Action.AGENTS_INVOKE))]
