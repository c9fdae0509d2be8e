"""Request bodies are bounded, and credentials looked for, before a body is read.

FastAPI reads and parses a route's declared body before any dependency runs, authentication
included. Without this, anyone could send gigabytes to any body route (the public schema registry
too) and exhaust the API process, which in the embedded default also runs the sinks and schedules.

`RequestLimits` watches the route's reads of its body (the router has matched the route by then, so
its endpoint is in the scope):

1. A route that needs credentials (any route without `Public()`) authenticates its caller before
   the first byte is read, as its dependencies would (`api.deps.principal_of`): no credential, an
   unknown, revoked or expired one, or a cookie without its CSRF token is refused there, and the
   principal is kept for the route's dependencies, so a request is authenticated once. (When a
   store is down, authentication is left to the dependencies, after the body within its limit, so
   the answer is the same 503 as on any route; it is tried once before the body, not again for
   every chunk of it.)
2. A declared `Content-Length` over the route's limit gets 413 before the first byte is read.
3. A body, chunked or not, is read no further than the limit: one byte more is a 413.

The limit is the route's `BodyLimit(...)` dependency when it declares one, else `PUBLIC_LIMIT` for
routes without credentials (small bodies: a login, a schema, a signed hook) and `DEFAULT_LIMIT` for
the others. (FastAPI's own `max_body_size` answers a declared length over it in plain text, not as
a problem, so it is not used.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import AUTHENTICATED, CSRF_HEADER, SESSION_COOKIE, Permission, Public, principal_of
from api.permissions import Principal
from api.problems import Problem

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 2 * 1024 * 1024
PUBLIC_LIMIT = 256 * 1024


class BodyLimit:
    """A route's own body limit, declared as a dependency: `_: Annotated[None, Depends(BodyLimit(n))]`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def __call__(self) -> None:
        return None


class RequestRefused(HTTPException):
    """Raised from `receive` (as Starlette's own body limiter does), so FastAPI passes it on to the
    problem handler unchanged instead of calling the body unreadable. `problem`, when set, is the
    answer to give (an authentication refusal, with its own type)."""

    def __init__(self, status_code: int, detail: str, problem: Problem | None = None) -> None:
        super().__init__(status_code, detail, problem.headers if problem is not None else None)
        self.problem = problem

    @classmethod
    def of(cls, problem: Problem) -> RequestRefused:
        return cls(problem.status, problem.detail, problem)


class _Rule:
    __slots__ = ("credentials", "limit")

    def __init__(self, limit: int, credentials: bool) -> None:
        self.limit = limit
        self.credentials = credentials


_UNKNOWN_ROUTE = _Rule(PUBLIC_LIMIT, credentials=False)


def _rule(route: APIRoute) -> _Rule:
    calls = [dependency.call for dependency in route.dependant.dependencies]
    permissions = [call for call in calls if isinstance(call, Permission)]
    credentials = bool(permissions) and not any(isinstance(p, Public) for p in permissions)
    declared = [call.max_bytes for call in calls if isinstance(call, BodyLimit)]
    return _Rule(declared[0] if declared else DEFAULT_LIMIT if credentials else PUBLIC_LIMIT, credentials)


async def _authenticated(scope: Scope) -> Principal:
    """The caller, as `api.deps.current_principal` finds it from the same headers."""
    request = Request(scope)
    scheme, credentials = get_authorization_scheme_param(request.headers.get("Authorization"))
    bearer = credentials if scheme.lower() == "bearer" and credentials else None
    cookie = request.cookies.get(SESSION_COOKIE)
    csrf = request.headers.get(CSRF_HEADER, "")
    return await principal_of(request.app.state.database, request.method, bearer, cookie, csrf)


def _declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    declared = next((value for name, value in headers if name == b"content-length"), b"")
    return int(declared) if declared.isdigit() else None


class RequestLimits:
    """Pure ASGI (see the module docstring)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self._app = app
        self._routes = routes
        self._rules: dict[object, _Rule] | None = None

    def _rules_by_endpoint(self) -> dict[object, _Rule]:
        if self._rules is None:  # every route is added by the first request
            originals = (context.original_route for context in iter_route_contexts(self._routes))
            self._rules = {route.endpoint: _rule(route) for route in originals if isinstance(route, APIRoute)}
        return self._rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        rules = self._rules_by_endpoint()
        declared = _declared_length(scope["headers"])
        received = 0
        looked_for_credentials = False

        async def limited() -> Message:
            nonlocal received, looked_for_credentials
            rule = rules.get(scope.get("endpoint"), _UNKNOWN_ROUTE)
            state = scope.setdefault("state", {})
            if rule.credentials and not looked_for_credentials and AUTHENTICATED not in state:
                looked_for_credentials = True
                try:
                    state[AUTHENTICATED] = await _authenticated(scope)
                except Problem as refusal:
                    raise RequestRefused.of(refusal) from None
                except Exception:
                    log.warning("could not authenticate before the body; the route's dependencies will", exc_info=True)
            too_large = f"the body is over {rule.limit} bytes, this route's limit"
            if declared is not None and declared > rule.limit:
                raise RequestRefused(413, too_large)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > rule.limit:
                    raise RequestRefused(413, too_large)
            return message

        await self._app(scope, limited, send)
