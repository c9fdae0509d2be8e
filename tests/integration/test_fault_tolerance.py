"""SIGKILL the qualifier mid-stream and restart it: nothing lost, nothing duplicated after dedup."""

from __future__ import annotations

import signal
from collections import defaultdict
from typing import Any

import pytest

from drippulse.lead_producer import produce_leads
from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.integration.helpers import activate_workflow, count_rows, wait_for_executions
from tests.stack import read_topic, wait_until

pytestmark = pytest.mark.stack
LEADS = 20_000
BATCH = 5_000


def _one_command_and_owner_per_lead(settings: Settings, api_server: Any, org_id: str) -> None:
    commands = read_topic(settings, topics.CRM_COMMANDS, key=org_id)
    ids_per_lead: dict[str, set[str]] = defaultdict(set)
    owners_per_lead: dict[str, set[str]] = defaultdict(set)
    for command in commands:
        ids_per_lead[command["lead_id"]].add(command["command_id"])
        owners_per_lead[command["lead_id"]].add(command["properties"].get("owner", ""))
    completed = int(
        api_server.clickhouse.query(
            "SELECT countIf(status = 'completed') AS n FROM drippulse.executions FINAL WHERE org_id = {o:String}",
            {"o": org_id},
        )[0]["n"]
    )
    assert len(ids_per_lead) == completed, "every completed lead has its CRM command"
    assert all(len(ids) == 1 for ids in ids_per_lead.values()), (
        "a replay must reuse the command id (the CRM idempotency key), never mint a second one"
    )
    assert all(len(owners) == 1 for owners in owners_per_lead.values()), "a replay must not re-roll routing"


@pytest.fixture
def crash_org(qualifier: Any, org_factory: Any, settings: Settings) -> dict[str, Any]:
    org = org_factory("Crash Co")
    activate_workflow(org["client"], "Lead Qualification", LEAD_QUALIFICATION)
    qualifier.stop()
    qualifier.env = {"DRIPPULSE_BATCH_SIZE": str(BATCH)}
    yield org
    qualifier.stop()
    qualifier.env = {}
    qualifier.start()


def test_sigkill_between_produce_and_commit_replays_without_duplicates(
    qualifier: Any, api_server: Any, settings: Settings, crash_org: dict[str, Any]
) -> None:
    """The worst moment: the second batch's outputs are on the broker, its offsets are not committed."""
    org_id = crash_org["org_id"]
    produce_leads(settings, [org_id], LEADS, seed=3)
    qualifier.start(crash_on_commit=2)
    assert qualifier.wait_for_exit(120) == -signal.SIGKILL
    qualifier.start()
    wait_for_executions(api_server, org_id, LEADS, timeout_s=240)

    assert count_rows(api_server, org_id) == (LEADS, LEADS)
    on_topic = read_topic(settings, topics.EXECUTIONS, key=org_id)
    assert len(on_topic) > LEADS, "the crash must have forced a replay, else this test proves nothing"
    _one_command_and_owner_per_lead(settings, api_server, org_id)


def test_external_sigkill_mid_stream_loses_nothing(
    qualifier: Any, api_server: Any, settings: Settings, crash_org: dict[str, Any]
) -> None:
    """A kill from outside at whatever point the worker happens to be."""
    org_id = crash_org["org_id"]
    qualifier.start()
    produce_leads(settings, [org_id], LEADS, seed=5)
    wait_until(lambda: count_rows(api_server, org_id)[0] > 0, 60, "the first executions")
    qualifier.kill()
    assert count_rows(api_server, org_id)[0] < LEADS, "the kill must land mid-stream"
    qualifier.start()
    wait_for_executions(api_server, org_id, LEADS, timeout_s=240)

    assert count_rows(api_server, org_id) == (LEADS, LEADS)
    _one_command_and_owner_per_lead(settings, api_server, org_id)
