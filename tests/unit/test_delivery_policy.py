"""Delivery rules: success, retry timing with jitter, giving up, disabling endpoints."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.delivery_policy import (
    DEFAULT_RETRY_SCHEDULE_S,
    JITTER,
    AttemptResult,
    DeliveryStatus,
    failing_too_long,
    judge_attempt,
    parse_schedule,
    subscribed,
)

NOW = 1_800_000_000_000


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_any_2xx_is_delivered(code: int) -> None:
    verdict = judge_attempt(1, code, NOW, DEFAULT_RETRY_SCHEDULE_S, random.Random(1))
    assert verdict.result == AttemptResult.SUCCEEDED and verdict.status == DeliveryStatus.DELIVERED
    assert verdict.next_attempt_at_ms is None


@pytest.mark.parametrize("code", [None, 301, 302, 400, 404, 429, 500, 503])
def test_everything_else_is_retried_on_the_schedule(code: int | None) -> None:
    verdict = judge_attempt(2, code, NOW, DEFAULT_RETRY_SCHEDULE_S, random.Random(1))
    assert verdict.result == AttemptResult.RETRYING and verdict.status == DeliveryStatus.PENDING
    assert verdict.next_attempt_at_ms is not None
    assert abs(verdict.next_attempt_at_ms - NOW - 300_000) <= 300_000 * JITTER, "attempt 3 comes 5 min after 2"


def test_gone_fails_at_once_and_disables() -> None:
    verdict = judge_attempt(1, 410, NOW, DEFAULT_RETRY_SCHEDULE_S, random.Random(1))
    assert verdict.status == DeliveryStatus.FAILED and verdict.disable_subscription


def test_the_last_attempt_fails_the_delivery() -> None:
    attempts = len(DEFAULT_RETRY_SCHEDULE_S)
    assert judge_attempt(attempts - 1, 500, NOW, DEFAULT_RETRY_SCHEDULE_S, random.Random(1)).status == "pending"
    last = judge_attempt(attempts, 500, NOW, DEFAULT_RETRY_SCHEDULE_S, random.Random(1))
    assert last.status == DeliveryStatus.FAILED and last.disable_subscription is None


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=12), st.integers(0, 2**32))
def test_delays_stay_within_jitter_of_the_schedule(schedule: list[float], seed: int) -> None:
    rng = random.Random(seed)
    for made in range(1, len(schedule)):
        verdict = judge_attempt(made, None, NOW, tuple(schedule), rng)
        assert verdict.next_attempt_at_ms is not None
        delay = verdict.next_attempt_at_ms - NOW
        assert schedule[made] * 1000 * (1 - JITTER) - 1 <= delay <= schedule[made] * 1000 * (1 + JITTER) + 1


def test_schedule_parsing() -> None:
    assert parse_schedule("0, 5,300") == (0, 5, 300)
    for bad in ("", "1,-1", "a"):
        with pytest.raises(ValueError):
            parse_schedule(bad)


def test_failing_too_long_and_subscription_filter() -> None:
    assert not failing_too_long(None, NOW, 60)
    assert not failing_too_long(NOW - 59_000, NOW, 60)
    assert failing_too_long(NOW - 60_000, NOW, 60)
    assert subscribed([], "lead.qualified") and subscribed(["lead.qualified"], "lead.qualified")
    assert not subscribed(["deal.won"], "lead.qualified")


def test_crm_responses_are_applied_retried_or_refused() -> None:
    from processors.delivery_policy import CrmOutcome, classify_crm_response

    assert classify_crm_response(200) == classify_crm_response(204) == CrmOutcome.APPLIED
    for transient in (None, 408, 409, 425, 429, 500, 502, 503):
        assert classify_crm_response(transient) == CrmOutcome.RETRY, transient
    for permanent in (400, 401, 403, 404, 422):
        assert classify_crm_response(permanent) == CrmOutcome.FAILED, permanent


def test_retry_after_in_seconds_or_as_a_date() -> None:
    from processors.delivery_policy import retry_after_s

    now = 1_800_000_000.0
    assert retry_after_s("3", now, 1, 60) == 3
    assert retry_after_s(None, now, 1, 60) == 1
    assert retry_after_s("soon", now, 2, 60) == 2
    assert retry_after_s("600", now, 1, 60) == 60, "capped"
    assert retry_after_s("-5", now, 1, 60) == 0
    date = "Fri, 15 Jan 2027 08:00:05 GMT"
    at = datetime(2027, 1, 15, 8, 0, 5, tzinfo=UTC).timestamp()
    assert retry_after_s(date, at - 5, 1, 60) == 5
    assert retry_after_s(date, at + 5, 1, 60) == 0, "a date in the past means now"
