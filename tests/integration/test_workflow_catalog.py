"""The worker's catalog of compiled workflows, read from the real control plane (PostgreSQL)."""

from __future__ import annotations

import copy
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from drippulse.settings import Settings
from drippulse.synthetic import create_orgs
from processors.templates import LEAD_QUALIFICATION
from streams.state.control_plane import ControlPlaneReader, connect
from streams.state.workflow_catalog import WorkflowCatalog
from tests.integration.helpers import activate_workflow, stored_executions, wait_for_executions

pytestmark = pytest.mark.stack


def test_orgs_with_the_same_definitions_share_one_trigger_set(stack: Any, settings: Settings) -> None:
    webinar = copy.deepcopy(LEAD_QUALIFICATION)
    webinar["trigger"]["condition"] = {"field": "lead.lead_source", "op": "eq", "value": "webinar"}
    updates = copy.deepcopy(LEAD_QUALIFICATION)
    updates["trigger"]["event_types"] = ["lead.updated"]
    first, second = create_orgs(settings.database_url, [LEAD_QUALIFICATION, webinar, updates], 2, "catalog")
    catalog = WorkflowCatalog(ControlPlaneReader(connect(settings.database_url)), refresh_s=60)

    workflows = catalog.active_for([first, second])

    assert [w.trigger for w in workflows[first]] == [w.trigger for w in workflows[second]], "same order"
    assert catalog.triggers_of(first) is catalog.triggers_of(second)
    event = {"event_type": "lead.created", "lead": {"lead_source": "webinar"}}
    triggered = catalog.triggers_of(first)[event["event_type"]](event)
    assert triggered == tuple(w.triggers(event) for w in workflows[first])
    assert sorted(triggered) == [False, True, True]


def test_a_stored_definition_that_no_longer_compiles_is_quarantined_and_the_rest_runs_on(
    org_factory: Any, qualifier: Any, api_server: Any, settings: Settings
) -> None:
    """A definition changed behind the API's back (a hand edit, a model change in an upgrade) is taken
    out of service, visibly and audited; its org's other workflows and every other org keep running."""
    first, second = org_factory(), org_factory()
    healthy = activate_workflow(first["client"], "healthy", LEAD_QUALIFICATION)
    broken = activate_workflow(first["client"], "broken", LEAD_QUALIFICATION)
    elsewhere = activate_workflow(second["client"], "elsewhere", LEAD_QUALIFICATION)
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as database:
        invalid = {"trigger": {"event_types": ["lead.nope"]}}
        database.execute(
            "UPDATE workflow_versions SET definition = %s WHERE workflow_id = %s", (Jsonb(invalid), broken["id"])
        )
        bump = "UPDATE organizations SET config_revision = config_revision + 1 WHERE id = %s"
        database.execute(bump, (first["org_id"],))

    event = {"event_type": "lead.created", "lead": {"lead_id": "l-1", "email": "a@acme.io", "title": "VP"}}
    for org in (first, second):
        assert org["client"].post("/api/v1/events", json=event).status_code == 202
    wait_for_executions(api_server, first["org_id"], 1)
    wait_for_executions(api_server, second["org_id"], 1)

    ran = {row["workflow_id"] for row in stored_executions(api_server, first["org_id"])}
    assert ran == {healthy["id"]}
    assert {row["workflow_id"] for row in stored_executions(api_server, second["org_id"])} == {elsewhere["id"]}
    quarantined = first["client"].get(f"/api/v1/workflows/{broken['id']}").json()
    assert quarantined["status"] == "quarantined" and "no longer compiles" in quarantined["quarantine_reason"]
    log = first["client"].get("/api/v1/audit_log", params={"resource_id": broken["id"]}).json()["items"]
    assert log[0]["action"] == "workflow.quarantine" and log[0]["actor"]["type"] == "system"

    fixed = first["client"].patch(f"/api/v1/workflows/{broken['id']}", json={"definition": LEAD_QUALIFICATION})
    reactivated = first["client"].post(f"/api/v1/workflows/{fixed.json()['id']}/activate").json()
    assert (reactivated["status"], reactivated["quarantine_reason"]) == ("active", None)


def test_a_workflow_activated_within_the_refresh_interval_is_found_when_a_run_asks_for_it(
    org_factory: Any, settings: Settings
) -> None:
    """An agent's execute right after its deployment asks for a backing workflow the qualifier's
    catalog has not seen yet: it must be looked up then, not taken for inactive until the next refresh."""
    org = org_factory()
    catalog = WorkflowCatalog(ControlPlaneReader(connect(settings.database_url)), refresh_s=3600)
    assert catalog.active_for([org["org_id"]]) == {org["org_id"]: ()}
    activated = activate_workflow(org["client"], "new", LEAD_QUALIFICATION)

    assert catalog.active_for([org["org_id"]]) == {org["org_id"]: ()}, "within the interval: not looked up"
    refreshed = catalog.refreshed([org["org_id"]])
    assert [w.workflow_id for w in refreshed[org["org_id"]]] == [activated["id"]]
