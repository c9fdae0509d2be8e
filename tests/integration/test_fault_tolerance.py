"""SIGKILL the qualifier mid-stream and restart it: nothing lost, nothing duplicated after dedup."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from drippulse.lead_producer import produce_leads
from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.integration.helpers import activate_workflow, count_rows, wait_for_executions
from tests.stack import TopicCounter, read_topic, wait_until

pytestmark = pytest.mark.stack
LEADS = 30_000
BATCH = 10_000


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    qualifier: Any, api_server: Any, settings: Settings, org_factory: Any
) -> None:
    org = org_factory("Crash Co")
    org_id = org["org_id"]
    activate_workflow(org["client"], "Lead Qualification", LEAD_QUALIFICATION)
    qualifier.stop()
    qualifier.env = {"DRIPPULSE_BATCH_SIZE": str(BATCH)}
    qualifier.start()
    produced = TopicCounter(settings, topics.EXECUTIONS, org_id)
    try:
        produce_leads(settings, [org_id], LEADS, seed=3)
        # Past the first batch and into the second one's outputs: its offsets are not committed yet,
        # so the kill forces a replay of records that already reached the broker.
        wait_until(lambda: produced.count >= BATCH + BATCH // 5, 120, "the second batch's outputs", 0.001)
        qualifier.kill()
        qualifier.env = {}
        qualifier.start()
        wait_for_executions(api_server, org_id, LEADS, timeout_s=240)
    finally:
        produced.stop()

    assert count_rows(api_server, org_id) == (LEADS, LEADS)
    executions_on_topic = read_topic(settings, topics.EXECUTIONS, key=org_id)
    assert len(executions_on_topic) > LEADS, "the kill must have forced a replay, else this test proves nothing"

    commands = read_topic(settings, topics.CRM_COMMANDS, key=org_id)
    ids_per_lead: dict[str, set[str]] = defaultdict(set)
    for command in commands:
        ids_per_lead[command["lead_id"]].add(command["command_id"])
    completed = int(
        api_server.clickhouse.query(
            "SELECT countIf(status = 'completed') AS n FROM drippulse.executions FINAL WHERE org_id = {o:String}",
            {"o": org_id},
        )[0]["n"]
    )
    assert len(ids_per_lead) == completed, "every completed lead has its CRM command"
    assert all(len(command_ids) == 1 for command_ids in ids_per_lead.values()), (
        "a replay must reuse the command id (the CRM idempotency key), never mint a second one"
    )
    owners_per_lead: dict[str, set[str]] = defaultdict(set)
    for command in commands:
        owners_per_lead[command["lead_id"]].add(command["properties"].get("owner", ""))
    assert all(len(owners) == 1 for owners in owners_per_lead.values()), "a replay must not re-roll routing"
