"""The dead-letter runbook's tools: `drippulse dlq count` and `drippulse dlq replay` put a letter's
original record back on its source topic, where the pipeline takes it like any other."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from typing import Any

import pytest

from drippulse.settings import Settings
from drippulse.synthetic import lead_event
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests.integration.helpers import activate_workflow, wait_for_executions
from tests.integration.outbound import produce_records
from tests.stack import read_topic, serde_for

pytestmark = pytest.mark.stack


def _drippulse(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "drippulse", "dlq", *args], env=os.environ, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _letter(settings: Settings, event: dict[str, Any], key: bytes | None, group: str) -> dict[str, Any]:
    """The letter a qualifier wrote for an inbound event it failed to process."""
    return {
        "source_topic": topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix),
        "source_partition": 0,
        "source_offset": 0,
        "error_kind": "processing",
        "error": "RuntimeError('a bug, since fixed')",
        "original_key": key,
        "original_value": serde_for(topics.INBOUND_EVENTS, settings).encode(event),
        "failed_at_ms": int(time.time() * 1000),
        "consumer_group": group,
    }


def test_a_letter_is_counted_and_replayed_into_the_pipeline(
    org_factory: Any, qualifier: Any, api_server: Any, settings: Settings
) -> None:
    org = org_factory("Replay Co")
    activate_workflow(org["client"], "LQ", LEAD_QUALIFICATION)
    event = lead_event(random.Random(3), org["org_id"], 1)
    letter = _letter(settings, event, org["org_id"].encode(), "drippulse-qualifier")
    produce_records(settings, topics.EVENTS_DLQ, org["org_id"], [letter])

    counted = _drippulse("count", "--org", org["org_id"])
    assert "drippulse-qualifier  processing" in counted and "1  in all" in counted
    assert "would replay 1 records" in _drippulse("replay", "--org", org["org_id"], "--dry-run")
    assert "replayed 1 records" in _drippulse("replay", "--org", org["org_id"], "--error-kind", "processing")
    wait_for_executions(api_server, org["org_id"], 1)


def test_a_letter_whose_key_was_null_replays_with_a_null_key(
    org_factory: Any, qualifier: Any, api_server: Any, settings: Settings
) -> None:
    """A producer may send no key; the letter records null, not empty, and the replay sends null
    again. An empty key would fail the key check and be dead-lettered again on every replay."""
    org = org_factory("Null Key Co")
    activate_workflow(org["client"], "LQ", LEAD_QUALIFICATION)
    event = lead_event(random.Random(4), org["org_id"], 1)
    group = f"drippulse-qualifier-{org['org_id']}"
    letter = _letter(settings, event, None, group)
    produce_records(settings, topics.EVENTS_DLQ, org["org_id"], [letter])

    assert "replayed 1 records" in _drippulse("replay", "--consumer-group", group)
    inbound = read_topic(settings, topics.INBOUND_EVENTS, raw=True)
    replayed = [message for message in inbound if message.value() == letter["original_value"]]
    assert [message.key() for message in replayed] == [None]
    wait_for_executions(api_server, org["org_id"], 1)
