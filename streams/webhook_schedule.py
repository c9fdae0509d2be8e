"""The durable delivery schedule in Redis: what is due when, and which worker holds which delivery.

Kafka is a log, not a timer: a retry due in five hours cannot sit in a partition without blocking the
messages behind it. So the intake moves each delivery off the topic into this schedule (one sorted
set scored by due time, one key per delivery) and commits; dispatchers claim due deliveries from here.
Claiming moves a delivery's score forward by a lease instead of removing it, so a worker that dies
mid-send loses nothing: the delivery becomes due again when the lease runs out. Everything survives
worker restarts and rebalances because none of it lives in a worker.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from processors import ids
from processors.delivery_policy import DeliveryStatus
from streams import state_keys

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], member) end
return due
"""


def now_ms() -> int:
    return int(time.time() * 1000)


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

    @property
    def key(self) -> str:
        return state_keys.webhook_delivery(self.org_id, self.delivery_id)

    @property
    def member(self) -> str:
        """Delivery id first: deliveries due at the same moment are claimed in the order of their
        members, and a digest spreads them evenly over endpoints instead of one org's block at a time."""
        return f"{self.delivery_id}/{self.org_id}"

    def dumps(self) -> bytes:
        return orjson.dumps(self)

    def public_view(self) -> dict[str, Any]:
        """What the API shows about a delivery's current state (the payload stays in the task)."""
        view = dataclasses.asdict(self)
        del view["payload_json"]
        return view


def queue_enqueue(pipe: Any, task: DeliveryTask, retention_s: int) -> None:
    """Adds a new delivery to a pipeline, sync or async. Idempotent: a replayed Kafka batch finds the
    task already present and its member already scheduled (or already done), and changes neither."""
    pipe.set(task.key, task.dumps(), nx=True, ex=retention_s)
    pipe.zadd(state_keys.WEBHOOK_SCHEDULE, {task.member: task.next_attempt_at_ms}, nx=True)


class DeliverySchedule:
    def __init__(self, client: aioredis.Redis, retention_s: int) -> None:
        self._redis = client
        self._retention_s = retention_s
        self._claim = client.register_script(_CLAIM)

    async def claim(self, limit: int, lease_ms: int) -> list[DeliveryTask]:
        """Up to `limit` due deliveries, leased to the caller for `lease_ms`. Members whose task has
        expired or already finished (a replayed enqueue) are dropped from the schedule here."""
        now = now_ms()
        members = await self._claim(keys=[state_keys.WEBHOOK_SCHEDULE], args=[now, limit, now + lease_ms])
        if not members:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for member in members:
            delivery_id, org_id = member.decode().split("/", 1)
            pipe.get(state_keys.webhook_delivery(org_id, delivery_id))
        tasks, stale = [], []
        for member, raw in zip(members, await pipe.execute(), strict=True):
            task = DeliveryTask(**orjson.loads(raw)) if raw else None
            if task is None or task.status != DeliveryStatus.PENDING:
                stale.append(member)
            else:
                tasks.append(task)
        if stale:
            await self._redis.zrem(state_keys.WEBHOOK_SCHEDULE, *stale)
        return tasks

    def queue_update(self, pipe: Any, task: DeliveryTask) -> None:
        """Stores a task after an attempt: rescheduled while pending, off the schedule once final."""
        pipe.set(task.key, task.dumps(), ex=self._retention_s)
        if task.status == DeliveryStatus.PENDING:
            pipe.zadd(state_keys.WEBHOOK_SCHEDULE, {task.member: task.next_attempt_at_ms})
        else:
            pipe.zrem(state_keys.WEBHOOK_SCHEDULE, task.member)

    def queue_defer(self, pipe: Any, task: DeliveryTask, until_ms: int) -> None:
        """Gives a claimed delivery back without attempting it (its endpoint is at its concurrency cap)."""
        pipe.zadd(state_keys.WEBHOOK_SCHEDULE, {task.member: until_ms})

    def pipeline(self) -> Any:
        return self._redis.pipeline(transaction=False)

    async def enqueue(self, task: DeliveryTask) -> None:
        pipe = self.pipeline()
        queue_enqueue(pipe, task, self._retention_s)
        await pipe.execute()

    async def get(self, org_id: str, delivery_id: str) -> DeliveryTask | None:
        raw = await self._redis.get(state_keys.webhook_delivery(org_id, delivery_id))
        return DeliveryTask(**orjson.loads(raw)) if raw else None

    async def restart(self, task: DeliveryTask) -> DeliveryTask:
        """Replay: the same delivery (same webhook-id) gets a fresh run of the retry schedule, now."""
        due = now_ms()
        restarted = dataclasses.replace(
            task, status=DeliveryStatus.PENDING, attempts=0, next_attempt_at_ms=due, completed_at_ms=None
        )
        pipe = self.pipeline()
        self.queue_update(pipe, restarted)
        await pipe.execute()
        return restarted

    async def due_count(self) -> int:
        return int(await self._redis.zcard(state_keys.WEBHOOK_SCHEDULE))
