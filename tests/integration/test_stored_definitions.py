"""Versions stored under older rules than today's keep working where they are read back: a rule a
new definition must meet (the score bounds, the schedule floor) never breaks a stored one."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from drippulse.settings import Settings
from processors.templates import lead_qualification_with_approval
from tests import control_plane
from tests.integration.helpers import activate_workflow

pytestmark = pytest.mark.stack
APPROVAL_STEP = "4.0.0"


def _approval_on(org: dict[str, Any], settings: Settings, definition: dict[str, Any]) -> str:
    """An approval held on version 1 of a workflow whose stored definition is then `definition`."""
    workflow = activate_workflow(org["client"], "stored long ago", lead_qualification_with_approval())
    control_plane.store_definition(settings, workflow["id"], 1, definition)
    return control_plane.open_approval(settings, org["org_id"], workflow["id"], ["role:approver"], APPROVAL_STEP)


def test_an_approval_on_a_version_with_points_past_todays_bound_is_shown(org_factory: Any, settings: Settings) -> None:
    """2,000,000 points was a valid score rule before scores were bounded (at 1,000,000)."""
    org = org_factory()
    definition = copy.deepcopy(lead_qualification_with_approval())
    definition["steps"][1]["rules"][0]["points"] = 2_000_000
    answer = org["client"].get(f"/api/v1/approvals/{_approval_on(org, settings, definition)}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcomes"]["on_approve"], "what approving runs, read from the stored version"


def test_an_approval_on_a_version_no_model_reads_any_more_is_still_shown(org_factory: Any, settings: Settings) -> None:
    org = org_factory()
    definition = copy.deepcopy(lead_qualification_with_approval())
    definition["steps"].append({"type": "a step type this build does not know"})
    answer = org["client"].get(f"/api/v1/approvals/{_approval_on(org, settings, definition)}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["outcomes"] is None, "the approval, without what its version's steps would do"
