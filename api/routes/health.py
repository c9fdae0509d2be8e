"""Liveness and dependency health, for load balancers and `drippulse dev status`. Not under /api/v1
and unauthenticated, so it names what is down but never an error's text (that goes to the log)."""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.deps import PublicRoute

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
Check = Literal["ok", "error"]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, Check] = Field(description="postgres, redis, kafka, clickhouse and, embedded, the sinks.")


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Something is down"}})
async def health(request: Request, _: PublicRoute) -> JSONResponse:
    state = request.app.state
    checks: dict[str, Check] = {}
    try:
        async with state.database.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["postgres"] = "ok"
    except Exception:
        log.exception("health: postgres")
        checks["postgres"] = "error"
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception:
        log.exception("health: redis")
        checks["redis"] = "error"
    checks["kafka"] = "ok" if await run_in_threadpool(state.publisher.healthy) else "error"
    try:
        await run_in_threadpool(state.clickhouse.query, "SELECT 1")
        checks["clickhouse"] = "ok"
    except Exception:
        log.exception("health: clickhouse")
        checks["clickhouse"] = "error"
    if state.sinks:
        down = [sink.name for sink in state.sinks if sink.failing]
        if down:
            log.error("health: sinks stopped or failing: %s", ", ".join(down))
        checks["sinks"] = "error" if down else "ok"
    healthy = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if healthy else "degraded", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
