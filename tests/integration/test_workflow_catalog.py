"""The worker's catalog of compiled workflows, read from the real control plane (PostgreSQL)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drippulse.settings import Settings
from drippulse.synthetic import create_orgs
from processors.templates import LEAD_QUALIFICATION
from streams.control_plane import ControlPlaneReader, connect
from streams.workflow_catalog import WorkflowCatalog

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
