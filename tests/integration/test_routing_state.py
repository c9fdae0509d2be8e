"""Processor state in real Redis: caps, recorded owners and enrollments survive restarts and replays."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
import redis

from drippulse.settings import Settings
from processors.compiler import compile_workflow
from processors.events import EventType
from processors.model import WorkflowDefinition
from streams.state import state_keys
from streams.state.processor_state import LOAD_TTL_S, ProcessorStateStore

pytestmark = pytest.mark.stack
DAY_MS = 1_764_288_000_000  # 2025-11-28T00:00:00Z


def _events(org_id: str, leads: range) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{n}",
            "org_id": org_id,
            "event_type": EventType.LEAD_CREATED.value,
            "occurred_at_ms": DAY_MS + n,
            "lead": {"lead_id": f"lead-{n}", "email": f"p{n}@gmail.com"},
        }
        for n in leads
    ]


def _batch(store: ProcessorStateStore, workflow: Any, events: list[dict[str, Any]]) -> list[str]:
    """What the qualifier does per batch: load, evaluate, save."""
    state, enrollments, memory = store.load(events, {events[0]["org_id"]: (workflow,)})
    owners = []
    for event in events:
        if enrollments.admit(workflow, event, event["lead"]["lead_id"])[0]:
            execution = workflow.evaluate(event, state)
            enrollments.finish(execution)
            owners.append(execution.owner)
    store.save(state, enrollments, memory)
    return owners


def test_caps_and_recorded_owners_hold_across_a_restart_and_a_replay(stack: Any, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    org_id = f"org-{uuid.uuid4().hex[:8]}"
    workflow = compile_workflow(
        f"wf-{org_id}",
        1,
        WorkflowDefinition.model_validate(
            {
                "trigger": {"event_types": ["lead.created"]},
                "steps": [
                    {
                        "type": "route",
                        "fallback_owner": "queue",
                        "team": [{"owner": "a", "daily_cap": 2}, {"owner": "b", "weight": 2, "daily_cap": 3}],
                    }
                ],
            }
        ),
    )

    before = _batch(ProcessorStateStore(client), workflow, _events(org_id, range(0, 3)))
    restarted = ProcessorStateStore(client)
    after = _batch(restarted, workflow, _events(org_id, range(3, 8)))

    counts = Counter(before + after)
    assert counts == {"a": 2, "b": 3, "queue": 3}, counts
    assert _batch(restarted, workflow, _events(org_id, range(0, 3))) == before, "a replay re-reads, not re-rolls"
    assert Counter(_batch(restarted, workflow, _events(org_id, range(8, 10)))) == {"queue": 2}

    again = [{**event, "event_id": f"again-{event['event_id']}"} for event in _events(org_id, range(0, 3))]
    assert _batch(ProcessorStateStore(client), workflow, again) == [], "enrolled once, even after a restart"


def test_an_account_owner_holds_a_domain_across_batches_and_a_restart(stack: Any, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    org_id = f"org-{uuid.uuid4().hex[:8]}"
    definition = {
        "trigger": {"event_types": ["lead.created"]},
        "steps": [{"type": "route", "account_match": True, "team": ["ann", "ben", "cat"], "fallback_owner": "q"}],
    }
    workflow = compile_workflow(f"wf-{org_id}", 1, WorkflowDefinition.model_validate(definition))
    events = _events(org_id, range(4))
    for n, event in enumerate(events):
        event["lead"]["email"] = f"buyer{n}@{'acme.io' if n in (0, 3) else f'co{n}.example'}"

    assert _batch(ProcessorStateStore(client), workflow, events[:1]) == ["ann"]
    later = [events[3], events[1], events[2]]
    assert _batch(ProcessorStateStore(client), workflow, later) == ["ann", "ben", "cat"], (
        "a restarted worker finds acme.io held by ann; the other domains take the rotation"
    )


def test_a_rotation_continues_where_it_stopped_after_a_restart(stack: Any, settings: Settings) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    org_id = f"org-{uuid.uuid4().hex[:8]}"
    route = {"type": "route", "fallback_owner": "queue", "team": [{"owner": o} for o in ("a", "b", "c")]}
    definition = {"trigger": {"event_types": ["lead.created"]}, "steps": [route]}
    first, second = (
        compile_workflow(f"wf-{n}-{org_id}", 1, WorkflowDefinition.model_validate(definition)) for n in (1, 2)
    )

    assert _batch(ProcessorStateStore(client), first, _events(org_id, range(0, 2))) == ["a", "b"]
    assert _batch(ProcessorStateStore(client), second, _events(org_id, range(0, 1))) == ["a"]
    restarted = ProcessorStateStore(client)
    assert _batch(restarted, first, _events(org_id, range(2, 4))) == ["c", "a"], "each workflow keeps its own place"
    assert _batch(restarted, second, _events(org_id, range(1, 2))) == ["b"]
    assert 0 < client.ttl(state_keys.owner_loads(org_id, "2025-11-28")) <= LOAD_TTL_S, "a day's loads expire"
