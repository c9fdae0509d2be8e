"""Enrollments of paused runs that nothing holds any more (their suspension was lost with the
embedded broker at `dev down`) are released when a new broker starts, against the real Redis and
PostgreSQL. The whole `dev down` / `dev up` story is tests/e2e/test_restart_paused.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import redis
from sqlalchemy import text

from drippulse.settings import Settings
from processors.compiler import compile_workflow
from processors.model import WorkflowDefinition
from streams.orchestrator.orphaned_enrollments import release_orphans
from streams.state import state_keys
from streams.state.control_plane import connect
from streams.state.processor_state import ProcessorStateStore
from tests.control_plane import NOBODYS_PARTITION
from tests.stack import ApiServer

pytestmark = pytest.mark.stack
APPROVAL = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [{"type": "approval", "approvers": ["role:approver"]}, {"type": "action", "action": "crm_update"}],
}


@pytest.fixture
def own_redis(settings: Settings) -> Iterator[redis.Redis]:
    """A database of the stack's Redis that no worker uses: the sweep reads every lead's state."""
    client = redis.Redis.from_url(settings.redis_url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    yield client
    client.flushdb()


def test_a_lead_whose_paused_run_nothing_holds_is_released_and_one_held_stays_enrolled(
    org_factory: Any, settings: Settings, api_server: ApiServer, own_redis: redis.Redis
) -> None:
    org_id = org_factory()["org_id"]
    workflow = compile_workflow("wf_orphans", 1, WorkflowDefinition.model_validate(APPROVAL))
    held, lost = f"ex-held-{uuid.uuid4()}", f"ex-lost-{uuid.uuid4()}"
    enrolled = {"lost": [1, "e-1", True, lost], "held": [1, "e-2", True, held], "done": [1, "e-3", False, "ex-done"]}
    own_redis.hset(
        state_keys.lead_state(org_id),
        mapping={lead: orjson.dumps({"enrollments": {workflow.workflow_id: e}}) for lead, e in enrolled.items()},
    )
    engine = connect(settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO held_executions (execution_id, org_id, partition, kind, step, due_at, suspension) "
                "VALUES (:id, :org, :partition, 'approval', '0', :due, '{}')"
            ),
            {"id": held, "org": org_id, "partition": NOBODYS_PARTITION, "due": datetime.now(UTC)},
        )

    assert release_orphans(own_redis, engine) == 1
    assert own_redis.hgetall(state_keys.released_runs(org_id)) == {b"wf_orphans/lost": lost.encode()}
    events = [
        {"event_id": f"later-{lead}", "org_id": org_id, "event_type": "lead.created", "lead": {"lead_id": lead}}
        for lead in enrolled
    ]
    _, enrollments, _ = ProcessorStateStore(own_redis).load(events, {org_id: (workflow,)})
    active = {lead for (_, _, lead), e in enrollments.enrollments.items() if e.active}
    assert active == {"held"}, "the qualifier lets the lead whose run was lost enroll again"
    engine.dispose()
