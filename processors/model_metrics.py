"""How well a probability ranks and is calibrated: AUC, log loss, and per-group rates."""

from __future__ import annotations

import math
from collections.abc import Iterable

_CLIP = 1e-15


def log_loss_of(predicted: float, label: int) -> float:
    p = min(max(predicted, _CLIP), 1 - _CLIP)
    return -math.log(p if label else 1 - p)


def log_loss(predictions: Iterable[float], labels: Iterable[int]) -> float | None:
    losses = [log_loss_of(p, y) for p, y in zip(predictions, labels, strict=True)]
    return sum(losses) / len(losses) if losses else None


def auc(scores: list[float], labels: list[int]) -> float | None:
    """The area under the ROC curve: the chance that a random converted lead scores above a random
    other one (ties count half). None without both kinds of outcome."""
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum = 0.0
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        average_rank = (start + end) / 2 + 1
        rank_sum += average_rank * sum(labels[order[i]] for i in range(start, end + 1))
        start = end + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
