"""The budget check's cache of today's cost: ClickHouse is asked once per agent per few seconds and
per UTC day, never once per invocation; and an over-budget refusal says which limit it passed."""

from __future__ import annotations

import asyncio

from api.agent_budgets import over_budget_problem
from api.budget_usage import DAY_MS, TodaysCost
from processors.budgets import Overrun

NOON_MS = 20_000 * DAY_MS + DAY_MS // 2


class Reads:
    """A cost reader that counts its calls; each read finds more spent than the last."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    async def __call__(self, org_id: str, workflow_id: str, at_ms: int) -> float:
        self.calls.append((org_id, workflow_id, at_ms))
        return float(len(self.calls))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_todays_cost_is_read_once_per_few_seconds_not_once_per_invocation() -> None:
    reads, clock = Reads(), Clock()
    costs = TodaysCost(reads, ttl_s=5, clock=clock)

    async def scenario() -> list[float]:
        seen = [await costs.get("org", "wf", NOON_MS + n) for n in range(50)]
        clock.now += 4.9
        seen.append(await costs.get("org", "wf", NOON_MS + 4_900))
        clock.now += 0.2
        seen.append(await costs.get("org", "wf", NOON_MS + 5_100))
        return seen

    seen = asyncio.run(scenario())
    assert seen == [1.0] * 51 + [2.0]
    assert len(reads.calls) == 2


def test_each_agent_and_each_utc_day_has_its_own_cost() -> None:
    reads = Reads()
    costs = TodaysCost(reads, ttl_s=5, clock=Clock())

    async def scenario() -> list[float]:
        return [
            await costs.get("org", "wf-1", NOON_MS),
            await costs.get("org", "wf-2", NOON_MS),
            await costs.get("other-org", "wf-1", NOON_MS),
            await costs.get("org", "wf-1", NOON_MS - DAY_MS // 2 + DAY_MS),
            await costs.get("org", "wf-1", NOON_MS),
        ]

    assert asyncio.run(scenario()) == [1.0, 2.0, 3.0, 4.0, 1.0]
    read = [call[:2] for call in reads.calls]
    assert read == [("org", "wf-1"), ("org", "wf-2"), ("other-org", "wf-1"), ("org", "wf-1")]


def test_a_rate_over_budget_answers_429_and_a_days_cost_409_both_agent_over_budget() -> None:
    rate = over_budget_problem(Overrun("executions_per_minute", "executions_per_minute: 5 in the last 60 s"))
    daily = over_budget_problem(Overrun("cost_per_day", "cost_per_day: 2 spent today (UTC)"))
    assert (rate.status, rate.kind, rate.extra["limit"]) == (429, "agent-over-budget", "executions_per_minute")
    assert (daily.status, daily.kind, daily.extra["limit"]) == (409, "agent-over-budget", "cost_per_day")
    assert rate.detail.startswith("executions_per_minute: 5") and daily.extra["paused_reason"] == "over_budget"
