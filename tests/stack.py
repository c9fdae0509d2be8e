"""Test harness for the real local stack: free ports, a temp home, the API in a thread, the
qualifier as a real process (so it can be SIGKILLed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from drippulse.devstack import free_port, isolated_env
from drippulse.processes import spawn, terminate
from drippulse.settings import Settings
from streams import topics
from streams.runtime.schema_registry import EmbeddedRegistry
from streams.runtime.serde import AvroSerde

SERVICE_URLS = ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "CLICKHOUSE_URL", "SCHEMA_REGISTRY_URL", "DATABASE_URL")
"""Set, each points DripPulse at an external service; unset, at the embedded stack."""


def stack_env(home: Path) -> dict[str, str]:
    """An isolated embedded stack, sized down for tests: fewer partitions, faster workflow refresh,
    schedules every 2 s allowed (they fire within a test's patience)."""
    return {
        **isolated_env(home),
        "DRIPPULSE_TOPIC_PARTITIONS": "4",
        "DRIPPULSE_WORKFLOW_REFRESH_S": "0.2",
        "DRIPPULSE_SCHEDULE_MIN_INTERVAL_S": "2",
    }


def process_env(home: Path) -> dict[str, str]:
    """This process's environment for a child with its own embedded stack under `home`."""
    return {**{k: v for k, v in os.environ.items() if k not in SERVICE_URLS}, **stack_env(home)}


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class ApiServer:
    """The real FastAPI app on a real port, in this process (chdb may be opened by one process only)."""

    def __init__(self, settings: Settings) -> None:
        from api.app import create_app
        from drippulse.workers import embedded_background

        self.settings = settings
        self.app = create_app(settings, embedded_background(settings))
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=settings.api_port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self._healthy(), 60, "the API to become healthy")

    def _healthy(self) -> bool:
        return _healthy(self.settings)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)

    @property
    def clickhouse(self) -> Any:
        return self.app.state.clickhouse


@contextmanager
def api_process(settings: Settings, env: dict[str, str]) -> Iterator[Settings]:
    """A `drippulse api` process of its own on the session's stack, with `env` on top of the
    session's environment (point CLICKHOUSE_URL at a ClickHouse of its own: chdb allows one process
    per data directory); the settings that reach it."""
    port = free_port()
    reached = settings.model_copy(update={"api_port": port})
    log = settings.log_dir / f"api-{port}.log"
    process = spawn(
        [sys.executable, "-m", "drippulse", "api"],
        log,
        attached=True,
        env={**os.environ, **env, "DRIPPULSE_API_PORT": str(port)},
    )
    try:
        wait_until(lambda: _healthy(reached) or process.poll() is not None, 120, "the API process to become healthy")
        assert process.poll() is None, f"the API process exited; see {log}"
        yield reached
    finally:
        terminate(process.pid)
        process.wait(timeout=30)


def _healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class WorkerProcess:
    """A `drippulse worker KIND` as a real process, so tests can SIGKILL it."""

    def __init__(self, settings: Settings, kind: str = "qualifier", env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.kind = kind
        self.env: dict[str, str] = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.ready: Path | None = None
        """The readiness file of the latest start: it exists once the worker owns partitions."""

    def start(self, crash_on_commit: int | None = None, wait: bool = True) -> None:
        """Starts the worker and, with `wait`, waits until it owns partitions; with `crash_on_commit`
        (qualifier only) it SIGKILLs itself right before that commit."""
        self.starts += 1
        self.ready = self.settings.home / "ready" / f"{self.kind}-{id(self)}-{self.starts}"
        ready = self.ready
        argv = [sys.executable, "-m", "drippulse", "worker", self.kind, "--ready-file", str(ready)]
        if crash_on_commit is not None:
            argv = [sys.executable, "-m", "tests.crashing_qualifier", str(ready), str(crash_on_commit)]
        log = self.settings.log_dir / f"{self.kind}.log"
        self.process = spawn(argv, log, attached=True, env={**os.environ, **self.env})
        if crash_on_commit is None and wait:
            wait_until(lambda: ready.exists() or self._died(), 60, f"the {self.kind} worker to receive partitions")
            assert not self._died(), f"{self.kind} worker exited; see {log}"

    def wait_for_exit(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, and the worker must be gone within 20 s: one that is not (a shutdown waiting
        forever on a turn) is killed, so it never outlives the session, and reported."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"{self.process.args} did not stop within 20 s of SIGTERM; killed") from None


def serde_for(topic: topics.Topic, settings: Settings) -> AvroSerde:
    return AvroSerde(topic, topics.topic_name(topic, settings.topic_prefix), EmbeddedRegistry())


def _topic_consumer(settings: Settings, topic: topics.Topic) -> Consumer:
    """A throwaway consumer over every partition from the start. Watermarks are not used: Tansu can
    report a high watermark below the last offset, so readers stop when the topic goes quiet."""
    name = topics.topic_name(topic, settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"t-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    metadata = consumer.list_topics(name, timeout=10).topics[name]
    consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in metadata.partitions])
    return consumer


def read_topic(
    settings: Settings, topic: topics.Topic, key: str | None = None, raw: bool = False, quiet_s: float = 2.0
) -> list[Any]:
    """Every record on a topic (optionally only one org's), decoded unless `raw`."""
    consumer = _topic_consumer(settings, topic)
    serde = serde_for(topic, settings)
    records: list[Any] = []
    last_seen = time.monotonic()
    while time.monotonic() - last_seen < quiet_s:
        for message in consumer.consume(10_000, 0.2):
            if message.error():
                continue
            last_seen = time.monotonic()
            if key is not None and message.key() != key.encode():
                continue
            records.append(message if raw else serde.decode(message.value()))
    consumer.close()
    return records


class TopicCounter:
    """Counts one org's records on a topic as they arrive, in a background thread."""

    def __init__(self, settings: Settings, topic: topics.Topic, key: str) -> None:
        self.count = 0
        self._key = key.encode()
        self._consumer = _topic_consumer(settings, topic)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(1000, 0.01):
                if message.error() is None and message.key() == self._key:
                    self.count += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()
