"""RFC 9457 problem details for every 4xx/5xx, so clients and agents can branch on `type`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
PROBLEM_BASE = "https://drippulse.dev/problems/"
MEDIA_TYPE = "application/problem+json"
RETRY_AFTER = "2"
"""Seconds a client waits before retrying a 503 (a dependency down): the `Retry-After` header."""


class ProblemDetail(BaseModel):
    """An RFC 9457 problem: branch on `type`; 422s list each invalid field in `errors`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description=f"{PROBLEM_BASE}<kind>, e.g. {PROBLEM_BASE}not-found")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For 422: {index?, in?, field, message} per problem; `field` is a JSON path."
    )


_DESCRIPTIONS = {
    400: "Bad request (for example an invalid cursor)",
    401: "Missing, unknown, revoked or expired credentials",
    403: "The caller's role (or key scope) does not allow this",
    404: "Not found in the caller's organization (or project)",
    409: "Conflicts with the resource's current state",
    410: "Gone for good: sending it again can never succeed",
    413: "Too large",
    422: "Invalid request: `errors` lists each problem",
    429: "Too many requests; retry after `Retry-After` seconds",
    503: "A dependency (broker, database) is unavailable, or the API is busy; retry after `Retry-After` seconds",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses a route declares, each an `application/problem+json` ProblemDetail."""
    return {status: {"model": ProblemDetail, "description": _DESCRIPTIONS[status]} for status in statuses}


class Problem(Exception):
    def __init__(
        self, status: int, kind: str, title: str, detail: str = "", headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def not_found(what: str, identifier: str) -> Problem:
    """Also the answer for another organization's resources: their existence is not disclosed."""
    return Problem(404, "not-found", f"{what} not found", f"no {what} with id {identifier!r} in this organization")


def _body(status: int, kind: str, title: str, detail: str, instance: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }


def problem_response(
    status: int, kind: str, title: str, detail: str, instance: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = _body(status, kind, title, detail, instance, **extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


_UNION_TAGS = {"field", "all", "any", "filter", "score", "tier", "route", "action", "crm_update", "webhook_notify"}


def json_path(data: Any, loc: list[Any]) -> str:
    """The JSON path of an error, walking the submitted data so union tags in pydantic's `loc`
    (which name the branch, not a key) are left out."""
    path, current = "$", data
    for part in loc:
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            path, current = f"{path}[{part}]", current[part]
        elif isinstance(current, dict) and part in current:
            path, current = f"{path}.{part}", current[part]
        elif not (isinstance(current, dict) and part in _UNION_TAGS):
            path, current = f"{path}.{part}", None
    return path


def validation_errors(data: Any, errors: Sequence[Mapping[str, Any]], batch: bool = False) -> list[dict[str, Any]]:
    """Flattens pydantic errors into {index?, field, message}; `index` is the batch item's position."""
    result = []
    for error in errors:
        loc = list(error.get("loc", ()))
        item: dict[str, Any] = {}
        if batch and loc and isinstance(loc[0], int):
            item["index"] = loc[0]
        item["field"] = json_path(data, loc)
        item["message"] = error.get("msg", "invalid")
        result.append(item)
    return result


def invalid(errors: list[dict[str, Any]], detail: str = "the request body is invalid") -> Problem:
    return Problem(422, "validation", "Validation failed", detail, errors=errors)


def _problem_media_type(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are declared with the ProblemDetail model, which FastAPI files under the
    route's media type; they are sent as `application/problem+json`, so the document says that."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if media.get("schema", {}).get("$ref", "").endswith("/ProblemDetail"):
                        response["content"] = {MEDIA_TYPE: media}
                        break
    return schema


def _unreadable_body(schema: dict[str, Any]) -> dict[str, Any]:
    """Answers every operation that takes a body may get before any route code runs: 400 from
    FastAPI when a JSON body cannot be decoded (it is not UTF-8, say), 413 when it is over the
    route's limit (`api/request_limits.py`)."""
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
    answers = {
        "400": {"description": "The body could not be read (for example, it is not UTF-8)", "content": content},
        "413": {"description": "The body is over this route's limit", "content": content},
    }
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if "requestBody" in operation:
                for status, answer in answers.items():
                    operation.get("responses", {}).setdefault(status, answer)
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _unreadable_body(
                _problem_media_type(
                    get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class UnexpectedErrors:
    """Turns an error no handler knew into a 500 problem, logged once, on a connection that stays
    open. (A handler for `Exception` runs in Starlette's outermost middleware, which sends the answer
    and then raises again: the server logged the error a second time and dropped the keep-alive
    connection, so the client's next request on it failed.)"""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, tracked)
        except Exception:
            if started:
                raise
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            detail = "the error was logged; retrying may help"
            await problem_response(500, "internal", "Internal error", detail, scope["path"])(scope, receive, send)


_HTTP_KINDS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
}
_HTTP_TITLES = {401: "Not authenticated", 413: "Payload too large"}
"""Titles of the errors `api.request_limits` raises; Starlette's own say it in their detail."""


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.kind, exc.title, exc.detail, request.url.path, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for error in exc.errors():
            loc = list(error.get("loc", ()))
            where = loc[0] if loc else "body"
            errors.append(
                {
                    "in": where,
                    "field": ".".join(str(p) for p in loc[1:]) or None,
                    "message": error.get("msg", "invalid"),
                }
            )
        return problem_response(
            422, "validation", "Validation failed", "the request is invalid", request.url.path, errors=errors
        )

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> JSONResponse:
        """PostgreSQL refuses some values the request models let through (text with a NUL
        character, a date past year 9999); the transaction rolled back, and the request is invalid."""
        log.info("value refused by PostgreSQL on %s %s: %s", request.method, request.url.path, exc.orig)
        detail = "a value is not allowed here (text with a NUL character, or a date outside years 1-9999)"
        return problem_response(
            422, "validation", "Validation failed", detail, request.url.path, errors=[{"message": detail}]
        )

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        """Redis (the event-id dedup window, login throttling, the delivery schedule) or PostgreSQL
        (every authenticated request) down or unreachable, or every PostgreSQL connection of the
        process taken for longer than DRIPPULSE_DATABASE_POOL_TIMEOUT_S: a dependency is
        unavailable, which is a 503 to retry, not an internal error."""
        log.warning("a dependency is unavailable on %s %s: %s", request.method, request.url.path, exc)
        detail = "a dependency is unavailable; retry after Retry-After seconds"
        return problem_response(
            503, "unavailable", "Service unavailable", detail, request.url.path, {"Retry-After": RETRY_AFTER}
        )

    for unavailable in (RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(unavailable, _unavailable)

    app.add_middleware(UnexpectedErrors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        problem: Problem | None = getattr(exc, "problem", None)
        if problem is not None:
            return await _problem(request, problem)
        kind = _HTTP_KINDS.get(exc.status_code, "http-error")
        title = _HTTP_TITLES.get(exc.status_code, str(exc.detail))
        return problem_response(
            exc.status_code, kind, title, str(exc.detail), request.url.path, getattr(exc, "headers", None)
        )
