"""Redis key layout: the hot, derived and scheduling state of the API and the workers (the control
plane itself is in PostgreSQL).

Per-org keys carry the org id in a hash tag, `dp:{org_id}:...`, so Redis Cluster places all of one
organization's keys on one shard and per-org pipelines never cross slots.
"""

from __future__ import annotations


def event_seen(org_id: str, event_id: str) -> str:
    return f"dp:{{{org_id}}}:evt:{event_id}"


def manual_run_key(org_id: str, workflow_id: str, idempotency_key: str) -> str:
    """JSON of the manual run an `Idempotency-Key` named (api/run_keys.py); the key is the client's,
    scoped to one workflow of one org."""
    return f"dp:{{{org_id}}}:runkey:{workflow_id}:{idempotency_key}"


def round_robin_pointers(org_id: str) -> str:
    """Hash `workflow_id/pool` -> position of that rotation, for all of an org's workflows: a batch
    writes it with one HSET per org (a key per workflow cost a command per workflow and batch)."""
    return f"dp:{{{org_id}}}:rr"


def pointer_field(workflow_id: str, pool: str) -> str:
    """Workflow ids never contain `/` (`wf_` + hex), so the first `/` separates the two."""
    return f"{workflow_id}/{pool}"


def owner_loads(org_id: str, day: str) -> str:
    """Hash owner -> leads assigned that UTC day, for daily capacity caps."""
    return f"dp:{{{org_id}}}:load:{day}"


def accounts(org_id: str) -> str:
    """Hash email domain -> owner holding that account."""
    return f"dp:{{{org_id}}}:accounts"


def lead_state(org_id: str) -> str:
    """Hash lead_id -> JSON {"owners": {workflow_id: owner}, "enrollments": {workflow_id: [count,
    enrolling event_id, active, execution_id]}, "memory": {"values": {path: text}, "found": [[event_id, {path:
    text}], ...]}}: what replays and later events of a lead must find. One hash per org, so a batch
    reads it with one HMGET per org."""
    return f"dp:{{{org_id}}}:leads"


def released_runs(org_id: str) -> str:
    """Hash "workflow_id/lead_id" -> the execution id of the lead's last paused run that ended (the
    orchestrator writes it when a resumed run finishes; the qualifier, sole writer of `lead_state`,
    reads it to know the lead is no longer enrolled)."""
    return f"dp:{{{org_id}}}:released"


def released_field(workflow_id: str, lead_id: str) -> str:
    return f"{workflow_id}/{lead_id}"


def webhook_failing_since(org_id: str) -> str:
    """Hash webhook_id -> ms of the first failed attempt since the endpoint's last success."""
    return f"dp:{{{org_id}}}:webhooks:failing"


WEBHOOK_DUE_ENDPOINTS = "dp:{webhooks}:endpoints:due"
"""Sorted set webhook_id -> ms the endpoint's earliest delivery is due (or was, when the index is
behind): which endpoints have work, oldest first."""

WEBHOOK_DUE_PREFIX = "dp:{webhooks}:due:"


def webhook_due(webhook_id: str) -> str:
    """Sorted set delivery_id -> ms its next attempt is due, one per endpoint. Claiming moves the score
    forward by a lease, so a delivery claimed by a worker that dies becomes due again when the lease
    runs out. Same hash tag as the index: the claim script reads both."""
    return WEBHOOK_DUE_PREFIX + webhook_id


WEBHOOK_TASKS = "dp:{webhooks}:tasks"
"""Hash delivery_id -> the delivery's state (JSON, carrying its org_id): message, attempts, status.
One hash (not a key per delivery) so a batch of claims or updates is one command, and one hash tag
with the schedules so the claim script may read it in Redis Cluster too."""

WEBHOOK_DONE = "dp:{webhooks}:done"
"""Sorted set delivery_id -> ms it finished; finished deliveries are dropped after the retention."""


def crm_bucket(org_id: str, connection_id: str) -> str:
    """The connection's token bucket: {tokens, updated_ms}, shared by every CRM worker."""
    return f"dp:{{{org_id}}}:crm:bucket:{connection_id}"


def crm_applied(org_id: str, connection_id: str, command_id: str) -> str:
    """Set once a command is applied through a connection, so a replayed batch does not send it again."""
    return f"dp:{{{org_id}}}:crm:done:{connection_id}:{command_id}"


def crm_parked(org_id: str, connection_id: str, lead_id: str) -> str:
    """List of one lead's commands (JSON, oldest first) waiting for a connection that kept failing."""
    return f"dp:{{{org_id}}}:crm:parked:{connection_id}:{lead_id}"


def crm_connection_failing(org_id: str, connection_id: str) -> str:
    """Set (with a time to live) while a connection keeps failing: later batches park its commands
    without trying them, instead of each paying the quick attempts again."""
    return f"dp:{{{org_id}}}:crm:failing:{connection_id}"


def crm_failed(org_id: str, result_id: str) -> str:
    """A command that failed for good through one connection (JSON), kept so it can be retried."""
    return f"dp:{{{org_id}}}:crm:failed:{result_id}"


CRM_PARKED = "dp:{crm}:parked"
"""Sorted set "org \\x1f connection \\x1f lead" -> ms its parked commands are next retried (leased
forward while a worker retries them)."""

CRM_PARKED_ROUNDS = "dp:{crm}:parked:rounds"
"""Hash member -> how many retry rounds of its parked commands have failed in a row."""


def model_leads(org_id: str) -> str:
    """Hash lead_id -> JSON {"p": partition, "v": [[offset, describing fields], ...], "o": [[event_id,
    offset], ...]}: what the model trainer keeps of each lead (processors/lead_snapshots.py), written
    by the trainer alone."""
    return f"dp:{{{org_id}}}:model:leads"


def invocations(org_id: str, workflow_id: str) -> str:
    """Hash epoch second -> invocations of the workflow (an agent's backing workflow) in that second,
    the last minute's only: what a budget's `executions_per_minute` is checked against."""
    return f"dp:{{{org_id}}}:invocations:{workflow_id}"
