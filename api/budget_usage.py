"""What an agent used against its budget, and the check the API makes before each invocation.

The last minute's invocations are counted in Redis at invocation time, one hash per (org, workflow)
with a field per second, so the check is one round trip and current (ClickHouse sees an execution
only after the pipeline evaluated it). The window is the current second and the 59 before it. The
day's cost comes from ClickHouse: the units of the executions whose events occurred since 00:00 UTC,
at the org's unit prices, read at most every COST_CACHE_S seconds per agent (`TodaysCost`). Check
and count are two steps, so invocations that arrive at the same moment may all pass the check: a
burst can overshoot the rate by the number of concurrent callers.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from fastapi.concurrency import run_in_threadpool

from api.control_plane import unit_prices
from api.control_plane.database import Database
from api.metrics_reader import MetricsReader
from processors.agent_templates import Budget
from processors.budgets import Overrun, Usage, over_budget
from processors.costs import cost
from streams.clock import now_ms as clock_ms
from streams.state import state_keys

WINDOW_S = 60
DAY_MS = 86_400_000
COST_CACHE_S = 5.0
"""How long a day's cost, once read, is reused by the budget check."""
Clock = Callable[[], float]
CostReader = Callable[[str, str, int], Awaitable[float]]

_RECORD = """
local second = tonumber(ARGV[1])
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if tonumber(field) <= second - tonumber(ARGV[2]) then redis.call('HDEL', KEYS[1], field) end
end
"""
"""Counts one invocation in its second and drops the seconds that left the window (so the hash
holds at most WINDOW_S fields)."""


async def record_invocation(client: aioredis.Redis, org_id: str, workflow_id: str, at_ms: int | None = None) -> None:
    """Counts an accepted invocation of the workflow (an agent's backing workflow)."""
    second = (clock_ms() if at_ms is None else at_ms) // 1000
    await client.eval(_RECORD, 1, state_keys.invocations(org_id, workflow_id), second, WINDOW_S)


async def invocations_last_minute(
    client: aioredis.Redis, org_id: str, workflow_id: str, at_ms: int | None = None
) -> int:
    second = (clock_ms() if at_ms is None else at_ms) // 1000
    counts = await client.hgetall(state_keys.invocations(org_id, workflow_id))
    return sum(int(n) for field, n in counts.items() if second - WINDOW_S < int(field) <= second)


async def cost_today(
    database: Database, metrics: MetricsReader, org_id: str, workflow_id: str, at_ms: int | None = None
) -> float:
    now = clock_ms() if at_ms is None else at_ms
    async with database.transaction() as session:
        prices = await unit_prices.get(session, org_id)
    units = await run_in_threadpool(metrics.units, org_id, workflow_id, now - now % DAY_MS, now + 1)
    return cost(units, prices)


class TodaysCost:
    """Today's cost per (org, workflow), each reused for `ttl_s` seconds: a budget is checked before
    every invocation, and asking PostgreSQL and ClickHouse each time would cost more than the call.
    The day's cost lags anyway (an execution counts once ClickHouse has it), so a few seconds more
    change little. One per API process (`app.state`); entries are per UTC day, so a new day starts
    from ClickHouse."""

    def __init__(self, read: CostReader, ttl_s: float = COST_CACHE_S, clock: Clock = time.monotonic) -> None:
        """`read(org_id, workflow_id, at_ms)`: the day's cost as ClickHouse has it (`cost_today`)."""
        self._read = read
        self._ttl_s = ttl_s
        self._clock = clock
        self._known: dict[tuple[str, str, int], tuple[float, float]] = {}
        """(org, workflow, day) -> (until, cost)."""

    async def get(self, org_id: str, workflow_id: str, at_ms: int) -> float:
        key = (org_id, workflow_id, at_ms // DAY_MS)
        now = self._clock()
        known = self._known.get(key)
        if known is not None and known[0] > now:
            return known[1]
        spent = await self._read(org_id, workflow_id, at_ms)
        self._known = {k: v for k, v in self._known.items() if v[0] > now}
        self._known[key] = (now + self._ttl_s, spent)
        return spent


async def check_budget(
    client: aioredis.Redis,
    costs: TodaysCost,
    org_id: str,
    workflow_id: str,
    budget: Budget,
    at_ms: int | None = None,
) -> Overrun | None:
    """Which limit one more invocation would exceed, or None; reads only what the budget limits."""
    now = clock_ms() if at_ms is None else at_ms
    rate, spent = 0, 0.0
    if budget.executions_per_minute is not None:
        rate = await invocations_last_minute(client, org_id, workflow_id, now)
    if budget.cost_per_day is not None:
        spent = await costs.get(org_id, workflow_id, now)
    return over_budget(budget, Usage(executions_last_minute=rate, cost_today=spent))
