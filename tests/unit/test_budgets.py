"""The budget rule: over exactly when one more invocation would pass a limit, and saying which."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.agent_templates import Budget
from processors.budgets import Usage, over_budget
from processors.costs import UnitPrices, Units, cost

rates = st.none() | st.integers(min_value=1, max_value=1_000_000)
daily = st.none() | st.floats(min_value=0.01, max_value=1e6, allow_nan=False)
usage = st.builds(
    Usage,
    executions_last_minute=st.integers(min_value=0, max_value=2_000_000),
    cost_today=st.floats(min_value=0, max_value=2e6, allow_nan=False),
)


def test_the_invocation_that_reaches_the_rate_passes_and_the_next_is_over() -> None:
    budget = Budget(executions_per_minute=10)
    assert over_budget(budget, Usage(executions_last_minute=9, cost_today=0)) is None
    overrun = over_budget(budget, Usage(executions_last_minute=10, cost_today=0))
    assert overrun is not None and overrun.limit == "executions_per_minute"
    assert overrun.reason.startswith("executions_per_minute") and "10" in overrun.reason


def test_a_day_whose_cost_reached_the_budget_allows_nothing_more() -> None:
    budget = Budget(cost_per_day=2.5)
    assert over_budget(budget, Usage(executions_last_minute=0, cost_today=2.4999)) is None
    overrun = over_budget(budget, Usage(executions_last_minute=0, cost_today=2.5))
    assert overrun is not None and overrun.limit == "cost_per_day" and overrun.reason.startswith("cost_per_day")


def test_a_budget_without_limits_is_never_over() -> None:
    assert over_budget(Budget(), Usage(executions_last_minute=10**9, cost_today=1e12)) is None


@given(rates, daily, usage)
def test_over_exactly_when_a_set_limit_is_reached(rate: int | None, per_day: float | None, used: Usage) -> None:
    budget = Budget(executions_per_minute=rate, cost_per_day=per_day)
    rate_hit = rate is not None and used.executions_last_minute >= rate
    cost_hit = per_day is not None and used.cost_today >= per_day
    overrun = over_budget(budget, used)
    assert (overrun is not None) == (rate_hit or cost_hit)
    if overrun is not None:
        limit = "executions_per_minute" if rate_hit else "cost_per_day"
        assert overrun.limit == overrun.reason.split(":")[0] == limit


@given(
    st.builds(
        Units,
        executions=st.integers(0, 10**6),
        decisions=st.integers(0, 10**6),
        actions=st.integers(0, 10**6),
        provider_calls=st.integers(0, 10**6),
    )
)
def test_cost_is_each_unit_at_its_price(units: Units) -> None:
    prices = UnitPrices(per_execution=1, per_decision=10, per_action=100, per_provider_call=1000)
    assert cost(units, prices) == (
        units.executions + 10 * units.decisions + 100 * units.actions + 1000 * units.provider_calls
    )
    assert cost(units, UnitPrices(per_execution=0, per_decision=0, per_action=0, per_provider_call=0)) == 0
