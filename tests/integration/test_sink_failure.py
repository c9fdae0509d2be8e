"""One embedded ClickHouse sink that cannot write does not stop the others: it retries its batch
with back-off (committing nothing past what it did not write), health says so, and it catches up
once its table is back."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from streams.sinks.clickhouse import apply_schema
from tests.integration.helpers import activate_workflow, wait_for_executions
from tests.integration.outbound import produce_records
from tests.stack import ApiServer, read_topic, serde_for, wait_until

pytestmark = pytest.mark.stack


def _attempt(org_id: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return {
        "attempt_id": f"att-{org_id}",
        "delivery_id": f"dlv-{org_id}",
        "org_id": org_id,
        "webhook_id": "wh_test",
        "message_id": "msg_test",
        "event_type": "lead.qualified",
        "attempt": 1,
        "url": "https://93.184.216.34/hook",
        "result": "succeeded",
        "status_code": 200,
        "latency_ms": 5,
        "error": "",
        "response_excerpt": "",
        "attempted_at_ms": now,
        "next_attempt_at_ms": None,
    }


def _health(settings: Settings) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{settings.api_url}/health", timeout=10).json()
    return body


def test_a_failing_sink_retries_alone_and_catches_up(
    org_factory: Any, qualifier: Any, api_server: ApiServer, settings: Settings
) -> None:
    org = org_factory()
    activate_workflow(org["client"], "LQ", LEAD_QUALIFICATION)
    api_server.clickhouse.command("DROP TABLE drippulse.webhook_attempts")
    try:
        produce_records(settings, topics.WEBHOOK_ATTEMPTS, org["org_id"], [_attempt(org["org_id"])])
        wait_until(lambda: _health(settings)["checks"].get("sinks") == "error", 60, "health to report the sink")

        event = {"event_type": "lead.created", "lead": {"lead_id": "l-1", "email": "a@acme.io", "title": "VP"}}
        assert org["client"].post("/api/v1/events", json=event).status_code == 202
        wait_for_executions(api_server, org["org_id"], 1)
    finally:
        apply_schema(api_server.clickhouse)

    def written() -> int:
        rows = api_server.clickhouse.query(
            "SELECT count() AS n FROM drippulse.webhook_attempts WHERE org_id = {org:String}", {"org": org["org_id"]}
        )
        return int(rows[0]["n"])

    wait_until(lambda: written() == 1, 60, "the sink to write the attempt it held back")
    wait_until(lambda: _health(settings)["status"] == "ok", 60, "health to recover")


def test_a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_written(
    org_factory: Any, api_server: ApiServer, settings: Settings
) -> None:
    """One attempt ClickHouse cannot store (a negative attempt number, a time past DateTime64's range)
    among good ones: the good rows are written, the bad ones dead-lettered with ClickHouse's reason,
    and the sink goes on instead of retrying the batch forever."""
    org = org_factory()
    org_id = org["org_id"]
    good = [{**_attempt(org_id), "attempt_id": f"att-{org_id}-{n}"} for n in range(4)]
    poison = [
        {**_attempt(org_id), "attempt_id": f"att-{org_id}-negative", "attempt": -1},
        {**_attempt(org_id), "attempt_id": f"att-{org_id}-far", "attempted_at_ms": 2**63 - 1},
    ]
    batch = [good[0], poison[0], good[1], good[2], poison[1], good[3]]
    produce_records(settings, topics.WEBHOOK_ATTEMPTS, org_id, batch)

    def written() -> list[str]:
        rows = api_server.clickhouse.query(
            "SELECT attempt_id FROM drippulse.webhook_attempts WHERE org_id = {org:String}", {"org": org_id}
        )
        return sorted(row["attempt_id"] for row in rows)

    wait_until(lambda: written() == sorted(a["attempt_id"] for a in good), 60, "the good rows")
    letters = wait_until(
        lambda: (
            [
                letter
                for letter in read_topic(settings, topics.EVENTS_DLQ, key=org_id)
                if letter["consumer_group"] == "drippulse-sink-webhook-attempts"
            ]
            or None
        ),
        60,
        "the poison rows' letters",
    )
    assert len(letters) == 2 and all("ClickHouse refused" in letter["error"] for letter in letters), letters
    serde = serde_for(topics.WEBHOOK_ATTEMPTS, settings)
    refused = {serde.decode(letter["original_value"])["attempt_id"] for letter in letters}
    assert refused == {a["attempt_id"] for a in poison}
    wait_until(lambda: _health(settings)["status"] == "ok", 60, "the sink is healthy")
