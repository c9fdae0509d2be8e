"""N leads in through the real API and broker -> exactly the executions, commands and notifications
the pure engine predicts; bad records go to the DLQ without stopping the stream."""

from __future__ import annotations

import random
from typing import Any

import pytest
from confluent_kafka import Producer

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors import ids
from processors.execution import ExecutionStatus
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.integration.helpers import (
    activate_workflow,
    count_rows,
    expected_executions,
    post_events,
    stored_executions,
    wait_for_executions,
)
from tests.stack import read_topic, serde_for

pytestmark = pytest.mark.stack

EMEA_ONLY = {
    "trigger": {
        "event_types": ["lead.created"],
        "condition": {"field": "lead.country", "op": "in", "value": ["DE", "FR", "NL"]},
    },
    "steps": [
        {
            "type": "score",
            "rules": [{"id": "big", "when": {"field": "lead.employees", "op": "gte", "value": 500}, "points": 50}],
        },
        {"type": "tier", "thresholds": [{"tier": "enterprise", "min_score": 50}], "default_tier": "smb"},
        {"type": "route", "team": ["eve@acme.test", "finn@acme.test"], "fallback_owner": "queue"},
        {"type": "action", "action": "crm_update"},
    ],
}


@pytest.fixture(scope="module")
def pipeline_run(qualifier: Any, api_server: Any, settings: Settings, request: pytest.FixtureRequest) -> dict[str, Any]:
    from tests.conftest import _new_org

    org = _new_org(settings, "Pipeline Co")
    workflows = [
        activate_workflow(org["client"], "Lead Qualification", LEAD_QUALIFICATION),
        activate_workflow(org["client"], "EMEA enterprise", EMEA_ONLY),
    ]
    rng = random.Random(11)
    records = [lead_event(rng, org["org_id"], n) for n in range(400)]
    post_events(org["client"], records[:200])

    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    inbound = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    key = org["org_id"].encode()
    producer.produce(inbound, b"\x00not avro at all", key)
    wrong_key = dict(lead_event(rng, org["org_id"], 10_000))
    producer.produce(inbound, serde_for(topics.INBOUND_EVENTS, settings).encode(wrong_key), key + b"-other")
    producer.flush(10)

    post_events(org["client"], records[200:])
    expected = expected_executions(workflows, records)
    wait_for_executions(api_server, org["org_id"], len(expected))
    return {"org": org, "workflows": workflows, "records": records, "expected": expected, "refused": wrong_key}


def test_exactly_one_execution_per_matching_workflow_per_lead(pipeline_run: dict[str, Any], api_server: Any) -> None:
    expected = pipeline_run["expected"]
    org_id = pipeline_run["org"]["org_id"]
    assert count_rows(api_server, org_id) == (len(expected), len(expected))
    emea = sum(1 for e in expected.values() if e.workflow_id == pipeline_run["workflows"][1]["id"])
    assert 0 < emea < len(pipeline_run["records"]), "the trigger condition must select some leads, not all"
    assert len(expected) == len(pipeline_run["records"]) + emea


def test_tiers_owners_and_scores_equal_the_pure_engine(pipeline_run: dict[str, Any], api_server: Any) -> None:
    expected = pipeline_run["expected"]
    stored = {row["execution_id"]: row for row in stored_executions(api_server, pipeline_run["org"]["org_id"])}
    assert stored.keys() == expected.keys()
    for execution_id, execution in expected.items():
        row = stored[execution_id]
        assert (row["status"], row["tier"], row["owner"], int(row["score"]), row["routing_reason"]) == (
            execution.status.value,
            execution.tier,
            execution.owner,
            execution.score,
            execution.routing_reason,
        )
    assert all(stored[i]["decisions"] == e.decisions for i, e in expected.items())
    emea = api_server.clickhouse.query(
        "SELECT count() AS n FROM drippulse.executions FINAL "
        "WHERE org_id = {o:String} AND has(decisions, '3:route:emea')",
        {"o": pipeline_run["org"]["org_id"]},
    )[0]["n"]
    assert int(emea) == sum(1 for e in expected.values() if "territory rule 'emea'" in e.routing_reason) > 0
    assert {row["status"] for row in stored.values()} == {"completed", "filtered_out"}


def test_crm_commands_and_webhook_deliveries_are_on_their_topics(
    pipeline_run: dict[str, Any], settings: Settings
) -> None:
    org_id = pipeline_run["org"]["org_id"]
    completed = [e for e in pipeline_run["expected"].values() if e.status is ExecutionStatus.COMPLETED]
    commands = read_topic(settings, topics.CRM_COMMANDS, key=org_id)
    assert {c["command_id"] for c in commands} == {
        ids.crm_command_id(e.execution_id, u.step) for e in completed for u in e.crm_commands
    }
    by_execution = {c["execution_id"]: c for c in commands}
    for execution in completed:
        assert by_execution[execution.execution_id]["properties"]["owner"] == execution.owner
    deliveries = read_topic(settings, topics.WEBHOOK_DELIVERIES, key=org_id)
    assert {d["message_id"] for d in deliveries} == {
        ids.webhook_message_id(e.execution_id, n.step) for e in completed for n in e.notifications
    }
    assert all(d["event_type"] == "lead.qualified" and d["org_id"] == org_id for d in deliveries)


def test_bad_records_are_dead_lettered_and_later_records_still_processed(
    pipeline_run: dict[str, Any], settings: Settings, api_server: Any
) -> None:
    org_id = pipeline_run["org"]["org_id"]
    dead = [
        r for r in read_topic(settings, topics.EVENTS_DLQ) if (r["original_key"] or b"").startswith(org_id.encode())
    ]
    letters = sorted((r["error_kind"], r["consumer_group"]) for r in dead)
    assert letters == [
        ("decode", "drippulse-qualifier"),
        ("decode", "drippulse-sink-inbound-history"),
        ("validation", "drippulse-qualifier"),
    ], "one dead letter per consumer that could not use the record, naming it"
    kinds = {r["error_kind"]: r for r in dead}
    assert kinds["decode"]["original_value"] == b"\x00not avro at all"
    assert "magic byte" in kinds["decode"]["error"] or "schema id" in kinds["decode"]["error"]
    assert "must equal org_id" in kinds["validation"]["error"]
    history = api_server.clickhouse.query(
        "SELECT count() AS n FROM drippulse.inbound_events WHERE event_id = {e:String}",
        {"e": pipeline_run["refused"]["event_id"]},
    )
    assert int(history[0]["n"]) == 0, "replay history holds only what the qualifier accepted"
    last_lead = pipeline_run["records"][-1]["lead"]["lead_id"]
    assert any(row["lead_id"] == last_lead for row in stored_executions(api_server, org_id))


def test_executions_api_filters_and_paginates(pipeline_run: dict[str, Any]) -> None:
    client = pipeline_run["org"]["client"]
    workflow_id = pipeline_run["workflows"][1]["id"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow_id": workflow_id, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/executions", params=params).json()
        seen.extend(item["execution_id"] for item in page["items"])
        assert all(item["workflow_id"] == workflow_id for item in page["items"])
        stamps = [(i["evaluated_at_ms"], i["execution_id"]) for i in page["items"]]
        assert stamps == sorted(stamps, reverse=True)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = {e for e, x in pipeline_run["expected"].items() if x.workflow_id == workflow_id}
    assert len(seen) == len(set(seen)) and set(seen) == expected

    one = next(iter(pipeline_run["expected"].values()))
    by_lead = client.get("/api/v1/executions", params={"lead_id": one.lead_id}).json()["items"]
    assert one.execution_id in {i["execution_id"] for i in by_lead}
    assert client.get(f"/api/v1/executions/{one.execution_id}").json()["tier"] == one.tier
    filtered = client.get("/api/v1/executions", params={"status": "filtered_out", "limit": 1000}).json()["items"]
    assert filtered and all(i["status"] == "filtered_out" for i in filtered)
    summary = client.get(
        "/api/v1/executions/summary", params={"workflow_id": pipeline_run["workflows"][0]["id"]}
    ).json()
    assert summary["leads"] == len(pipeline_run["records"])
