"""The learned model through the product: workflows score with it, the API shows it, and the
backtest judges it against the rules over the org's real history in ClickHouse."""

from __future__ import annotations

import random
import time
from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from drippulse.synthetic import conversion_probability, lead_event, outcome_event
from processors.learned_model import LearnedModel
from processors.templates import LEAD_QUALIFICATION
from tests import control_plane
from tests.integration.helpers import activate_workflow, post_events, stored_executions, wait_for_executions
from tests.stack import ApiServer, WorkerProcess, wait_until

pytestmark = pytest.mark.stack

PREDICTIVE = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [
        {
            "type": "score",
            "rules": [
                {"id": "likely", "when": {"field": "model.probability", "op": "gte", "value": 0.5}, "points": 50},
                {"id": "vp", "when": {"field": "lead.title", "op": "contains", "value": "vp"}, "points": 10},
            ],
        },
        {
            "type": "tier",
            "thresholds": [
                {"tier": "A", "min_score": 50, "min_probability": 0.5},
                {"tier": "B", "min_score": 0, "min_probability": 0},
            ],
            "default_tier": "C",
        },
    ],
}


def referrals_convert() -> LearnedModel:
    """A model that learned that referrals convert and ads do not."""
    model = LearnedModel()
    for _ in range(200):
        model.learn({"lead_source": "referral"}, True)
        model.learn({"lead_source": "ads"}, False)
    return model


def lead(lead_id: str, source: str) -> dict[str, Any]:
    return {"event_type": "lead.created", "lead": {"lead_id": lead_id, "title": "VP Sales", "lead_source": source}}


def test_a_workflow_scores_and_tiers_leads_with_the_orgs_current_model(
    org_factory: Any, settings: Settings, api_server: ApiServer, qualifier: WorkerProcess
) -> None:
    org = org_factory("predictive")
    control_plane.checkpoint_model(settings, org["org_id"], referrals_convert())
    workflow = activate_workflow(org["client"], "predictive", PREDICTIVE)
    response = org["client"].post("/api/v1/events", json=[lead("l-ref", "referral"), lead("l-ads", "ads")])
    assert response.status_code == 202, response.text
    wait_for_executions(api_server, org["org_id"], 2)
    scored = {row["lead_id"]: (row["score"], row["tier"]) for row in stored_executions(api_server, org["org_id"])}
    assert scored == {"l-ref": (60, "A"), "l-ads": (10, "B")}
    tested = org["client"].post(f"/api/v1/workflows/{workflow['id']}/test", json={"events": [lead("l-t", "referral")]})
    (result,) = tested.json()["results"]
    assert (result["execution"]["score"], result["execution"]["tier"]) == (60, "A"), "the test endpoint scores alike"
    assert result["trace"][1]["probability"] > 0.5


def test_the_api_shows_the_orgs_model_versions_and_the_weights_that_matter_most(
    org_factory: Any, settings: Settings
) -> None:
    org, other = org_factory("models"), org_factory("no models")
    model = referrals_convert()
    for version in (1, 2, 3):
        control_plane.checkpoint_model(settings, org["org_id"], model, version)
    client: httpx.Client = org["client"]
    first = client.get("/api/v1/models", params={"limit": 2}).json()
    assert [v["version"] for v in first["items"]] == [3, 2]
    rest = client.get("/api/v1/models", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [v["version"] for v in rest["items"]] == [1] and rest["next_cursor"] is None
    current = client.get("/api/v1/models/current", params={"top": 2}).json()
    assert current["version"] == 3 and current["trained_on"] == 400
    weights = {w["feature"]: w["weight"] for w in current["top_weights"]}
    assert weights.keys() == {"lead_source=ads", "lead_source=referral"}
    assert weights["lead_source=ads"] < 0 < weights["lead_source=referral"]
    assert [abs(w["weight"]) for w in current["top_weights"]] == sorted(map(abs, weights.values()), reverse=True)
    assert current["metrics"]["examples"] == 400 and current["metrics"]["recent_auc"] > 0.9
    missing = other["client"].get("/api/v1/models/current")
    assert missing.status_code == 404 and missing.json()["type"].endswith("/no-model")
    assert other["client"].get("/api/v1/models").json()["items"] == []


def test_the_backtest_judges_the_learned_model_against_the_rules_on_later_outcomes(
    org_factory: Any, api_server: ApiServer, qualifier: WorkerProcess
) -> None:
    """Synthetic leads whose outcomes follow features the Lead Qualification rules only partly see."""
    org = org_factory("backtest")
    workflow = activate_workflow(org["client"], "lq", LEAD_QUALIFICATION)
    rng, records, start_ms = random.Random(21), [], int(time.time() * 1000) - 86_400_000
    leads = [lead_event(rng, org["org_id"], n, occurred_at_ms=start_ms + n * 1000) for n in range(2000)]
    for created in leads:
        converted = rng.random() < conversion_probability(created["lead"])
        records.append(outcome_event(created, converted, created["occurred_at_ms"] + 3_600_000))
    post_events(org["client"], leads + records)
    wait_for_executions(api_server, org["org_id"], 2000)

    def backtest() -> dict[str, Any] | None:
        """None until every outcome and its lead reached the history (ClickHouse keeps 90 days)."""
        report: dict[str, Any] = org["client"].post("/api/v1/models/backtest", json={}).json()
        return report if report["outcomes"] == 2000 else None

    report = wait_until(backtest, 60, "every outcome in ClickHouse")
    assert (report["train"], report["test"], report["without_features"]) == (1400, 600, 0)
    assert report["rules_workflow_id"] == workflow["id"] and report["without_rules_score"] == 0
    assert report["learned"]["auc"] >= 0.75 > report["rules"]["auc"]
    assert report["learned"]["log_loss"] < report["rules"]["log_loss"]
    assert {tier["tier"] for tier in report["per_tier"]} >= {"A", "B", "C"}
    assert sum(tier["leads"] for tier in report["per_tier"]) == 600
    narrower = org["client"].post("/api/v1/models/backtest", json={"last": 100, "train_share": 0.5}).json()
    assert (narrower["train"], narrower["test"]) == (50, 50)
