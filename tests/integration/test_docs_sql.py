"""Every SQL example in docs/analytics.md runs on the real engine (so the docs cannot drift from the
tables), against an org with a little history."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from tests.integration.helpers import activate_workflow, wait_for_executions
from tests.stack import ApiServer

pytestmark = pytest.mark.stack
DOCS = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
EXAMPLES = re.findall(r"```sql\n(.*?)```", DOCS.read_text(), re.DOTALL)


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 8


@pytest.fixture(scope="module")
def history(qualifier: Any, api_server: ApiServer, settings: Settings) -> tuple[str, str]:
    """(org id, workflow id) of an org with one evaluated lead."""
    from tests.conftest import _new_org

    org = _new_org(settings, "Analytics Co")
    workflow = activate_workflow(org["client"], "LQ", LEAD_QUALIFICATION)
    event = {"event_type": "lead.created", "lead": {"lead_id": "lead-42", "email": "a@acme.io", "title": "VP"}}
    assert org["client"].post("/api/v1/events", json=event).status_code == 202
    wait_for_executions(api_server, org["org_id"], 1)
    return org["org_id"], workflow["id"]


@pytest.mark.parametrize("sql", EXAMPLES, ids=[f"example-{n}" for n in range(len(EXAMPLES))])
def test_each_sql_example_runs(sql: str, history: tuple[str, str], api_server: ApiServer) -> None:
    org_id, workflow_id = history
    query = sql.replace("'org_…'", f"'{org_id}'").replace("'wf_…'", f"'{workflow_id}'")
    assert isinstance(api_server.clickhouse.query(query.strip().rstrip(";")), list)
