"""Query parameters reach ClickHouse exactly as given: every string a filter accepts, in a String
or an Array(String) parameter, including tabs, newlines, backslashes, quotes and NUL."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.templates import LEAD_QUALIFICATION

pytestmark = pytest.mark.stack
TRICKY = "a\\b\tc\nd\re'f\x00g\\N\\"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text())
def test_a_string_parameter_round_trips(api_server: Any, value: str) -> None:
    rows = api_server.clickhouse.query("SELECT {v:String} AS v", {"v": value})
    assert rows == [{"v": value}]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(st.text(), max_size=5))
def test_an_array_parameter_round_trips(api_server: Any, values: list[str]) -> None:
    rows = api_server.clickhouse.query("SELECT {v:Array(String)} AS v", {"v": values})
    assert rows == [{"v": values}]


def test_filters_find_stored_values_with_escapes(api_server: Any, org_factory: Any) -> None:
    """The lead filter is a String parameter, a project's workflows an Array(String) one."""
    org = org_factory("Escapes")
    created = org["client"].post("/api/v1/workflows", json={"name": "LQ", "definition": LEAD_QUALIFICATION})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    api_server.clickhouse.insert_rows(
        "executions",
        [
            {
                "execution_id": "exec-with-escapes",
                "org_id": org["org_id"],
                "workflow_id": workflow_id,
                "workflow_version": 1,
                "event_id": "e",
                "event_type": "lead.created",
                "lead_id": TRICKY,
                "status": "completed",
                "status_reason": "",
                "score": 1,
                "score_breakdown": {},
                "tier": "A",
                "owner": "o",
                "routing_reason": "",
                "actions": [],
                "event_occurred_at": 1.0,
                "evaluated_at": 1.0,
            }
        ],
    )

    found = org["client"].get("/api/v1/executions", params={"lead_id": TRICKY, "project_id": org["project_id"]})

    assert found.status_code == 200, found.text
    assert [item["execution_id"] for item in found.json()["items"]] == ["exec-with-escapes"]
    assert found.json()["items"][0]["lead_id"] == TRICKY
