"""The rules of outbound delivery: what counts as success, when to retry, when to give up on an endpoint.

Shared by the webhook delivery worker and (for retries and backoff) the CRM connectors. Pure: the
clock and the randomness of jitter are passed in, so every rule is testable without waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum

DEFAULT_RETRY_SCHEDULE_S: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
"""Delay before each attempt: the first is immediate, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""

JITTER = 0.1
"""Each delay moves by up to ±10 %, so endpoints that failed together are not retried together."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its next attempt (the first, or a retry)."""
    DELIVERED = "delivered"
    FAILED = "failed"
    """Final: every attempt failed, the endpoint answered 410 Gone, or the subscription is gone."""


class AttemptResult(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Verdict:
    result: AttemptResult
    status: DeliveryStatus
    next_attempt_at_ms: int | None
    disable_subscription: str | None
    """Why the subscription must be disabled now, or None."""


def parse_schedule(text: str) -> tuple[float, ...]:
    """A schedule from its settings form, "0,5,300": at least one attempt, no negative delays."""
    delays = tuple(float(part) for part in text.split(",") if part.strip())
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError("a retry schedule needs at least one delay, none negative")
    return delays


def is_success(status_code: int | None) -> bool:
    """Only a 2xx answer is a delivery; redirects are not followed, so a 3xx is a failure too."""
    return status_code is not None and 200 <= status_code < 300


def jittered_delay_ms(delay_s: float, rng: random.Random) -> int:
    return int(delay_s * 1000 * (1 + rng.uniform(-JITTER, JITTER)))


def judge_attempt(
    attempts_made: int,
    status_code: int | None,
    now_ms: int,
    schedule: tuple[float, ...],
    rng: random.Random,
) -> Verdict:
    """What follows an attempt; `attempts_made` counts it. Attempt n+1 waits `schedule[n]`."""
    if is_success(status_code):
        return Verdict(AttemptResult.SUCCEEDED, DeliveryStatus.DELIVERED, None, None)
    if status_code == 410:
        return Verdict(AttemptResult.FAILED, DeliveryStatus.FAILED, None, "the endpoint answered 410 Gone")
    if attempts_made >= len(schedule):
        return Verdict(AttemptResult.FAILED, DeliveryStatus.FAILED, None, None)
    next_at = now_ms + jittered_delay_ms(schedule[attempts_made], rng)
    return Verdict(AttemptResult.RETRYING, DeliveryStatus.PENDING, next_at, None)


def failing_too_long(failing_since_ms: int | None, now_ms: int, disable_after_s: float) -> bool:
    """An endpoint that has failed every attempt since `failing_since_ms` for the whole period is
    disabled: retrying it forever only delays the moment its owner notices."""
    return failing_since_ms is not None and now_ms - failing_since_ms >= disable_after_s * 1000


def subscribed(event_types: list[str], event_type: str) -> bool:
    """An empty filter means every event type."""
    return not event_types or event_type in event_types


class CrmOutcome(StrEnum):
    APPLIED = "applied"
    RETRY = "retry"
    FAILED = "failed"
    """Permanent: the CRM refused the command itself (a 4xx other than 408, 409, 425, 429)."""


_TRANSIENT_4XX = frozenset({408, 409, 425, 429})


def classify_crm_response(status_code: int | None) -> CrmOutcome:
    """No answer, a 5xx, or a transient 4xx (timeout, conflict, too early, rate limited) is retried;
    any other 4xx is the CRM saying the command is wrong, and retrying it cannot help."""
    if is_success(status_code):
        return CrmOutcome.APPLIED
    if status_code is None or status_code >= 500 or status_code in _TRANSIENT_4XX:
        return CrmOutcome.RETRY
    return CrmOutcome.FAILED


def retry_after_s(header: str | None, now_s: float, default_s: float, cap_s: float) -> float:
    """The wait a `Retry-After` header asks for, in delta-seconds or as an HTTP date; the default
    when absent or unreadable; never negative and never above `cap_s`."""
    if header is None or not header.strip():
        return min(default_s, cap_s)
    text = header.strip()
    try:
        wait = float(text)
    except ValueError:
        try:
            wait = parsedate_to_datetime(text).timestamp() - now_s
        except (TypeError, ValueError):
            return min(default_s, cap_s)
    return max(0.0, min(wait, cap_s))
