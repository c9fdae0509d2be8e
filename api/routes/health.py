"""Liveness and dependency health, for load balancers and `drippulse dev status`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, Any] = {}
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc}"
    checks["kafka"] = "ok" if await run_in_threadpool(state.publisher.healthy) else "error: broker unreachable"
    try:
        await run_in_threadpool(state.clickhouse.query, "SELECT 1")
        checks["clickhouse"] = "ok"
    except Exception as exc:
        checks["clickhouse"] = f"error: {exc}"
    stopped = [sink.worker.name for sink in state.sinks if not sink.alive]
    if state.sinks:
        checks["sinks"] = f"error: stopped: {', '.join(stopped)}; see the API log" if stopped else "ok"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "degraded", "checks": checks}, status_code=200 if healthy else 503
    )
