"""Each request's id: taken from a sane `X-Request-ID`, else made up, echoed in the response, and
recorded with every audit entry the request writes, so a change can be traced to its request."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def request_id() -> str | None:
    return _current.get()


class RequestIdMiddleware:
    """Pure ASGI, so the id is set in the context every handler and dependency of the request runs in."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        current = given if _SANE.match(given) else "req_" + secrets.token_hex(8)
        token = _current.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((HEADER.encode(), current.encode()))
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            _current.reset(token)
