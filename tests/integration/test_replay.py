"""What-if replay through the real stack: real inbound history, two versions, a planted difference."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors.compiler import compile_workflow
from processors.events import EVENT_TYPE_BY_SYMBOL
from processors.model import WorkflowDefinition
from processors.routing import RoutingState
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import activate_workflow, post_events, wait_for_executions
from tests.stack import wait_until

pytestmark = pytest.mark.stack
LEADS = 300


def _history_rows(api_server: Any, org_id: str) -> int:
    rows = api_server.clickhouse.query(
        "SELECT count() AS n FROM drippulse.inbound_events FINAL WHERE org_id = {o:String}", {"o": org_id}
    )
    return int(rows[0]["n"])


def test_replay_finds_the_planted_tier_change(
    qualifier: Any, api_server: Any, settings: Settings, org_factory: Any
) -> None:
    org = org_factory("Replay Co")
    client, org_id = org["client"], org["org_id"]
    workflow = activate_workflow(client, "LQ", LEAD_QUALIFICATION)
    rng = random.Random(8)
    records = [lead_event(rng, org_id, n) for n in range(LEADS)]
    post_events(client, records)
    wait_for_executions(api_server, org_id, LEADS)
    wait_until(lambda: _history_rows(api_server, org_id) >= LEADS, 60, "inbound history in ClickHouse")

    stricter = copy.deepcopy(LEAD_QUALIFICATION)
    stricter["steps"][2]["thresholds"][0]["min_score"] = 85  # planted: tier A now needs 85, not 60
    draft = client.patch(f"/api/v1/workflows/{workflow['id']}", json={"definition": stricter}).json()
    assert draft["latest_version"] == 2

    response = client.post(
        f"/api/v1/workflows/{workflow['id']}/replay",
        json={"base_version": 1, "candidate_version": 2, "last": 5000, "examples": 3},
    )
    assert response.status_code == 200, response.text
    report = response.json()

    engine = compile_workflow("x", 1, WorkflowDefinition.model_validate(LEAD_QUALIFICATION))
    demoted = set()
    for record in records:
        event = {**record, "event_type": EVENT_TYPE_BY_SYMBOL[record["event_type"]].value}
        execution = engine.evaluate(event, RoutingState())
        if execution.status.value == "completed" and 60 <= execution.score < 85:
            demoted.add(execution.lead_id)
    assert demoted, "the planted difference must affect some leads"
    assert report["events"] == LEADS and report["evaluated"] == LEADS
    assert report["changes"]["tier"] == len(demoted)
    assert report["changes"]["enrollment"] == 0 and report["changes"]["actions"] == 0
    assert all(e["before"] == "A" and e["after"] == "B" and e["lead_id"] in demoted for e in report["examples"]["tier"])
    assert len(report["examples"]["tier"]) == 3

    same = client.post(
        f"/api/v1/workflows/{workflow['id']}/replay", json={"base_version": 1, "candidate_version": 1}
    ).json()
    assert same["leads_changed"] == 0
    other = org_factory()
    assert (
        other["client"]
        .post(f"/api/v1/workflows/{workflow['id']}/replay", json={"base_version": 1, "candidate_version": 2})
        .status_code
        == 404
    )
