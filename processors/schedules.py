"""Schedule triggers: when a workflow's cron schedule fires, and which leads its segment holds.

A fire time is computed in the schedule's time zone (so `0 9 * * MON` is 09:00 Berlin time in
summer and in winter) and handled as epoch milliseconds. Each lead a fire time runs for becomes one
inbound event whose id derives from (workflow, fire time, lead): running a fire time again, after a
crash, reproduces the same events, which the qualifier turns into the same executions.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from processors import ids

DAY_MS = 86_400_000
MIN_INTERVAL_S = 300
"""The floor: a schedule fires at most once every 5 minutes. Each fire time reads the org's whole
inbound history (and its executions) from ClickHouse and runs every lead of the segment again, with
CRM and webhook side effects, and the schedulers run fire times one after another; every second
(six fields) would be a full scan per workflow per second. 5 minutes is the smallest interval cron
users commonly ask for (and the floor of other hosted schedulers, e.g. GitHub Actions); a segment's
own measures (`days_inactive`, tiers) do not change faster. Operators may lower it
(DRIPPULSE_SCHEDULE_MIN_INTERVAL_S)."""
_RANDOM = re.compile(r"(^|[\s,/-])R($|[\s,/-])", re.IGNORECASE)


def check_cron(expression: str) -> str:
    """Five fields (minute hour day month weekday), or six with seconds last. No `R` (croniter's
    random value): each process would draw its own, so fire times would differ between processes."""
    if len(expression.split()) not in (5, 6) or _RANDOM.search(expression) or not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a cron expression of 5 fields (or 6, seconds last)")
    return expression


def shortest_interval_s(expression: str) -> int:
    """The shortest time between two fire times, counting every day as one that fires: a day's last
    fire time and the next day's first are that close when two days in a row fire. From the time
    fields, not by iterating (every second is 86,400 fire times a day); the day fields only remove
    fire times, so they never shorten an interval."""
    fields = croniter(expression).expanded
    minutes, hours = _values(fields[0], 60), _values(fields[1], 24)
    seconds = _values(fields[5], 60) if len(fields) > 5 else [0]
    day = [h * 3600 + m * 60 + s for h, m, s in itertools.product(hours, minutes, seconds)]
    return min(later - earlier for earlier, later in itertools.pairwise([*day, day[0] + 86_400]))


def _values(field: list[int | str], count: int) -> list[int]:
    return list(range(count)) if field == ["*"] else sorted(int(value) for value in field)


def check_frequency(expression: str, floor_s: int) -> str:
    interval = shortest_interval_s(expression)
    if interval < floor_s:
        raise ValueError(
            f"{expression!r} fires {_duration(interval)} apart; "
            f"a schedule fires at most once every {_duration(floor_s)}"
        )
    return expression


def _duration(seconds: int) -> str:
    if seconds % 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def due_fire(expression: str, timezone: str, now_ms: int, period_s: int) -> int:
    """The fire time a scheduler runs when it looks at `now_ms`: the first fire time of the
    `period_s`-long stretch of epoch time that the latest one falls in. So a schedule stored before
    the floor existed (or by any path that skipped validation) fires at most once per period, the
    same fire times in every process, and a look that comes late in a period (a tick held up by a
    slow segment query) still finds the period's first fire time rather than a later one it would
    have to skip. A schedule that keeps the floor has one fire time per period: its latest."""
    latest = latest_fire(expression, timezone, now_ms)
    period_ms = period_s * 1000
    return _first_fire_from(expression, timezone, latest - latest % period_ms)


def _first_fire_from(expression: str, timezone: str, from_ms: int) -> int:
    """The first fire time at or after `from_ms`, a whole second (croniter's next time is strictly
    after its start)."""
    start = datetime.fromtimestamp(from_ms // 1000 - 1, UTC).astimezone(ZoneInfo(timezone))
    fired: datetime = croniter(expression, start).get_next(datetime)
    return round(fired.timestamp() * 1000)


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
