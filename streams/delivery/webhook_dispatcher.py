"""WebhookDispatcher: claims due deliveries from the schedule and sends them, many at once.

One asyncio loop keeps up to `max_in_flight` requests open through `OutboundHttp`. Nothing waits
on one message: each claimed delivery is its own task, and the loop claims more as slots free up. A
claim takes at most `endpoint_concurrency` deliveries per endpoint and none for an endpoint that
already has that many queued or in flight here, so one slow endpoint (or one org's burst) cannot
occupy the slots every other endpoint needs. Beyond its concurrency an endpoint's deliveries wait in
a local queue; anything that would overflow it goes back to the schedule for a moment.

Outcomes are recorded in batches: the attempt records go to drip.webhooks.attempts (and on to
ClickHouse) and are acknowledged by the broker first, then the schedule is updated in one Redis
pipeline. A crash between the two re-sends a delivery after its lease: at-least-once, which is what
the stable `webhook-id` is for. Without a crash a delivery is not sent again once attempted: while
Redis or the broker is down, outcomes wait to be recorded for longer than a lease, and a claim that
hands back a delivery whose outcome this dispatcher still holds does not send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis.asyncio as aioredis
from confluent_kafka import KafkaError, Message, Producer

from processors.delivery_policy import AttemptResult, DeliveryStatus, Verdict, failing_too_long, judge_attempt
from streams.clock import now_ms
from streams.delivery.outbound_http import NoAnswer, OutboundHttp
from streams.delivery.redacted_url import redacted_url
from streams.delivery.signing_secrets import Signer, signature_header, valid
from streams.delivery.ssrf_guard import UnsafeDestination
from streams.delivery.webhook_schedule import DeliverySchedule, DeliveryTask
from streams.runtime.kafka import produce_waiting
from streams.runtime.serde import AvroSerde
from streams.state import state_keys
from streams.state.control_plane import ControlPlaneReader, RevisionCache
from streams.state.secret_box import SecretBox

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
    subscription_refresh_s: float = 0.5

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
    """Subscriptions and their signers, from the control plane, cached per org by revision. A lookup
    that finds its org stale checks every stale org the worker knows in the same query, so a secret
    rotation or a disable reaches the worker within `refresh_s` at one query per period, however many
    orgs it delivers for. The reads run in a thread, one at a time, off the event loop."""

    def __init__(self, reader: ControlPlaneReader, box: SecretBox, refresh_s: float) -> None:
        self._cache: RevisionCache[dict[str, dict[str, Any]]] = RevisionCache(
            reader, reader.webhook_subscriptions, refresh_s
        )
        self._box = box
        self._signers: dict[str, Signer] = {}
        self._reading = asyncio.Lock()

    async def find(self, org_id: str, webhook_id: str) -> tuple[dict[str, Any], list[Signer]] | None:
        subscriptions = self._cache.fresh(org_id)
        if subscriptions is None:
            async with self._reading:
                orgs = [org_id, *self._cache.stale()]
                subscriptions = (await asyncio.to_thread(self._cache.get, orgs))[org_id]
        record = subscriptions.get(webhook_id)
        if record is None:
            return None
        return record, [self._signer(secret["sealed"]) for secret in valid(record["secrets"])]

    def _signer(self, sealed: str) -> Signer:
        """Opening a sealed secret costs a Fernet decryption; each is opened once per process."""
        signer = self._signers.get(sealed)
        if signer is None:
            signer = self._signers[sealed] = Signer(self._box.open(sealed))
        return signer

    def forget(self, org_id: str) -> None:
        self._cache.forget(org_id)


class WebhookDispatcher:
    def __init__(
        self,
        schedule: DeliverySchedule,
        control_plane: ControlPlaneReader,
        box: SecretBox,
        producer: Producer,
        attempts: tuple[AvroSerde, str],
        config: DispatchConfig,
    ) -> None:
        self._schedule = schedule
        self._control_plane = control_plane
        self._endpoints = Endpoints(control_plane, box, config.subscription_refresh_s)
        self._producer = producer
        self._attempts, self._attempts_topic = attempts
        self._config = config
        self._rng = random.Random()
        self._busy: Counter[str] = Counter()
        self._waiting: defaultdict[str, deque[DeliveryTask]] = defaultdict(deque)
        """Claimed deliveries whose endpoint is at its concurrency limit, up to the limit again per
        endpoint; beyond that they go back to the schedule (see `_defer`)."""
        self._in_flight: set[asyncio.Task[None]] = set()
        self._claim_batch = max(1, config.max_in_flight // 10)
        """Free slots worth a claim: a claim per freed slot would cost a script call per delivery."""
        self._room_freed = asyncio.Event()
        self._endpoint_freed = asyncio.Event()
        """Set when an endpoint the last claim skipped as saturated can take more."""
        self._claim_failures = 0
        """Claims failed in a row (Redis down): logged once per streak, not at every poll."""
        self._finished: list[Finished] = []
        self._unrecorded: set[str] = set()
        """Deliveries attempted here whose outcome is not in the schedule yet (being recorded, or
        waiting for Redis or the broker): a claim that returns one of them does not send it again."""
        self.stats: Counter[str] = Counter()

    async def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; then lets in-flight attempts finish and records them."""
        http = OutboundHttp(
            self._config.timeout_s,
            self._config.allow_loopback,
            {"content-type": "application/json", "user-agent": USER_AGENT},
        )
        try:
            recorder = asyncio.create_task(self._record_continuously(stop))
            while not stop.is_set():
                await self._dispatch_round(http)
            if self._in_flight:
                await asyncio.wait(self._in_flight, timeout=self._config.timeout_s + 1)
            await recorder
            await self._record()
        finally:
            await http.close()

    async def _dispatch_round(self, http: OutboundHttp) -> None:
        room = self._config.max_in_flight - len(self._in_flight)
        if room < self._claim_batch:
            self._room_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room_freed.wait(), self._config.poll_interval_s)
            room = self._config.max_in_flight - len(self._in_flight)
            if room <= 0:
                return
        limit = self._config.endpoint_concurrency
        self._endpoint_freed.clear()
        saturated = [w for w, busy in self._busy.items() if busy + len(self._waiting.get(w, ())) >= limit]
        try:
            claimed = await self._schedule.claim(room, self._config.lease_ms, limit, saturated)
        except aioredis.RedisError as exc:
            self._claim_failures += 1
            if self._claim_failures == 1:
                log.warning("webhooks: cannot claim deliveries, retrying until Redis answers: %s", exc)
            claimed = []
        else:
            if self._claim_failures:
                log.info("webhooks: claiming again after %d failed claims", self._claim_failures)
            self._claim_failures = 0
        deferred = []
        for task in claimed:
            if task.delivery_id in self._unrecorded:
                self.stats["unrecorded_not_resent"] += 1
                continue
            if self._busy[task.webhook_id] < limit:
                self._start(http, task)
            elif len(self._waiting[task.webhook_id]) < limit:
                self._waiting[task.webhook_id].append(task)
            else:
                deferred.append(task)
        if deferred:
            await self._defer(deferred)
        if len(claimed) < room:
            await self._pause(bool(saturated))

    async def _pause(self, skipped_some: bool) -> None:
        """Nothing more was due, or only for saturated endpoints: then the next claim is worth making
        as soon as one of those can take more, not a whole poll interval later."""
        if not skipped_some:
            await asyncio.sleep(self._config.poll_interval_s)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._endpoint_freed.wait(), self._config.poll_interval_s)

    def _start(self, http: OutboundHttp, task: DeliveryTask) -> None:
        self._busy[task.webhook_id] += 1
        attempt = asyncio.create_task(self._attempt(http, task))
        self._in_flight.add(attempt)
        attempt.add_done_callback(self._done)

    def _done(self, attempt: asyncio.Task[None]) -> None:
        self._in_flight.discard(attempt)
        if self._config.max_in_flight - len(self._in_flight) >= self._claim_batch:
            self._room_freed.set()

    def _release(self, http: OutboundHttp, webhook_id: str) -> None:
        """An endpoint slot is free: its next locally queued delivery takes it."""
        self._busy[webhook_id] -= 1
        waiting = self._waiting.get(webhook_id)
        if waiting:
            self._start(http, waiting.popleft())
            if not waiting:
                del self._waiting[webhook_id]
        if self._busy[webhook_id] + len(self._waiting.get(webhook_id, ())) < self._config.endpoint_concurrency:
            self._endpoint_freed.set()

    async def _defer(self, tasks: list[DeliveryTask]) -> None:
        """If Redis fails here the tasks keep the lease of their claim and come due when it ends."""
        pipe = self._schedule.pipeline()
        self._schedule.queue_defer(pipe, tasks, now_ms() + self._config.defer_ms)
        try:
            await pipe.execute()
        except aioredis.RedisError as exc:
            log.warning("webhooks: cannot give back %d deliveries; due again after their lease: %s", len(tasks), exc)
            return
        self.stats["deferred"] += len(tasks)

    async def _attempt(self, http: OutboundHttp, task: DeliveryTask) -> None:
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
            response = await self._send(http, subscription["url"], signers, task)
            self._finish(task, subscription["url"], attempted_at, response, False)
        except Exception:
            log.exception("webhooks: attempt of %s failed unexpectedly; retried after its lease", task.delivery_id)
        finally:
            self._release(http, task.webhook_id)

    async def _send(self, http: OutboundHttp, url: str, signers: list[Signer], task: DeliveryTask) -> Response:
        timestamp_s = int(time.time())
        headers = {
            "webhook-id": task.message_id,
            "webhook-timestamp": str(timestamp_s),
            "webhook-signature": signature_header(signers, task.message_id, timestamp_s, task.payload_json),
        }
        started = time.perf_counter()
        try:
            answer = await http.request(
                "POST", url, task.payload_json.encode(), headers, self._config.response_excerpt_bytes
            )
        except TimeoutError:
            return Response(None, _elapsed_ms(started), f"no answer within {self._config.timeout_s:g} s", "")
        except UnsafeDestination as exc:
            return Response(None, 0, f"unsafe destination: {exc}", "")
        except NoAnswer as exc:
            return Response(None, _elapsed_ms(started), str(exc), "")
        error = "" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        return Response(answer.status, _elapsed_ms(started), error, answer.body.decode(errors="replace"))

    def _finish(self, task: DeliveryTask, url: str, attempted_at: int, response: Response, final: bool) -> None:
        attempts, now = task.attempts + 1, now_ms()
        if final:
            verdict = Verdict(AttemptResult.FAILED, DeliveryStatus.FAILED, None, None)
        else:
            verdict = judge_attempt(attempts, response.status_code, now, self._config.retry_schedule_s, self._rng)
        done = verdict.status != DeliveryStatus.PENDING
        # The task is this attempt's own (claimed, then finished once), so it is updated in place.
        task.status = verdict.status
        task.attempts = attempts
        task.next_attempt_at_ms = verdict.next_attempt_at_ms
        task.last_status_code = response.status_code
        task.last_error = response.error
        task.completed_at_ms = now if done else None
        attempt = {
            "attempt_id": f"{self._rng.getrandbits(96):024x}",
            "delivery_id": task.delivery_id,
            "org_id": task.org_id,
            "webhook_id": task.webhook_id,
            "message_id": task.message_id,
            "event_type": task.event_type,
            "attempt": attempts,
            "url": redacted_url(url),
            "result": verdict.result.value,
            "status_code": response.status_code,
            "latency_ms": response.latency_ms,
            "error": response.error,
            "response_excerpt": response.excerpt,
            "attempted_at_ms": attempted_at,
            "next_attempt_at_ms": verdict.next_attempt_at_ms,
        }
        self._finished.append(Finished(task, attempt, verdict))
        self._unrecorded.add(task.delivery_id)
        self.stats[verdict.result.value] += 1

    async def _record_continuously(self, stop: threading.Event) -> None:
        """Records outcomes every 50 ms, and every 10 s forgets deliveries past their retention.
        While recording fails (Redis or the broker down) it retries every 50 ms, logging the error
        once per streak rather than at every try."""
        trimmed_at = 0.0
        failures = 0
        while not stop.is_set():
            await asyncio.sleep(0.05)
            try:
                await self._record()
                if time.monotonic() - trimmed_at > 10:
                    trimmed_at = time.monotonic()
                    await self._schedule.trim(self._config.retention_s)
            except Exception:
                failures += 1
                if failures == 1:
                    log.exception("webhooks: recording outcomes failed; retrying")
                continue
            if failures:
                log.info("webhooks: outcomes recorded again after %d failed tries", failures)
            failures = 0

    async def _record(self) -> None:
        """Endpoint health first (it can make this attempt the last), then the attempt records, then
        the schedule: see the module doc. Only outcomes whose record the broker acknowledged move
        their schedule entry; the others are recorded again on the next round (ClickHouse keeps one
        row per attempt id), and meanwhile their lease keeps them from being sent again."""
        finished, self._finished = self._finished, []
        if not finished:
            return
        try:
            disabling = await self._track_endpoint_health(finished)
            acknowledged: set[int] = set()

            def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
                def report(error: KafkaError | None, _: Message) -> None:
                    if error is None:
                        acknowledged.add(index)

                return report

            for index, item in enumerate(finished):
                self._produce(item.attempt, delivered(index))
            await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, 30)
            recorded = [item for index, item in enumerate(finished) if index in acknowledged]
            unrecorded = [item for index, item in enumerate(finished) if index not in acknowledged]
            if unrecorded:
                log.error("webhooks: %d attempt records not acknowledged by the broker; retried", len(unrecorded))
                self._finished = unrecorded + self._finished
            if recorded:
                pipe = self._schedule.pipeline()
                self._schedule.queue_updates(pipe, [item.task for item in recorded])
                await pipe.execute()
                self._unrecorded.difference_update(item.task.delivery_id for item in recorded)
        except Exception:
            self._finished = finished + self._finished
            raise
        for (org_id, webhook_id), reason in disabling.items():
            if await asyncio.to_thread(self._control_plane.disable_webhook, org_id, webhook_id, reason):
                self._endpoints.forget(org_id)
                log.warning("webhooks: disabled %s of %s: %s", webhook_id, org_id, reason)

    def _produce(self, attempt: dict[str, Any], on_delivery: Callable[[KafkaError | None, Message], None]) -> None:
        value = self._attempts.encode(attempt)
        produce_waiting(
            self._producer, self._attempts_topic, value, attempt["org_id"].encode(), on_delivery=on_delivery
        )

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
