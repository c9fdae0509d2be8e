"""The dispatcher in this process, with settings the shared worker does not have: the SSRF guard at
send time (loopback not allowed), automatic disabling, per-endpoint concurrency. Its schedule is in its
own Redis database, so the session's webhook worker never claims these deliveries; its subscriptions
belong to an organization of its own in the control plane."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from confluent_kafka import KafkaError, Producer

from drippulse.operators import create_org
from drippulse.settings import Settings, secret_box
from streams import topics
from streams.delivery.webhook_dispatcher import DispatchConfig, WebhookDispatcher
from streams.delivery.webhook_schedule import DeliverySchedule, DeliveryTask, now_ms
from streams.state.control_plane import ControlPlaneReader, connect
from tests import control_plane
from tests.stack import read_topic, serde_for, wait_until
from tests.webhook_receiver import Receiver, always

pytestmark = pytest.mark.stack


@pytest.fixture
def redis_db1(stack: Any, settings: Settings) -> Iterator[str]:
    url = settings.redis_url.rsplit("/", 1)[0] + "/1"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def _config(**overrides: Any) -> DispatchConfig:
    defaults: dict[str, Any] = {
        "retry_schedule_s": (0,),
        "timeout_s": 5,
        "max_in_flight": 50,
        "endpoint_concurrency": 10,
        "disable_after_s": 3600,
        "response_excerpt_bytes": 100,
        "allow_loopback": False,
        "retention_s": 3600,
    }
    return DispatchConfig(**{**defaults, **overrides})


class Harness:
    """Subscriptions of its own org, deliveries in Redis db 1, and a dispatcher run until a condition
    holds."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.org = create_org(settings, "Dispatch test").org_id

    async def _parts(self) -> tuple[aioredis.Redis, DeliverySchedule]:
        client = aioredis.Redis.from_url(self.redis_url)
        return client, DeliverySchedule(client)

    def subscribe(self, url: str, receiver: Receiver | None = None) -> str:
        webhook_id, secret = control_plane.subscribe(self.settings, self.org, url)
        if receiver is not None:
            receiver.secrets.append(secret)
        return webhook_id

    def enqueue(self, webhook_id: str, count: int, prefix: str) -> list[str]:
        async def add() -> list[str]:
            client, schedule = await self._parts()
            message_ids = [f"msg_{prefix}_{i}" for i in range(count)]
            for message_id in message_ids:
                await schedule.enqueue(
                    DeliveryTask.new(self.org, webhook_id, message_id, "lead.qualified", "{}", now_ms())
                )
            await client.aclose()
            return message_ids

        return asyncio.run(add())

    def claim(self, limit: int, per_endpoint: int, saturated: list[str]) -> list[DeliveryTask]:
        async def take() -> list[DeliveryTask]:
            client, schedule = await self._parts()
            claimed = await schedule.claim(limit, 60_000, per_endpoint, saturated)
            await client.aclose()
            return claimed

        return asyncio.run(take())

    def run(
        self,
        config: DispatchConfig,
        until: Callable[[], bool],
        timeout_s: float = 60,
        producer: Callable[[Producer], Any] = lambda real: real,
    ) -> WebhookDispatcher:
        """Runs a dispatcher in a thread (its own event loop) until `until()` holds; fails the test if
        it never does. `producer` may wrap the real producer (to make the broker refuse records)."""
        stop = threading.Event()
        built: list[WebhookDispatcher] = []

        async def main() -> None:
            client, schedule = await self._parts()
            dispatcher = WebhookDispatcher(
                schedule=schedule,
                control_plane=ControlPlaneReader(connect(self.settings.database_url)),
                box=secret_box(self.settings),
                producer=producer(Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers})),
                attempts=(
                    serde_for(topics.WEBHOOK_ATTEMPTS, self.settings),
                    topics.topic_name(topics.WEBHOOK_ATTEMPTS, self.settings.topic_prefix),
                ),
                config=config,
            )
            built.append(dispatcher)
            await dispatcher.run(stop)
            await client.aclose()

        thread = threading.Thread(target=asyncio.run, args=(main(),))
        thread.start()
        try:
            wait_until(until, timeout_s, "the dispatcher to reach the expected state", interval_s=0.05)
        finally:
            stop.set()
            thread.join(timeout=30)
        return built[0]

    def task(self, webhook_id: str, message_id: str) -> DeliveryTask | None:
        from processors import ids

        async def get() -> DeliveryTask | None:
            client, schedule = await self._parts()
            found = await schedule.get(self.org, ids.webhook_delivery_id(message_id, webhook_id))
            await client.aclose()
            return found

        return asyncio.run(get())

    def subscription(self, webhook_id: str) -> dict[str, Any]:
        return control_plane.subscription(self.settings, self.org, webhook_id)


def _status(harness: Harness, webhook_id: str, message_id: str) -> str | None:
    task = harness.task(webhook_id, message_id)
    return task.status if task is not None else None


class RefusingBroker:
    """The real producer, except that the broker refuses the first `refusals` records (reported to
    their delivery callback as errors at flush, as librdkafka reports a failed delivery)."""

    def __init__(self, producer: Producer, refusals: int) -> None:
        self._producer = producer
        self.refusals = refusals
        self._refused: list[Callable[..., Any]] = []
        self.acknowledged: list[bytes] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Callable[..., Any] | None = None) -> None:
        if self.refusals > 0:
            self.refusals -= 1
            self._refused.append(on_delivery or (lambda *_: None))
            return

        def acknowledged(error: KafkaError | None, message: Any) -> None:
            if error is None:
                self.acknowledged.append(value)
            if on_delivery is not None:
                on_delivery(error, message)

        self._producer.produce(topic, value, key, on_delivery=acknowledged)

    def flush(self, timeout: float) -> int:
        refused, self._refused = self._refused, []
        for on_delivery in refused:
            on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT, "refused by the test broker"), None)
        return int(self._producer.flush(timeout))

    def poll(self, timeout: float) -> int:
        return int(self._producer.poll(timeout))


@pytest.fixture
def harness(settings: Settings, redis_db1: str) -> Harness:
    return Harness(settings, redis_db1)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/hooks", "loopback"),
        ("http://localhost:{port}/hooks", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
    ],
)
def test_unsafe_destinations_are_refused_at_send_time(harness: Harness, url: str, reason: str) -> None:
    """Whatever is stored (DNS may have changed since the subscription was saved), nothing is sent."""
    with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        webhook_id = harness.subscribe(url.format(port=port))
        (message_id,) = harness.enqueue(webhook_id, 1, "ssrf")
        dispatcher = harness.run(_config(), lambda: _status(harness, webhook_id, message_id) == "failed")
        assert receiver.answers == {}
    task = harness.task(webhook_id, message_id)
    assert task is not None and dispatcher.stats["failed"] == 1
    assert "unsafe destination" in task.last_error or "resolves to" in task.last_error
    assert reason in task.last_error


def test_an_endpoint_failing_for_the_whole_period_is_disabled(harness: Harness) -> None:
    with Receiver(always(503)) as receiver:
        webhook_id = harness.subscribe(receiver.url, receiver)
        (message_id,) = harness.enqueue(webhook_id, 1, "down")
        harness.run(
            _config(allow_loopback=True, retry_schedule_s=(0,) + (0.2,) * 20, disable_after_s=1),
            lambda: not harness.subscription(webhook_id)["enabled"],
        )
        requests = len(receiver.answers[message_id])
    subscription = harness.subscription(webhook_id)
    assert subscription["enabled"] is False
    assert "every attempt failed" in subscription["disabled_reason"]
    assert requests >= 2, "a streak is a failure, then another one the disable period later"
    task = harness.task(webhook_id, message_id)
    assert task is not None and task.status == "failed"
    assert "disabled" in task.last_error, "stopped by the disabling, not by running out of its 21 attempts"


def test_a_hanging_endpoint_does_not_starve_the_others(harness: Harness) -> None:
    hanging = threading.Event()
    with Receiver(held=hanging) as slow, Receiver() as fast:
        slow_id = harness.subscribe(slow.url, slow)
        fast_id = harness.subscribe(fast.url, fast)
        harness.enqueue(slow_id, 20, "slow")
        fast_ids = harness.enqueue(fast_id, 40, "fast")
        try:
            dispatcher = harness.run(
                _config(allow_loopback=True, endpoint_concurrency=2, max_in_flight=10),
                lambda: len(fast.delivered()) == len(fast_ids),
            )
        finally:
            hanging.set()
        assert slow.delivered() == {}, "every fast delivery went out while the slow endpoint answered nothing"
        assert slow.max_concurrent <= 2, "never more than the per-endpoint limit at once"
        assert dispatcher.stats["deferred"] == 0, "claims skip the saturated endpoint instead of handing work back"


def test_a_claim_shares_out_endpoints_and_skips_saturated_ones(harness: Harness) -> None:
    """One org's burst, scheduled first, does not fill a claim that another endpoint's work is due in."""
    burst, other = harness.subscribe("https://burst.example/hook"), harness.subscribe("https://other.example/hook")
    harness.enqueue(burst, 60, "burst")
    harness.enqueue(other, 5, "other")
    first = harness.claim(limit=20, per_endpoint=4, saturated=[])
    assert sorted(t.webhook_id for t in first) == sorted([burst] * 4 + [other] * 4)
    second = harness.claim(limit=20, per_endpoint=4, saturated=[burst])
    assert [t.webhook_id for t in second] == [other], "the last due delivery of the other endpoint, none of the burst"
    assert harness.claim(limit=20, per_endpoint=100, saturated=[])[0].webhook_id == burst


def test_finished_deliveries_are_forgotten_after_the_retention(harness: Harness) -> None:
    with Receiver() as receiver:
        webhook_id = harness.subscribe(receiver.url, receiver)
        (message_id,) = harness.enqueue(webhook_id, 1, "kept")
        harness.run(_config(allow_loopback=True), lambda: len(receiver.delivered()) == 1)
    delivered = harness.task(webhook_id, message_id)
    assert delivered is not None and delivered.status == "delivered"

    async def trim(retention_s: int) -> int:
        client, schedule = await harness._parts()
        forgotten = await schedule.trim(retention_s)
        await client.aclose()
        return forgotten

    assert asyncio.run(trim(3600)) == 0 and harness.task(webhook_id, message_id) is not None
    wait_until(lambda: asyncio.run(trim(0)) == 1, 10, "the finished delivery to be forgotten")
    assert harness.task(webhook_id, message_id) is None


def test_an_outcome_moves_its_schedule_entry_only_once_its_attempt_record_is_acknowledged(
    harness: Harness, settings: Settings
) -> None:
    """The broker refuses the first attempt records: those deliveries are recorded again on a later
    round, and no delivery is marked done without its attempt on the topic."""
    brokers: list[RefusingBroker] = []

    def refusing(real: Producer) -> RefusingBroker:
        brokers.append(RefusingBroker(real, refusals=3))
        return brokers[0]

    with Receiver() as receiver:
        webhook_id = harness.subscribe(receiver.url, receiver)
        message_ids = harness.enqueue(webhook_id, 5, "acked")
        harness.run(
            _config(allow_loopback=True),
            lambda: all(_status(harness, webhook_id, m) == "delivered" for m in message_ids),
            producer=refusing,
        )
    (broker,) = brokers
    recorded = {serde_for(topics.WEBHOOK_ATTEMPTS, settings).decode(v)["message_id"] for v in broker.acknowledged}
    assert broker.refusals == 0, "the broker did refuse records"
    assert recorded == set(message_ids), "every delivered message has an acknowledged attempt record"


def test_an_attempt_records_the_endpoint_without_its_path_or_query(harness: Harness) -> None:
    """Attempts are history, kept in ClickHouse and read by every role: the capability token in a
    webhook URL's path or query stays out of them."""
    with Receiver() as receiver:
        webhook_id = harness.subscribe(f"{receiver.url}/cap-T0K3N?sig=s3cr3t", receiver)
        (message_id,) = harness.enqueue(webhook_id, 1, "redacted")
        harness.run(_config(allow_loopback=True), lambda: _status(harness, webhook_id, message_id) == "delivered")
    recorded = read_topic(harness.settings, topics.WEBHOOK_ATTEMPTS, key=harness.org)
    attempts = [a for a in recorded if a["webhook_id"] == webhook_id]
    assert [a["url"] for a in attempts] == [receiver.base_url + "/…"]
