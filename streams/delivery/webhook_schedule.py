"""The durable delivery schedule in Redis: what is due when, and which worker holds which delivery.

Kafka is a log, not a timer: a retry due in five hours cannot sit in a partition without blocking the
messages behind it. So the intake moves each delivery off the topic into this schedule and commits;
dispatchers claim due deliveries from here. Claiming moves a delivery's score forward by a lease
instead of removing it, so a worker that dies mid-send loses nothing: the delivery becomes due again
when the lease runs out. Everything survives worker restarts and rebalances because none of it lives
in a worker.

The schedule is one sorted set per endpoint plus an index of endpoints by their earliest due time,
and a claim takes a bounded share from each due endpoint, oldest first, skipping the endpoints the
dispatcher is already saturating. One global queue in due order would hand a dispatcher the burst of
whichever org produced last, all for one endpoint, to be put back again: measured, that was 6.6
claims per delivery on the bench, with 87 % of claimed deliveries deferred.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors import ids
from processors.delivery_policy import DeliveryStatus
from streams.clock import now_ms
from streams.state import state_keys

_ENQUEUE = """
local added = 0
for i = 2, #ARGV, 4 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', ARGV[1] .. ARGV[i + 3], ARGV[i + 2], ARGV[i])
    redis.call('ZADD', KEYS[2], 'LT', ARGV[i + 2], ARGV[i + 3])
    added = added + 1
  end
end
return added
"""
"""ARGV: the per-endpoint schedule prefix, then (delivery_id, task, due ms, webhook_id) per delivery.
The per-endpoint schedules share the index's hash tag, so in Redis Cluster they live on the same
shard although the scripts build their names instead of declaring them as keys."""

_CLAIM = """
local now, limit, per_endpoint, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]), ARGV[5]
local skip = {}
for i = 6, #ARGV do skip[ARGV[i]] = true end
local endpoints = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit + #ARGV - 5)
local tasks = {}
for _, endpoint in ipairs(endpoints) do
  if #tasks >= limit then break end
  if not skip[endpoint] then
    local due = prefix .. endpoint
    local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, math.min(per_endpoint, limit - #tasks))
    for _, id in ipairs(ids) do
      local task = redis.call('HGET', KEYS[2], id)
      if task then
        redis.call('ZADD', due, ARGV[3], id)
        table.insert(tasks, task)
      else
        redis.call('ZREM', due, id)
      end
    end
    local earliest = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
    if #earliest == 0 then
      redis.call('ZREM', KEYS[1], endpoint)
    else
      redis.call('ZADD', KEYS[1], earliest[2], endpoint)
    end
  end
end
return tasks
"""

_TRIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #ids > 0 then
  redis.call('HDEL', KEYS[2], unpack(ids))
  redis.call('ZREM', KEYS[1], unpack(ids))
end
return #ids
"""


@dataclass(slots=True)
class DeliveryTask:
    delivery_id: str
    org_id: str
    webhook_id: str
    message_id: str
    event_type: str
    payload_json: str
    created_at_ms: int
    next_attempt_at_ms: int | None
    status: str = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str = ""
    completed_at_ms: int | None = None

    @classmethod
    def new(
        cls, org_id: str, webhook_id: str, message_id: str, event_type: str, payload_json: str, due_ms: int
    ) -> DeliveryTask:
        return cls(
            delivery_id=ids.webhook_delivery_id(message_id, webhook_id),
            org_id=org_id,
            webhook_id=webhook_id,
            message_id=message_id,
            event_type=event_type,
            payload_json=payload_json,
            created_at_ms=now_ms(),
            next_attempt_at_ms=due_ms,
        )

    def dumps(self) -> bytes:
        return orjson.dumps(self)

    def public_view(self) -> dict[str, Any]:
        """What the API shows about a delivery's current state (the payload stays in the task)."""
        view = dataclasses.asdict(self)
        del view["payload_json"]
        return view


def queue_enqueue(pipe: Any, tasks: list[DeliveryTask]) -> None:
    """Adds new deliveries to a pipeline, sync or async, as one script call. Idempotent: a replayed
    Kafka batch finds each task already stored (pending or finished) and schedules nothing again."""
    if tasks:
        args = [arg for t in tasks for arg in (t.delivery_id, t.dumps(), t.next_attempt_at_ms, t.webhook_id)]
        keys = (state_keys.WEBHOOK_TASKS, state_keys.WEBHOOK_DUE_ENDPOINTS)
        pipe.eval(_ENQUEUE, 2, *keys, state_keys.WEBHOOK_DUE_PREFIX, *args)


def _queue_due(pipe: Any, due: dict[str, dict[str, int]]) -> None:
    """(Re)schedules deliveries, by endpoint: {webhook_id: {delivery_id: due ms}}. An endpoint's index
    entry only ever moves earlier here; a claim corrects it when it finds nothing due."""
    for webhook_id, deliveries in due.items():
        pipe.zadd(state_keys.webhook_due(webhook_id), deliveries)
        pipe.zadd(state_keys.WEBHOOK_DUE_ENDPOINTS, {webhook_id: min(deliveries.values())}, lt=True)


class DeliverySchedule:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._claim = client.register_script(_CLAIM)
        self._trim = client.register_script(_TRIM)

    async def claim(
        self, limit: int, lease_ms: int, per_endpoint: int, saturated: Collection[str] = ()
    ) -> list[DeliveryTask]:
        """Up to `limit` due deliveries, at most `per_endpoint` from each endpoint and none from the
        `saturated` ones, leased to the caller for `lease_ms`, in one script call. A delivery found
        already finished is dropped from the schedule here."""
        now = now_ms()
        keys = [state_keys.WEBHOOK_DUE_ENDPOINTS, state_keys.WEBHOOK_TASKS]
        args: list[str | int] = [now, limit, now + lease_ms, per_endpoint, state_keys.WEBHOOK_DUE_PREFIX, *saturated]
        raws = await self._claim(keys=keys, args=args)
        tasks = [DeliveryTask(**orjson.loads(raw)) for raw in raws]
        stale = [t for t in tasks if t.status != DeliveryStatus.PENDING]
        if stale:
            pipe = self.pipeline()
            for task in stale:
                pipe.zrem(state_keys.webhook_due(task.webhook_id), task.delivery_id)
            await pipe.execute()
        return [t for t in tasks if t.status == DeliveryStatus.PENDING]

    @staticmethod
    def queue_updates(pipe: Any, tasks: list[DeliveryTask]) -> None:
        """Stores tasks after their attempts, a few commands per endpoint in the batch: pending ones
        rescheduled, finished ones off the schedule and onto the retention clock."""
        if not tasks:
            return
        pipe.hset(state_keys.WEBHOOK_TASKS, mapping={t.delivery_id: t.dumps() for t in tasks})
        pending: defaultdict[str, dict[str, int]] = defaultdict(dict)
        finished: defaultdict[str, list[str]] = defaultdict(list)
        done: dict[str, int] = {}
        for t in tasks:
            if t.status == DeliveryStatus.PENDING:
                pending[t.webhook_id][t.delivery_id] = t.next_attempt_at_ms or now_ms()
            else:
                finished[t.webhook_id].append(t.delivery_id)
                done[t.delivery_id] = t.completed_at_ms or now_ms()
        _queue_due(pipe, pending)
        for webhook_id, delivery_ids in finished.items():
            pipe.zrem(state_keys.webhook_due(webhook_id), *delivery_ids)
        if done:
            pipe.zadd(state_keys.WEBHOOK_DONE, done)

    @staticmethod
    def queue_defer(pipe: Any, tasks: list[DeliveryTask], until_ms: int) -> None:
        """Gives claimed deliveries back without attempting them (their endpoint is at its cap)."""
        due: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for t in tasks:
            due[t.webhook_id][t.delivery_id] = until_ms
        _queue_due(pipe, due)

    def pipeline(self) -> Any:
        return self._redis.pipeline(transaction=False)

    async def enqueue(self, task: DeliveryTask) -> None:
        pipe = self.pipeline()
        queue_enqueue(pipe, [task])
        await pipe.execute()

    async def get(self, org_id: str, delivery_id: str) -> DeliveryTask | None:
        """Only the caller's organization's deliveries: another org's id reads as absent."""
        raw = await self._redis.hget(state_keys.WEBHOOK_TASKS, delivery_id)
        task = DeliveryTask(**orjson.loads(raw)) if raw else None
        return task if task is not None and task.org_id == org_id else None

    async def restart(self, task: DeliveryTask) -> DeliveryTask:
        """Replay: the same delivery (same webhook-id) gets a fresh run of the retry schedule, now."""
        due = now_ms()
        restarted = dataclasses.replace(
            task, status=DeliveryStatus.PENDING, attempts=0, next_attempt_at_ms=due, completed_at_ms=None
        )
        pipe = self.pipeline()
        self.queue_updates(pipe, [restarted])
        pipe.zrem(state_keys.WEBHOOK_DONE, task.delivery_id)
        await pipe.execute()
        return restarted

    async def trim(self, retention_s: int, limit: int = 1000) -> int:
        """Forgets up to `limit` deliveries finished longer than `retention_s` ago; how many."""
        keys = [state_keys.WEBHOOK_DONE, state_keys.WEBHOOK_TASKS]
        return int(await self._trim(keys=keys, args=[now_ms() - retention_s * 1000, limit]))
