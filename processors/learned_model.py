"""The learned lead score: logistic regression over hashed binary features, trained online.

Each outcome (a lead converted, or was disqualified) is one example: the lead's features as they
were before the outcome, and the label. `learn` takes one AdaGrad step (a learning rate per feature
that shrinks as the feature is seen, so rare features still move and common ones settle) with a
little L2 shrinkage; `probability` is the model's estimate that a lead converts. Why this and not a
library's learner, measured: docs/design-notes.md, "The learned lead score".

A model is plain data (`as_json` / `from_json` round-trip it exactly), so a restart resumes the
very same model from PostgreSQL, and the qualifier reads only `Weights`, the part a prediction
needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from processors.lead_features import buckets, features
from processors.model_metrics import auc, log_loss_of

LEARNING_RATE = 0.3
L2 = 1e-5
EPSILON = 1e-6
RECENT_WINDOW = 1000
"""How many of the latest (prediction, outcome) pairs the progressive AUC is computed over."""
_BIAS = -1
"""The bias's key among the AdaGrad accumulators."""
_MAX_Z = 35.0


def sigmoid(z: float) -> float:
    z = max(-_MAX_Z, min(_MAX_Z, z))
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class Weights:
    """What a prediction needs: the bias and a weight per feature bucket."""

    version: int
    trained_on: int
    bias: float
    weights: Mapping[int, float]

    def probability(self, lead: Mapping[str, Any]) -> float:
        return probability(self, lead)

    def as_json(self) -> dict[str, Any]:
        return {"bias": self.bias, "weights": {str(k): w for k, w in self.weights.items()}}

    @classmethod
    def from_json(cls, version: int, trained_on: int, raw: Mapping[str, Any]) -> Weights:
        return cls(version, trained_on, float(raw["bias"]), {int(k): float(w) for k, w in raw["weights"].items()})


def probability(model: Weights | LearnedModel, lead: Mapping[str, Any]) -> float:
    """The probability that the lead converts, by the model's current weights."""
    weights = model.weights
    z = model.bias
    for index in buckets(lead):
        z += weights.get(index, 0.0)
    return sigmoid(z)


def model_context(model: Weights, lead: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a workflow step reads as `model.*` for an event's lead (processors.model.MODEL_FIELDS).
    The lead as the event carries it, as every rule reads it; no lead (a CRM event), no probability."""
    return {
        "probability": probability(model, lead) if lead is not None else None,
        "version": model.version,
        "trained_on": model.trained_on,
    }


@dataclass
class LearnedModel:
    """One organization's model while it trains, with the progressive evaluation: every example is
    predicted before it is learned, so `metrics` says how the model did on leads it had not seen."""

    bias: float = 0.0
    weights: dict[int, float] = field(default_factory=dict)
    squares: dict[int, float] = field(default_factory=dict)
    """Per bucket (and `_BIAS`): the sum of squared gradients, AdaGrad's state."""
    names: dict[int, str] = field(default_factory=dict)
    """The first feature name seen in each bucket, to explain a weight."""
    trained_on: int = 0
    positives: int = 0
    loss_sum: float = 0.0
    recent: list[tuple[float, int]] = field(default_factory=list)

    def learn(self, lead: Mapping[str, Any], converted: bool) -> float:
        """One example; returns the probability the model gave it before learning from it."""
        found = features(lead)
        weights, squares = self.weights, self.squares
        z = self.bias
        for index, _ in found:
            z += weights.get(index, 0.0)
        predicted = sigmoid(z)
        label = 1 if converted else 0
        gradient = predicted - label
        bias_square = squares.get(_BIAS, 0.0) + gradient * gradient
        squares[_BIAS] = bias_square
        self.bias -= LEARNING_RATE * gradient / (math.sqrt(bias_square) + EPSILON)
        for index, name in found:
            weight = weights.get(index, 0.0)
            step = gradient + L2 * weight
            square = squares.get(index, 0.0) + step * step
            squares[index] = square
            weights[index] = weight - LEARNING_RATE * step / (math.sqrt(square) + EPSILON)
            if index not in self.names:
                self.names[index] = name
        self._record(predicted, label)
        return predicted

    def _record(self, predicted: float, label: int) -> None:
        self.trained_on += 1
        self.positives += label
        self.loss_sum += log_loss_of(predicted, label)
        self.recent.append((predicted, label))
        if len(self.recent) > RECENT_WINDOW:
            del self.recent[: len(self.recent) - RECENT_WINDOW]

    def frozen(self, version: int) -> Weights:
        return Weights(version, self.trained_on, self.bias, dict(self.weights))

    def metrics(self) -> dict[str, Any]:
        """Progressive (predict, then learn) figures: every example counted once, as unseen."""
        return {
            "examples": self.trained_on,
            "conversion_rate": self.positives / self.trained_on if self.trained_on else None,
            "log_loss": self.loss_sum / self.trained_on if self.trained_on else None,
            "recent_auc": auc([p for p, _ in self.recent], [y for _, y in self.recent]),
            "recent_window": len(self.recent),
        }

    def top_weights(self, limit: int) -> list[tuple[str, float]]:
        """The features that move the probability most, either way: (name, weight)."""
        ranked = sorted(self.weights.items(), key=lambda item: (-abs(item[1]), item[0]))[:limit]
        return [(self.names.get(index, f"#{index}"), weight) for index, weight in ranked]

    def state_json(self) -> dict[str, Any]:
        """What training needs beyond the weights: AdaGrad's sums, the names, the evaluation."""
        return {
            "squares": {str(k): v for k, v in self.squares.items()},
            "names": {str(k): v for k, v in self.names.items()},
            "positives": self.positives,
            "loss_sum": self.loss_sum,
            "recent": [[p, y] for p, y in self.recent],
        }

    @classmethod
    def from_json(cls, trained_on: int, weights: Mapping[str, Any], state: Mapping[str, Any]) -> LearnedModel:
        return cls(
            bias=float(weights["bias"]),
            weights={int(k): float(w) for k, w in weights["weights"].items()},
            squares={int(k): float(v) for k, v in state["squares"].items()},
            names={int(k): str(v) for k, v in state["names"].items()},
            trained_on=trained_on,
            positives=int(state["positives"]),
            loss_sum=float(state["loss_sum"]),
            recent=[(float(p), int(y)) for p, y in state["recent"]],
        )

    def weights_json(self) -> dict[str, Any]:
        return {"bias": self.bias, "weights": {str(k): w for k, w in self.weights.items()}}
