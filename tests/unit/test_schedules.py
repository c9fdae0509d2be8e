"""Schedule arithmetic: fire times in a time zone, the segment's view of a lead, event ids."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from processors.model import WorkflowDefinition
from processors.schedules import DAY_MS, latest_fire, scheduled_event, segment_context


def _ms(text: str, zone: str = "UTC") -> int:
    return round(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def test_fire_times_follow_the_time_zone_across_daylight_saving() -> None:
    monday_9 = "0 9 * * MON"
    winter = latest_fire(monday_9, "Europe/Berlin", _ms("2026-03-23T12:00:00", "Europe/Berlin"))
    summer = latest_fire(monday_9, "Europe/Berlin", _ms("2026-03-30T12:00:00", "Europe/Berlin"))
    assert winter == _ms("2026-03-23T08:00:00") and summer == _ms("2026-03-30T07:00:00"), "09:00 local both times"


def test_the_latest_fire_time_includes_now_and_seconds_are_the_sixth_field() -> None:
    at = _ms("2026-11-29T10:00:30")
    assert latest_fire("* * * * * */10", "UTC", at) == at
    assert latest_fire("* * * * * */10", "UTC", at + 9_999) == at
    assert latest_fire("*/5 * * * *", "UTC", at) == _ms("2026-11-29T10:00:00")


def test_a_segment_sees_latest_values_tier_and_whole_days_inactive() -> None:
    context = segment_context({"lead_id": "l1"}, "B", 0, 30 * DAY_MS + 5)
    assert context == {"lead": {"lead_id": "l1"}, "tier": "B", "days_inactive": 30}


def test_a_fire_times_event_is_the_same_each_time_it_is_made() -> None:
    lead = {"lead_id": "l1", "email": "a@acme.io"}
    first = scheduled_event("org", "wf", 1000, lead)
    assert first == scheduled_event("org", "wf", 1000, lead)
    assert first["event_id"] != scheduled_event("org", "wf", 2000, lead)["event_id"]
    assert first["trigger"] == "SCHEDULE" and first["workflow_id"] == "wf" and first["occurred_at_ms"] == 1000


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "not a cron expression"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "not an IANA time zone"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_path(schedule: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WorkflowDefinition.model_validate(
            {
                "trigger": {"schedule": schedule},
                "steps": [{"type": "filter", "condition": {"field": "x", "op": "exists"}}],
            }
        )


def test_a_trigger_needs_events_or_a_schedule() -> None:
    with pytest.raises(ValidationError, match="event types, a schedule, or both"):
        WorkflowDefinition.model_validate(
            {"trigger": {}, "steps": [{"type": "filter", "condition": {"field": "x", "op": "exists"}}]}
        )
