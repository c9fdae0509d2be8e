"""The learned lead score on synthetic leads whose outcomes depend on known features
(drippulse/synthetic.py): what it learns, how it is judged, and that it is plain data."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drippulse.synthetic import conversion_probability, lead_event
from processors.backtest import LeadEvent, Outcome, backtest, examples
from processors.lead_features import feature_names
from processors.learned_model import LearnedModel, Weights, model_context, probability
from processors.model_metrics import auc

DRIVING_FIELDS = ("title", "lead_source", "employees", "attributes.utm_campaign", "email")
"""The fields the synthetic truth reads; country, industry and revenue do not matter to it."""


def history(count: int, seed: int, informative: bool = True) -> tuple[list[Outcome], dict[str, list[LeadEvent]]]:
    """`count` leads created a second apart, each with an outcome ten minutes later."""
    rng = random.Random(seed)
    outcomes, events = [], {}
    for n in range(count):
        created = lead_event(rng, "org-a", n, occurred_at_ms=1_700_000_000_000 + n * 1000)
        lead = created["lead"]
        chance = conversion_probability(lead) if informative else 0.3
        events[lead["lead_id"]] = [LeadEvent(created["occurred_at_ms"], "lead.created", lead)]
        outcomes.append(Outcome(created["occurred_at_ms"] + 600_000, f"o-{n}", lead["lead_id"], rng.random() < chance))
    return outcomes, events


def field_of(feature: str) -> str:
    return feature.split("=")[0].split("~")[0]


def test_the_model_ranks_the_features_conversion_depends_on_first() -> None:
    found, _ = examples(*history(20_000, seed=1), {})
    report = backtest(found, train_share=0.7)
    top = [weight["feature"] for weight in report["top_weights"]]
    assert {field_of(name) for name in top[:8]} <= set(DRIVING_FIELDS), top
    assert set(DRIVING_FIELDS) <= {field_of(name) for name in top}, top


def test_its_time_split_auc_is_at_least_0_75_where_outcomes_depend_on_the_lead() -> None:
    found, without = examples(*history(20_000, seed=2), {})
    report = backtest(found, train_share=0.7)
    assert without == 0 and report["train"] == 14_000 and report["test"] == 6_000
    assert report["learned"]["auc"] >= 0.75, report["learned"]


def test_its_auc_is_a_coin_toss_where_outcomes_do_not_depend_on_the_lead() -> None:
    found, _ = examples(*history(20_000, seed=3, informative=False), {})
    report = backtest(found, train_share=0.7)
    assert report["learned"]["auc"] == pytest.approx(0.5, abs=0.05), report["learned"]


def test_an_outcome_learns_from_the_lead_as_it_was_before_it_never_from_what_came_after() -> None:
    """The update after the outcome carries what only the outcome revealed; the example must not."""
    before = {"lead_id": "l-1", "title": "Analyst", "attributes": {}}
    after = {"lead_id": "l-1", "title": "Customer", "attributes": {"stage": "won"}}
    events = {"l-1": [LeadEvent(1_000, "lead.created", before), LeadEvent(3_000, "lead.updated", after)]}
    (example,), _ = examples([Outcome(2_000, "o-1", "l-1", True)], events, {})
    assert "title=analyst" in feature_names(example.lead)
    assert not any("won" in name or "customer" in name for name in feature_names(example.lead))


def test_an_outcome_without_any_earlier_description_of_its_lead_is_not_an_example() -> None:
    events = {"l-1": [LeadEvent(5_000, "lead.created", {"lead_id": "l-1", "title": "CTO"})]}
    found, without = examples([Outcome(2_000, "o-1", "l-1", True)], events, {})
    assert found == [] and without == 1


def test_features_never_include_who_the_lead_is() -> None:
    lead = lead_event(random.Random(4), "org-a", 7)["lead"]
    names = " ".join(feature_names(lead)).lower()
    for identifying in (lead["lead_id"], lead["first_name"], lead["last_name"], lead["company"]):
        assert identifying.lower() not in names


leads = st.fixed_dictionaries(
    {"lead_id": st.just("l")},
    optional={
        "title": st.sampled_from(["VP Sales", "CTO", "Intern", "Analyst", ""]),
        "country": st.sampled_from(["US", "DE", "FR"]),
        "employees": st.integers(0, 100_000),
        "annual_revenue": st.floats(allow_nan=True, allow_infinity=True),
        "email": st.sampled_from(["a@gmail.com", "b@acme.io", "nobody"]),
        "attributes": st.dictionaries(st.sampled_from(["plan", "utm", "seats"]), st.text(max_size=5), max_size=3),
    },
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(leads, st.booleans()), min_size=1, max_size=40), leads)
def test_a_stored_model_resumes_exactly_where_it_left_off(history: list[tuple[Any, bool]], probe: Any) -> None:
    """Through JSON, as PostgreSQL stores it: same predictions, and the same model after more learning."""
    half = len(history) // 2
    model = LearnedModel()
    for lead, converted in history[:half]:
        model.learn(lead, converted)
    stored = orjson.loads(orjson.dumps([model.trained_on, model.weights_json(), model.state_json()]))
    resumed = LearnedModel.from_json(*stored)
    assert resumed == model
    for lead, converted in history[half:]:
        model.learn(lead, converted)
        resumed.learn(lead, converted)
    assert resumed == model
    weights = Weights.from_json(3, model.trained_on, orjson.loads(orjson.dumps(model.weights_json())))
    assert probability(weights, probe) == probability(model, probe)
    assert model_context(weights, probe) == {
        "probability": probability(model, probe),
        "version": 3,
        "trained_on": len(history),
    }


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.2, 0.5, 0.7, 0.9]), st.integers(0, 1)), min_size=2, max_size=40))
def test_auc_is_the_chance_a_converted_lead_outranks_another(pairs: list[tuple[float, int]]) -> None:
    scores, labels = [s for s, _ in pairs], [y for _, y in pairs]
    positives = [s for s, y in pairs if y]
    negatives = [s for s, y in pairs if not y]
    if not positives or not negatives:
        assert auc(scores, labels) is None
        return
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    assert auc(scores, labels) == pytest.approx(wins / (len(positives) * len(negatives)))


_any_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=80), st.lists(st.integers(), max_size=2)
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["email", "title", "country", "industry", "lead_source", "employees", "annual_revenue"]),
        _any_value,
    ),
    st.one_of(_any_value, st.dictionaries(st.one_of(st.text(max_size=10), st.integers(0, 3)), _any_value, max_size=40)),
)
def test_any_lead_a_producer_sends_has_features_and_a_probability(lead: dict[str, Any], attributes: Any) -> None:
    """Whatever the types and sizes (the API takes attributes of any JSON scalar), scoring never
    raises, a lead keeps at most a bounded number of features, and the same lead hashes the same."""
    lead = {**lead, "attributes": attributes}
    names = feature_names(lead)
    assert len(names) == len(set(names)) <= 8 + 5 + 32 + 8
    model = LearnedModel()
    model.learn(lead, True)
    assert 0.0 < probability(model, lead) < 1.0
    assert feature_names(dict(lead)) == names
