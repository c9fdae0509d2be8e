"""WebhookDispatcher: claims due deliveries from the schedule and sends them, many at once.

One asyncio loop keeps up to `max_in_flight` requests open over a pooled aiohttp session. Nothing waits
on one message: each claimed delivery is its own task, and the loop claims more as slots free up. An
endpoint already holding `endpoint_concurrency` requests queues as many more locally, and any further
deliveries go back to the schedule for a moment, so one slow endpoint cannot occupy the slots every
other endpoint needs.

Outcomes are recorded in batches: the attempt records go to drip.webhooks.attempts (and on to
ClickHouse) and are acknowledged by the broker first, then the schedule is updated in one Redis
pipeline. A crash between the two re-sends a delivery after its lease: at-least-once, which is what
the stable `webhook-id` is for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from confluent_kafka import Producer
from standardwebhooks import Webhook

from processors.delivery_policy import AttemptResult, DeliveryStatus, Verdict, failing_too_long, judge_attempt
from streams import state_keys
from streams.clock import now_ms
from streams.kafka import produce_waiting
from streams.serde import AvroSerde
from streams.ssrf_guard import GuardedResolver, UnsafeDestination, refuse_unsafe_literal
from streams.webhook_schedule import DeliverySchedule, DeliveryTask
from streams.webhook_subscriptions import WebhookSubscriptions

log = logging.getLogger(__name__)

USER_AGENT = "DripPulse-Webhooks/0.1"


@dataclass(frozen=True)
class DispatchConfig:
    retry_schedule_s: tuple[float, ...]
    timeout_s: float
    max_in_flight: int
    endpoint_concurrency: int
    disable_after_s: float
    response_excerpt_bytes: int
    allow_loopback: bool
    retention_s: int
    poll_interval_s: float = 0.05
    defer_ms: int = 250
    subscription_ttl_s: float = 1.0

    @property
    def lease_ms(self) -> int:
        """Longer than a delivery can be held: one attempt's wait in its endpoint's local queue (at
        most the queue's length of attempts ahead, `endpoint_concurrency` at a time: one timeout) plus
        its own, so a live worker always finishes before its lease ends."""
        return int((2 * self.timeout_s + 5) * 1000)


@dataclass(frozen=True, slots=True)
class Response:
    status_code: int | None
    latency_ms: int
    error: str
    excerpt: str


@dataclass(slots=True)
class Finished:
    task: DeliveryTask
    attempt: dict[str, Any]
    verdict: Verdict


class Endpoints:
    """Subscriptions and their signers, re-read from Redis at most once per `ttl_s` per org."""

    def __init__(self, store: WebhookSubscriptions, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._orgs: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._signers: dict[str, Webhook] = {}
        self._reloading: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def find(self, org_id: str, webhook_id: str) -> tuple[dict[str, Any], list[Webhook]] | None:
        record = (await self._subscriptions(org_id)).get(webhook_id)
        if record is None:
            return None
        return record, [self._signer(secret["sealed"]) for secret in record["secrets"]]

    async def _subscriptions(self, org_id: str) -> dict[str, dict[str, Any]]:
        """One reload per org at a time: the hundreds of attempts that find the cache stale at once
        wait for the same read instead of each making it."""
        loaded_at, subscriptions = self._orgs.get(org_id, (0.0, {}))
        if time.monotonic() - loaded_at <= self._ttl_s:
            return subscriptions
        async with self._reloading[org_id]:
            loaded_at, subscriptions = self._orgs.get(org_id, (0.0, {}))
            if time.monotonic() - loaded_at > self._ttl_s:
                subscriptions = {r["id"]: r for r in await self._store.list(org_id)}
                self._orgs[org_id] = (time.monotonic(), subscriptions)
            return subscriptions

    def _signer(self, sealed: str) -> Webhook:
        """Opening a sealed secret costs a Fernet decryption; each is opened once per process."""
        signer = self._signers.get(sealed)
        if signer is None:
            signer = self._signers[sealed] = Webhook(self._store.open_secret(sealed))
        return signer

    def forget(self, org_id: str) -> None:
        self._orgs.pop(org_id, None)


def sign(signers: list[Webhook], message_id: str, timestamp: datetime, body: str) -> str:
    """Standard Webhooks: space-separated `v1,<base64>` signatures, one per valid secret (rotation)."""
    return " ".join(signer.sign(message_id, timestamp, body) for signer in signers)


class WebhookDispatcher:
    def __init__(
        self,
        schedule: DeliverySchedule,
        subscriptions: WebhookSubscriptions,
        producer: Producer,
        attempts: tuple[AvroSerde, str],
        config: DispatchConfig,
    ) -> None:
        self._schedule = schedule
        self._subscriptions = subscriptions
        self._endpoints = Endpoints(subscriptions, config.subscription_ttl_s)
        self._producer = producer
        self._attempts, self._attempts_topic = attempts
        self._config = config
        self._rng = random.Random()
        self._busy: Counter[str] = Counter()
        self._waiting: defaultdict[str, deque[DeliveryTask]] = defaultdict(deque)
        """Claimed deliveries whose endpoint is at its concurrency limit, up to the limit again per
        endpoint; beyond that they go back to the schedule (see `_defer`)."""
        self._in_flight: set[asyncio.Task[None]] = set()
        self._finished: list[Finished] = []
        self.stats: Counter[str] = Counter()

    async def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; then lets in-flight attempts finish and records them."""
        connector = aiohttp.TCPConnector(
            limit=self._config.max_in_flight, resolver=GuardedResolver(self._config.allow_loopback), ttl_dns_cache=10
        )
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            recorder = asyncio.create_task(self._record_continuously(stop))
            while not stop.is_set():
                await self._dispatch_round(session)
            if self._in_flight:
                await asyncio.wait(self._in_flight, timeout=self._config.timeout_s + 1)
            await recorder
            await self._record()

    async def _dispatch_round(self, session: aiohttp.ClientSession) -> None:
        queued = sum(map(len, self._waiting.values()))
        room = self._config.max_in_flight - len(self._in_flight) - queued
        if room <= 0:
            await asyncio.wait(self._in_flight, timeout=self._config.poll_interval_s, return_when="FIRST_COMPLETED")
            return
        try:
            claimed = await self._schedule.claim(room, self._config.lease_ms)
        except aioredis.RedisError as exc:
            log.warning("webhooks: cannot claim deliveries: %s", exc)
            claimed = []
        deferred = []
        limit = self._config.endpoint_concurrency
        for task in claimed:
            if self._busy[task.webhook_id] < limit:
                self._start(session, task)
            elif len(self._waiting[task.webhook_id]) < limit:
                self._waiting[task.webhook_id].append(task)
            else:
                deferred.append(task)
        if deferred:
            await self._defer(deferred)
        if len(claimed) < room:
            await asyncio.sleep(self._config.poll_interval_s)

    def _start(self, session: aiohttp.ClientSession, task: DeliveryTask) -> None:
        self._busy[task.webhook_id] += 1
        attempt = asyncio.create_task(self._attempt(session, task))
        self._in_flight.add(attempt)
        attempt.add_done_callback(self._in_flight.discard)

    def _release(self, session: aiohttp.ClientSession, webhook_id: str) -> None:
        """An endpoint slot is free: its next locally queued delivery takes it."""
        self._busy[webhook_id] -= 1
        waiting = self._waiting.get(webhook_id)
        if waiting:
            self._start(session, waiting.popleft())
            if not waiting:
                del self._waiting[webhook_id]

    async def _defer(self, tasks: list[DeliveryTask]) -> None:
        pipe = self._schedule.pipeline()
        self._schedule.queue_defer(pipe, tasks, now_ms() + self._config.defer_ms)
        await pipe.execute()
        self.stats["deferred"] += len(tasks)

    async def _attempt(self, session: aiohttp.ClientSession, task: DeliveryTask) -> None:
        try:
            found = await self._endpoints.find(task.org_id, task.webhook_id)
            attempted_at = now_ms()
            if found is None:
                self._finish(task, "", attempted_at, Response(None, 0, "the subscription no longer exists", ""), True)
                return
            subscription, signers = found
            if not subscription.get("enabled", True):
                refused = Response(None, 0, f"the subscription is disabled: {subscription.get('disabled_reason')}", "")
                self._finish(task, subscription["url"], attempted_at, refused, True)
                return
            response = await self._send(session, subscription["url"], signers, task)
            self._finish(task, subscription["url"], attempted_at, response, False)
        except Exception:
            log.exception("webhooks: attempt of %s failed unexpectedly; retried after its lease", task.delivery_id)
        finally:
            self._release(session, task.webhook_id)

    async def _send(
        self, session: aiohttp.ClientSession, url: str, signers: list[Webhook], task: DeliveryTask
    ) -> Response:
        timestamp = datetime.now(UTC).replace(microsecond=0)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": task.message_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": sign(signers, task.message_id, timestamp, task.payload_json),
        }
        started = time.perf_counter()
        try:
            refuse_unsafe_literal(url, self._config.allow_loopback)
            async with session.post(url, data=task.payload_json.encode(), headers=headers, allow_redirects=False) as r:
                excerpt = (await r.content.read(self._config.response_excerpt_bytes)).decode(errors="replace")
                error = "" if 200 <= r.status < 300 else f"HTTP {r.status}"
                return Response(r.status, _elapsed_ms(started), error, excerpt)
        except TimeoutError:
            return Response(None, _elapsed_ms(started), f"no answer within {self._config.timeout_s:g} s", "")
        except UnsafeDestination as exc:
            return Response(None, 0, f"unsafe destination: {exc}", "")
        except (aiohttp.ClientError, OSError) as exc:
            return Response(None, _elapsed_ms(started), f"{type(exc).__name__}: {exc}", "")

    def _finish(self, task: DeliveryTask, url: str, attempted_at: int, response: Response, final: bool) -> None:
        attempts = task.attempts + 1
        if final:
            verdict = Verdict(AttemptResult.FAILED, DeliveryStatus.FAILED, None, None)
        else:
            verdict = judge_attempt(attempts, response.status_code, now_ms(), self._config.retry_schedule_s, self._rng)
        done = verdict.status != DeliveryStatus.PENDING
        updated = replace(
            task,
            status=verdict.status,
            attempts=attempts,
            next_attempt_at_ms=verdict.next_attempt_at_ms,
            last_status_code=response.status_code,
            last_error=response.error,
            completed_at_ms=now_ms() if done else None,
        )
        attempt = {
            "attempt_id": os.urandom(12).hex(),
            "delivery_id": task.delivery_id,
            "org_id": task.org_id,
            "webhook_id": task.webhook_id,
            "message_id": task.message_id,
            "event_type": task.event_type,
            "attempt": attempts,
            "url": url,
            "result": verdict.result.value,
            "status_code": response.status_code,
            "latency_ms": response.latency_ms,
            "error": response.error,
            "response_excerpt": response.excerpt,
            "attempted_at_ms": attempted_at,
            "next_attempt_at_ms": verdict.next_attempt_at_ms,
        }
        self._finished.append(Finished(updated, attempt, verdict))
        self.stats[verdict.result.value] += 1

    async def _record_continuously(self, stop: threading.Event) -> None:
        """Records outcomes every 20 ms, and every 10 s forgets deliveries past their retention."""
        trimmed_at = 0.0
        while not stop.is_set():
            await asyncio.sleep(0.02)
            try:
                await self._record()
                if time.monotonic() - trimmed_at > 10:
                    trimmed_at = time.monotonic()
                    await self._schedule.trim(self._config.retention_s)
            except Exception:
                log.exception("webhooks: recording outcomes failed; retrying")

    async def _record(self) -> None:
        """Endpoint health first (it can make this attempt the last), then the attempt records
        (acknowledged by the broker), then the schedule: see the module doc."""
        finished, self._finished = self._finished, []
        if not finished:
            return
        try:
            disabling = await self._track_endpoint_health(finished)
            for item in finished:
                self._produce(item.attempt)
            remaining = await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, 30)
            if remaining:
                log.error("webhooks: %d attempt records not acknowledged by the broker", remaining)
            pipe = self._schedule.pipeline()
            self._schedule.queue_updates(pipe, [item.task for item in finished])
            await pipe.execute()
        except Exception:
            self._finished = finished + self._finished
            raise
        for (org_id, webhook_id), reason in disabling.items():
            if await self._subscriptions.disable(org_id, webhook_id, reason):
                self._endpoints.forget(org_id)
                log.warning("webhooks: disabled %s of %s: %s", webhook_id, org_id, reason)

    def _produce(self, attempt: dict[str, Any]) -> None:
        value = self._attempts.encode(attempt)
        produce_waiting(self._producer, self._attempts_topic, value, attempt["org_id"].encode())

    async def _track_endpoint_health(self, finished: list[Finished]) -> dict[tuple[str, str], str]:
        """Updates each endpoint's failure streak; returns the endpoints to disable and why, having
        turned their still-pending deliveries in this batch into failures."""
        pipe = self._schedule.pipeline()
        failures: list[tuple[Finished, int]] = []
        """Each failure with the index of its HGET (the failure streak's start) in the results."""
        ok = AttemptResult.SUCCEEDED
        succeeded = {(i.task.org_id, i.task.webhook_id) for i in finished if i.verdict.result == ok}
        for org_id, webhook_id in succeeded:
            pipe.hdel(state_keys.webhook_failing_since(org_id), webhook_id)
        for item in finished:
            failing_key = state_keys.webhook_failing_since(item.task.org_id)
            if item.verdict.result != AttemptResult.SUCCEEDED:
                pipe.hsetnx(failing_key, item.task.webhook_id, item.attempt["attempted_at_ms"])
                pipe.hget(failing_key, item.task.webhook_id)
                failures.append((item, len(pipe) - 1))
        results = await pipe.execute()
        now = now_ms()
        disabling: dict[tuple[str, str], str] = {}
        for item, index in failures:
            reason = item.verdict.disable_subscription
            if reason is None and failing_too_long(int(results[index]), now, self._config.disable_after_s):
                reason = f"every attempt failed for {self._config.disable_after_s:g} s"
            if reason is not None:
                disabling[(item.task.org_id, item.task.webhook_id)] = reason
        for item, _ in failures:
            reason = disabling.get((item.task.org_id, item.task.webhook_id))
            if reason is not None and item.task.status == DeliveryStatus.PENDING:
                item.task = replace(
                    item.task,
                    status=DeliveryStatus.FAILED,
                    next_attempt_at_ms=None,
                    completed_at_ms=now,
                    last_error=f"{item.task.last_error}; the subscription is disabled: {reason}",
                )
                item.attempt.update(result=AttemptResult.FAILED.value, next_attempt_at_ms=None)
        return disabling


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
