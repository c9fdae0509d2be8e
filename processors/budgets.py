"""Whether an agent is over its budget: the one rule, given what it used, so the API (which pauses
the agent) and the tests read it alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from processors.agent_templates import Budget

Limit = Literal["executions_per_minute", "cost_per_day"]


@dataclass(frozen=True)
class Usage:
    executions_last_minute: int
    """Invocations in the 60 s before now, this one not included."""
    cost_today: float
    """Cost of the executions whose events occurred since 00:00 UTC, at the org's unit prices."""


@dataclass(frozen=True)
class Overrun:
    """Which limit one more invocation would pass, and why in words the agent shows as its reason
    for pausing. The limit decides the refusal: a rate answers 429, a day's cost 409."""

    limit: Limit
    reason: str


def over_budget(budget: Budget, usage: Usage) -> Overrun | None:
    """Which limit one more invocation would exceed, or None. A limit is reached when the usage
    already equals it: `executions_per_minute: 10` allows ten in any 60 s, and the eleventh is over;
    a day's cost that has reached `cost_per_day` allows nothing more that day."""
    rate = budget.executions_per_minute
    if rate is not None and usage.executions_last_minute >= rate:
        used = f"{usage.executions_last_minute} in the last 60 s"
        return Overrun("executions_per_minute", f"executions_per_minute: {used}, the budget allows {rate}")
    daily = budget.cost_per_day
    if daily is not None and usage.cost_today >= daily:
        spent = f"{usage.cost_today:.6g} spent today (UTC)"
        return Overrun("cost_per_day", f"cost_per_day: {spent}, the budget allows {daily:g}")
    return None
