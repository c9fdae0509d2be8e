"""Provider calls made on an execution's behalf, recorded by whoever made them (the API, for the
synchronous calls), so that metrics and budgets charge them at the org's `per_provider_call` price."""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool

from streams.clock import now_ms
from streams.sinks.clickhouse import ClickHouse


async def record_provider_calls(
    clickhouse: ClickHouse,
    org_id: str,
    workflow_id: str,
    n: int,
    call_id: str,
    execution_id: str = "",
    at_ms: int | None = None,
) -> None:
    """Records `n` calls under `call_id`, unique per recording: recording the same id again (a
    retry) still counts them once. Calls answered by the built-in summary cost nothing and are not
    recorded; a call that failed and fell back to it was still made, and is."""
    if n <= 0:
        return
    row = {
        "org_id": org_id,
        "workflow_id": workflow_id,
        "call_id": call_id,
        "execution_id": execution_id,
        "calls": n,
        "at": (now_ms() if at_ms is None else at_ms) / 1000,
    }
    await run_in_threadpool(clickhouse.insert_rows, "provider_calls", [row])
