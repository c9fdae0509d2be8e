"""Publishing a manual run: leads as inbound events (trigger `manual`) that only one workflow
evaluates, keyed by `Idempotency-Key`. Workflows' manual runs and agents' `execute` both publish
through here, so a retry is the same run whichever route it came through.

The run's ids derive from (org, workflow, key, lead), a random key standing in when none is sent,
so a retry with the key publishes nothing new, and a retry of an unacknowledged publish (503)
publishes the same events, whose copies collapse downstream.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Response

from api.event_publisher import EventPublisher, PublishFailed
from api.problems import RETRY_AFTER, Problem
from api.run_keys import KeyedRun, RunKeys
from processors import ids
from processors.events import EventType
from streams.clock import now_ms

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes a retry safe: the same key with the same body is the same run (the same answer and "
        "ids, `Idempotent-Replayed: true`, nothing run again) for 24 hours; the same key with another body is "
        "422 `idempotency-key-reused`. Scoped to the org and the workflow (or agent). 1-255 visible ASCII "
        "characters, e.g. a UUID. Without it, every request is a new run.",
    ),
]


REPLAYED = "Idempotent-Replayed"


def is_replay(response: Response) -> bool:
    """Whether the answer is an earlier run's (nothing was published for this request)."""
    return response.headers.get(REPLAYED) == "true"


def run_id(org_id: str, workflow_id: str, idempotency_key: str | None) -> str:
    return ids.manual_run_id(org_id, workflow_id, idempotency_key or uuid.uuid4().hex)


async def replayed(
    run_keys: RunKeys, org_id: str, workflow_id: str, key: str | None, request: str, response: Response
) -> dict[str, Any] | None:
    """The earlier answer for the key when its run was published (nothing is run again)."""
    if key is None:
        return None
    earlier = await run_keys.find(org_id, workflow_id, key)
    return _answer_of(earlier, request, response) if earlier is not None else None


def _answer_of(earlier: KeyedRun, request: str, response: Response) -> dict[str, Any] | None:
    """The earlier answer when its run was published; None while it is not (a publish in flight, or
    one that failed), so this request publishes the same events; a problem when the key named
    another body."""
    if earlier.fingerprint != request:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency key reused",
            "this Idempotency-Key was sent with another body here; use a new key for a new run",
        )
    if not earlier.published:
        return None
    response.headers[REPLAYED] = "true"
    return earlier.answer


async def publish(
    run_keys: RunKeys,
    publisher: EventPublisher,
    response: Response,
    org_id: str,
    workflow_id: str,
    key: str | None,
    request: str,
    answer: dict[str, Any],
    leads: Callable[[dict[str, Any]], list[tuple[str, dict[str, Any]]]],
    event_type: EventType,
) -> dict[str, Any]:
    """Publishes the run whose answer is `answer` (or the one already bound to the key) and returns
    its answer. `leads(answer)`: the (event id, lead) of each event of the run."""
    run = KeyedRun(request, answer, now_ms(), published=False)
    if key is not None:
        earlier = await run_keys.bind(org_id, workflow_id, key, run)
        if earlier is not None:
            if (replay := _answer_of(earlier, request, response)) is not None:
                return replay
            run = earlier
    records = [
        {
            "event_id": event_id,
            "org_id": org_id,
            "event_type": event_type.avro_symbol,
            "occurred_at_ms": run.occurred_at_ms,
            "source": "manual_run",
            "lead": lead,
            "crm_object": None,
            "previous": None,
            "trigger": "MANUAL",
            "workflow_id": workflow_id,
        }
        for event_id, lead in leads(run.answer)
    ]
    try:
        await publisher.publish(records)
    except PublishFailed as exc:
        raise Problem(
            503,
            "broker-unavailable",
            "Events not accepted",
            "the broker did not acknowledge them; send the same body with the same Idempotency-Key "
            "after Retry-After seconds",
            headers={"Retry-After": RETRY_AFTER},
        ) from exc
    if key is not None:
        await run_keys.published(org_id, workflow_id, key, run)
    return run.answer
