"""Schedule arithmetic: fire times in a time zone, the segment's view of a lead, event ids."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from processors.model import WorkflowDefinition, offered
from processors.schedules import (
    DAY_MS,
    MIN_INTERVAL_S,
    due_fire,
    latest_fire,
    scheduled_event,
    segment_context,
    shortest_interval_s,
)


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


def _offered(schedule: dict[str, str], floor_s: int = MIN_INTERVAL_S) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate(
        {"trigger": {"schedule": schedule}, "steps": [{"type": "filter", "condition": {"field": "x", "op": "exists"}}]},
        context=offered(floor_s),
    )


@pytest.mark.parametrize(
    "cron",
    ["* * * * * *", "* * * * *", "*/4 * * * *", "0,1 9 * * MON", "1,58 0,23 * * *", "0 9 * * * 0,30"],
)
def test_a_new_schedule_firing_more_often_than_every_five_minutes_is_refused_at_its_cron_field(cron: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _offered({"cron": cron})
    (error,) = refused.value.errors()
    assert error["loc"] == ("trigger", "schedule", "cron") and "at most once every 5 minutes" in error["msg"]


@pytest.mark.parametrize("cron", ["*/5 * * * *", "0 9 * * MON", "0 */2 * * *", "30 9 * * * 15", "0,5 9 * * *"])
def test_a_new_schedule_at_most_once_every_five_minutes_is_accepted(cron: str) -> None:
    assert _offered({"cron": cron}).trigger.schedule is not None


def test_the_floor_is_the_operators_to_lower() -> None:
    assert _offered({"cron": "* * * * * */2"}, floor_s=2).trigger.schedule is not None
    with pytest.raises(ValidationError, match="at most once every 2 seconds"):
        _offered({"cron": "* * * * * *"}, floor_s=2)


def test_a_stored_schedule_still_validates_so_its_paused_executions_resume() -> None:
    """The floor is a rule for definitions offered now; one stored before it keeps loading (its
    fire times are throttled by the scheduler instead)."""
    stored = {
        "trigger": {"schedule": {"cron": "* * * * *"}},
        "steps": [{"type": "filter", "condition": {"field": "x", "op": "exists"}}],
    }
    assert WorkflowDefinition.model_validate(stored).trigger.schedule is not None


def test_a_random_cron_field_is_refused_since_each_process_would_draw_its_own_fire_times() -> None:
    with pytest.raises(ValidationError, match="not a cron expression"):
        _offered({"cron": "R 9 * * *"})


_SECOND_SETS = st.sets(st.integers(0, 59), min_size=1, max_size=4)


@given(
    seconds=_SECOND_SETS,
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=4),
    hours=st.sets(st.integers(0, 23), min_size=1, max_size=3),
)
@settings(max_examples=60, deadline=None)
def test_the_shortest_interval_is_the_shortest_gap_between_real_fire_times(
    seconds: set[int], minutes: set[int], hours: set[int]
) -> None:
    """Against croniter's own fire times over two days in UTC, where every day fires."""
    minute, hour, second = (",".join(map(str, sorted(values))) for values in (minutes, hours, seconds))
    cron = f"{minute} {hour} * * * {second}"
    start = _ms("2026-11-29T00:00:00")
    fires, at = [], start + 2 * DAY_MS
    while at >= start:
        at = latest_fire(cron, "UTC", at)
        fires.append(at)
        at -= 1
    gaps = [later - earlier for later, earlier in itertools.pairwise(fires)]
    assert shortest_interval_s(cron) * 1000 == min(gaps)


def test_a_stored_schedule_faster_than_the_floor_fires_at_most_once_per_floor() -> None:
    """A definition stored before the floor existed: the scheduler runs the first fire time of each
    floor-long period and skips the rest, the same in every process."""
    start = _ms("2026-11-29T10:00:00")
    looks = [start + n * 1000 for n in range(3600)]
    assert sorted({due_fire("* * * * * *", "UTC", at, 300) for at in looks}) == [start + n * 300_000 for n in range(12)]
    every_five_minutes = [start + n * 300_000 for n in range(12)]
    assert [due_fire("*/5 * * * *", "UTC", f, 300) for f in every_five_minutes] == every_five_minutes


@given(late_ms=st.integers(0, 299_999))
@settings(max_examples=200, deadline=None)
def test_a_stored_schedule_faster_than_the_floor_loses_no_period_to_a_late_look(late_ms: int) -> None:
    """The scheduler looks about once a second, later when a segment query holds it up. However late
    within a period it looks, that period's first fire time is the one it runs (grace permitting),
    not nothing because a later fire time of the period is the latest by then."""
    period_start = _ms("2026-11-29T10:05:00")
    for cron in ("* * * * * *", "* * * * * */7", "* * * * *"):
        assert due_fire(cron, "UTC", period_start + late_ms, 300) == period_start, cron


@given(now_ms=st.integers(_ms("2026-11-29T00:00:00"), _ms("2026-12-01T00:00:00")))
@settings(max_examples=200, deadline=None)
def test_a_schedule_that_keeps_the_floor_is_due_at_its_latest_fire_time(now_ms: int) -> None:
    for cron in ("*/5 * * * *", "0 9 * * *", "2-59/5 * * * * 30"):
        assert due_fire(cron, "UTC", now_ms, 300) == latest_fire(cron, "UTC", now_ms)
