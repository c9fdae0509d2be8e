"""Request bodies are bounded, and credentials looked for, before a body is read.

FastAPI reads and parses a route's declared body before any dependency runs, authentication
included. Without this, anyone could send gigabytes to any body route (the public schema registry
too) and exhaust the API process, which in the embedded default also runs the sinks and schedules.

`RequestLimits` watches the route's reads of its body (the router has matched the route by then, so
its endpoint is in the scope):

1. A route that needs credentials (any route without `Public()`), asked without any (no
   `Authorization: Bearer …`, no session cookie), gets 401 before the first byte is read. Whether a
   credential is valid is the route's dependencies' to say, after the body is read, within its limit.
2. A declared `Content-Length` over the route's limit gets 413 before the first byte is read.
3. A body, chunked or not, is read no further than the limit: one byte more is a 413.

The limit is the route's `BodyLimit(...)` dependency when it declares one, else `PUBLIC_LIMIT` for
routes without credentials (small bodies: a login, a schema, a signed hook) and `DEFAULT_LIMIT` for
the others. (FastAPI's own `max_body_size` answers a declared length over it in plain text, not as
a problem, so it is not used.)
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import SESSION_COOKIE, Permission, Public

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
    problem handler unchanged instead of calling the body unreadable."""


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


def _has_credentials(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer " and value[7:].strip():
            return True
        if name == b"cookie" and SESSION_COOKIE.encode() + b"=" in value:
            return True
    return False


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
        headers = scope["headers"]
        credentials = _has_credentials(headers)
        declared = _declared_length(headers)
        received = 0

        async def limited() -> Message:
            nonlocal received
            rule = rules.get(scope.get("endpoint"), _UNKNOWN_ROUTE)
            if rule.credentials and not credentials:
                raise RequestRefused(401, "send `Authorization: Bearer <API key or session token>`")
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
