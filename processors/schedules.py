"""Schedule triggers: when a workflow's cron schedule fires, and which leads its segment holds.

A fire time is computed in the schedule's time zone (so `0 9 * * MON` is 09:00 Berlin time in
summer and in winter) and handled as epoch milliseconds. Each lead a fire time runs for becomes one
inbound event whose id derives from (workflow, fire time, lead): running a fire time again, after a
crash, reproduces the same events, which the qualifier turns into the same executions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from processors import ids

DAY_MS = 86_400_000


def check_cron(expression: str) -> str:
    """Five fields (minute hour day month weekday), or six with seconds last."""
    if len(expression.split()) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a cron expression of 5 fields (or 6, seconds last)")
    return expression


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)") from None
    return name


def latest_fire(expression: str, timezone: str, now_ms: int) -> int:
    """The latest fire time at or before `now_ms` (croniter's previous time is strictly before its
    start, and fire times fall on whole seconds: start from the next whole second)."""
    start = datetime.fromtimestamp(now_ms // 1000 + 1, UTC).astimezone(ZoneInfo(timezone))
    fired: datetime = croniter(expression, start).get_prev(datetime)
    return round(fired.timestamp() * 1000)


def segment_context(lead: dict[str, Any], tier: str, last_event_ms: int, fire_ms: int) -> dict[str, Any]:
    """What a segment condition reads: the lead's latest values (`lead.*`), the tier last recorded
    for it by any workflow (`tier`), and whole days since its last event (`days_inactive`)."""
    return {"lead": lead, "tier": tier, "days_inactive": max(0, (fire_ms - last_event_ms) // DAY_MS)}


def scheduled_event(org_id: str, workflow_id: str, fire_ms: int, lead: dict[str, Any]) -> dict[str, Any]:
    """The inbound event (drip.events.inbound) that runs the workflow for one lead of a fire time."""
    return {
        "event_id": f"sch_{ids.digest(workflow_id, fire_ms, lead['lead_id'])}",
        "org_id": org_id,
        "event_type": "LEAD_UPDATED",
        "occurred_at_ms": fire_ms,
        "source": "schedule",
        "lead": lead,
        "crm_object": None,
        "previous": None,
        "trigger": "SCHEDULE",
        "workflow_id": workflow_id,
    }
