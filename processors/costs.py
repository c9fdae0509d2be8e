"""What an execution costs: the units it can be measured to use, at the unit prices its org set.

Only what is measured is charged. Per execution DripPulse knows that it ran, how many deciding steps
it evaluated (its `decisions` tokens: filters, tiers, routes, branches, approvals, waits), how many
actions it emitted, and, where the API records them, how many calls it made to a summary provider.
How long an execution computed is not measured on the path through Kafka (the qualifier evaluates
a batch at a time, and `evaluated_at - event_occurred_at` is mostly time in the queue), so compute
time is not a unit: a price for it would invent a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class UnitPrices(BaseModel):
    """An org's prices per unit, in its own cost unit (a currency or credits; DripPulse does not
    convert). The defaults are a starting point, not anyone's real price: an Admin sets them."""

    model_config = ConfigDict(extra="forbid")

    per_execution: float = Field(default=0.001, ge=0, le=1_000_000, description="Each execution.")
    per_decision: float = Field(
        default=0.0001, ge=0, le=1_000_000, description="Each deciding step evaluated (a `decisions` token)."
    )
    per_action: float = Field(default=0.0005, ge=0, le=1_000_000, description="Each action emitted.")
    per_provider_call: float = Field(
        default=0.01, ge=0, le=1_000_000, description="Each call to an external summary provider."
    )


@dataclass(frozen=True)
class Units:
    """What a set of executions used."""

    executions: int = 0
    decisions: int = 0
    actions: int = 0
    provider_calls: int = 0


def cost(units: Units, prices: UnitPrices) -> float:
    return (
        units.executions * prices.per_execution
        + units.decisions * prices.per_decision
        + units.actions * prices.per_action
        + units.provider_calls * prices.per_provider_call
    )
