"""`changed*` through the real pipeline for a producer that sends only current values: the worker
remembers what it saw of each lead, within a batch and across batches (in Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import activate_workflow, wait_for_executions

pytestmark = pytest.mark.stack

MOVED_TO_US = {"field": "lead.country", "op": "changed_to", "value": "US"}
WORKFLOW = {
    "trigger": {
        "event_types": ["lead.updated"],
        "condition": MOVED_TO_US,
        "reenrollment": {"enabled": True, "event_types": ["lead.updated"], "condition": MOVED_TO_US},
    },
    "steps": [{"type": "action", "action": "log", "message": "moved to the US"}],
}


def _event(n: int, event_type: str, country: str) -> dict[str, Any]:
    return {"event_id": f"mem-{n}", "event_type": event_type, "lead": {"lead_id": "lead-1", "country": country}}


def test_changed_to_compares_with_the_value_remembered_from_earlier_events(
    qualifier: Any, api_server: Any, org_factory: Any
) -> None:
    org = org_factory("Memory Co")
    client, org_id = org["client"], org["org_id"]
    activate_workflow(client, "Moved to US", WORKFLOW)

    first = [_event(1, "lead.created", "CA"), _event(2, "lead.updated", "CA"), _event(3, "lead.updated", "US")]
    assert client.post("/api/v1/events", json=first).status_code == 202
    wait_for_executions(api_server, org_id, 1)
    second = [_event(4, "lead.updated", "US"), _event(5, "lead.updated", "DE"), _event(6, "lead.updated", "US")]
    assert client.post("/api/v1/events", json=second).status_code == 202
    wait_for_executions(api_server, org_id, 2)
    closing = [_event(7, "lead.updated", "US")]
    assert client.post("/api/v1/events", json=closing).status_code == 202
    marker = [{"event_id": "mem-8", "event_type": "lead.updated", "lead": {"lead_id": "lead-2", "country": "FR"}}]
    marker.append({"event_id": "mem-9", "event_type": "lead.updated", "lead": {"lead_id": "lead-2", "country": "US"}})
    assert client.post("/api/v1/events", json=marker).status_code == 202
    wait_for_executions(api_server, org_id, 3)

    rows = api_server.clickhouse.query(
        "SELECT event_id FROM drippulse.executions FINAL WHERE org_id = {o:String} ORDER BY event_id", {"o": org_id}
    )
    assert [row["event_id"] for row in rows] == ["mem-3", "mem-6", "mem-9"], (
        "only real moves to US enrol: CA->US, DE->US (re-enrolled), and the second lead's FR->US; "
        "US->US (mem-4, mem-7) and the first sighting of a lead are not changes"
    )
