"""A backtest of the learned lead score against the rules, over an organization's history.

Time-split: a fresh model learns from the earlier outcomes in the order they happened (exactly as the
trainer would have) and is judged on the later ones, which it never saw. Each outcome's example is
the lead as its describing events left it up to the outcome (processors/lead_snapshots.py merges
them the way the trainer does), so nothing known only afterwards leaks in.

The rules' side is the score and tier of the lead's latest execution up to the outcome. A score is
not a probability, so for log loss and calibration each score is given the conversion rate the
earlier part saw at that score (shrunk towards the overall rate where it saw few); its AUC is the
score's own ranking.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from processors.events import EventType
from processors.lead_snapshots import merged
from processors.learned_model import LearnedModel, probability
from processors.model_metrics import auc, log_loss

SMOOTHING = 10.0
"""How many examples' worth of the overall rate a score's own rate is shrunk towards."""
TOP_WEIGHTS = 10


@dataclass(frozen=True)
class Outcome:
    at_ms: int
    event_id: str
    lead_id: str
    converted: bool


@dataclass(frozen=True)
class LeadEvent:
    at_ms: int
    event_type: str
    lead: Mapping[str, Any]


@dataclass(frozen=True)
class RulesVerdict:
    at_ms: int
    score: int
    tier: str


@dataclass(frozen=True)
class Example:
    at_ms: int
    lead: Mapping[str, Any]
    converted: bool
    rules: RulesVerdict | None


def examples(
    outcomes: Sequence[Outcome],
    lead_events: Mapping[str, Sequence[LeadEvent]],
    verdicts: Mapping[str, Sequence[RulesVerdict]],
) -> tuple[list[Example], int]:
    """(the examples in time order, how many outcomes had no earlier describing event). Events and
    verdicts per lead must be in time order; one at the outcome's very millisecond counts as before."""
    found, without = [], 0
    for outcome in sorted(outcomes, key=lambda o: (o.at_ms, o.event_id)):
        fields: dict[str, Any] | None = None
        for event in lead_events.get(outcome.lead_id, ()):
            if event.at_ms > outcome.at_ms:
                break
            fields = merged(fields, event.lead, event.event_type == EventType.LEAD_CREATED.value)
        if fields is None:
            without += 1
            continue
        found.append(
            Example(outcome.at_ms, fields, outcome.converted, _latest(verdicts.get(outcome.lead_id, ()), outcome.at_ms))
        )
    return found, without


def _latest(verdicts: Sequence[RulesVerdict], at_ms: int) -> RulesVerdict | None:
    index = bisect.bisect_right([v.at_ms for v in verdicts], at_ms)
    return verdicts[index - 1] if index else None


def score_rates(pairs: Sequence[tuple[int, int]]) -> tuple[dict[int, float], float]:
    """(per score, its smoothed conversion rate; the overall rate) from (score, converted) pairs."""
    overall = sum(label for _, label in pairs) / len(pairs) if pairs else 0.5
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for score, label in pairs:
        counts[score][0] += label
        counts[score][1] += 1
    return {s: (k + SMOOTHING * overall) / (n + SMOOTHING) for s, (k, n) in counts.items()}, overall


def backtest(found: Sequence[Example], train_share: float) -> dict[str, Any]:
    split = int(len(found) * train_share)
    earlier, later = found[:split], found[split:]
    model = LearnedModel()
    for example in earlier:
        model.learn(example.lead, example.converted)
    labels = [int(e.converted) for e in later]
    learned = [probability(model, e.lead) for e in later]
    rates, overall = score_rates([(e.rules.score, int(e.converted)) for e in earlier if e.rules is not None])
    judged = [(i, e.rules) for i, e in enumerate(later) if e.rules is not None]
    rules_labels = [labels[i] for i, _ in judged]
    rules_probability = {i: rates.get(verdict.score, overall) for i, verdict in judged}
    tiers: dict[str, list[int]] = defaultdict(list)
    for i, example in enumerate(later):
        tiers[example.rules.tier if example.rules is not None else ""].append(i)
    return {
        "outcomes": len(found),
        "train": len(earlier),
        "test": len(later),
        "split_at_ms": later[0].at_ms if later else None,
        "test_conversion_rate": sum(labels) / len(labels) if labels else None,
        "without_rules_score": len(later) - len(judged),
        "learned": {"auc": auc(learned, labels), "log_loss": log_loss(learned, labels)},
        "rules": {
            "auc": auc([float(v.score) for _, v in judged], rules_labels),
            "log_loss": log_loss(list(rules_probability.values()), rules_labels),
        },
        "per_tier": [
            {
                "tier": tier,
                "leads": len(members),
                "conversion_rate": sum(labels[i] for i in members) / len(members),
                "learned_probability": sum(learned[i] for i in members) / len(members),
                "rules_probability": _mean([rules_probability[i] for i in members if i in rules_probability]),
            }
            for tier, members in sorted(tiers.items())
        ],
        "top_weights": [{"feature": name, "weight": weight} for name, weight in model.top_weights(TOP_WEIGHTS)],
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
