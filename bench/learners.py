"""Which online learner scores leads: DripPulse's (processors/learned_model.py) against river's
LogisticRegression, on the same synthetic leads and outcomes (drippulse/synthetic.py), features
(processors/lead_features.py) and time split. Reports updates per second (feature extraction
included, one core, no I/O) and the AUC on the later part after training on the earlier part.

river is not a dependency of DripPulse; to run the comparison: `pip install river`, then
`python -m bench.learners`. Without river only DripPulse's learner is measured. The figures are in
docs/design-notes.md, "The learned lead score".
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from drippulse.synthetic import conversion_probability, lead_event
from processors.lead_features import feature_names
from processors.learned_model import LearnedModel, probability
from processors.model_metrics import auc

Learner = tuple[Callable[[dict[str, Any], bool], object], Callable[[dict[str, Any]], float]]
"""(learn from a lead and its outcome, the probability of a lead)."""


def examples(count: int, seed: int, informative: bool = True) -> list[tuple[dict[str, Any], bool]]:
    """Leads in time order with outcomes drawn from the synthetic truth, or at random (30 %)."""
    rng = random.Random(seed)
    found = []
    for n in range(count):
        lead = lead_event(rng, "org-bench", n, occurred_at_ms=1_700_000_000_000 + n)["lead"]
        chance = conversion_probability(lead) if informative else 0.3
        found.append((lead, rng.random() < chance))
    return found


def drippulse_learner() -> Learner:
    model = LearnedModel()
    return model.learn, lambda lead: probability(model, lead)


def river_learners() -> dict[str, Learner]:
    try:
        from river import compose, linear_model, optim, preprocessing
    except ImportError:
        return {}

    def one_hot(lead: dict[str, Any]) -> dict[str, float]:
        return dict.fromkeys(feature_names(lead), 1.0)

    def wrap(model: Any) -> Learner:
        return (
            lambda lead, converted: model.learn_one(one_hot(lead), converted),
            lambda lead: float(model.predict_proba_one(one_hot(lead)).get(True, 0.0)),
        )

    return {
        "river LogisticRegression (SGD 0.01)": wrap(linear_model.LogisticRegression()),
        "river StandardScaler | LogisticRegression": wrap(
            compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
        ),
        "river FeatureHasher | LogisticRegression (AdaGrad)": wrap(
            compose.Pipeline(
                preprocessing.FeatureHasher(n_features=1 << 18, seed=1),
                linear_model.LogisticRegression(optimizer=optim.AdaGrad(0.3)),
            )
        ),
    }


def measure(learner: Learner, data: list[tuple[dict[str, Any], bool]], train_share: float = 0.7) -> dict[str, float]:
    learn, predict = learner
    split = int(len(data) * train_share)
    started = time.perf_counter()
    for lead, converted in data[:split]:
        learn(lead, converted)
    rate = split / (time.perf_counter() - started)
    later = data[split:]
    score = auc([predict(lead) for lead, _ in later], [int(converted) for _, converted in later])
    return {"updates_per_s": rate, "auc": score or 0.0}


def main() -> None:
    informative, independent = examples(30_000, seed=7), examples(30_000, seed=8, informative=False)
    learners: dict[str, Callable[[], Learner]] = {"DripPulse AdaGrad logistic (pure Python)": drippulse_learner}
    learners.update({name: (lambda made=made: made) for name, made in river_learners().items()})
    truth_auc = measure((lambda *_: None, conversion_probability), informative)["auc"]
    print(f"{'learner':<52} {'updates/s':>10} {'AUC':>6} {'AUC, independent outcomes':>26}")
    print(f"{'(the true probabilities)':<52} {'':>10} {truth_auc:>6.3f}")
    for name, make in learners.items():
        first = measure(make(), informative)
        second = measure(make() if name.startswith("DripPulse") else river_learners()[name], independent)
        print(f"{name:<52} {first['updates_per_s']:>10,.0f} {first['auc']:>6.3f} {second['auc']:>26.3f}")


if __name__ == "__main__":
    main()
