"""webhook_deliveries_per_s: one real `drippulse worker webhooks` process delivering to a local receiver
that answers 200 at once.

The receiver is a minimal asyncio HTTP/1.1 server in its own process (keep-alive, no parsing beyond
Content-Length), so the figure measures the worker and not the receiver. Messages are on the
deliveries topic before the worker starts; the rate is taken from the receiver's request count after
the first WARMUP deliveries, when connections are open and subscriptions cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from drippulse.processes import spawn

MESSAGES = int(os.environ.get("BENCH_WEBHOOK_MESSAGES", "40000"))
WARMUP = int(os.environ.get("BENCH_WEBHOOK_WARMUP", "5000"))
ENDPOINTS = 10


class _Answer200(asyncio.Protocol):
    def __init__(self, counter: Any) -> None:
        self._counter = counter
        self._buffer = b""
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self._buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            self._buffer = self._buffer[end + 4 + length :]
            self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            with self._counter.get_lock():
                self._counter.value += 1


def _serve(port: Any, counter: Any) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _Answer200(counter), "127.0.0.1", 0)
        port.value = server.sockets[0].getsockname()[1]
        await server.serve_forever()

    asyncio.run(main())


def _subscribe(settings: Any, url: str) -> list[str]:
    """One org per endpoint, each subscribed to every event type; the org ids."""
    from api.control_plane import webhooks
    from api.control_plane.actors import Scope, system
    from api.control_plane.database import Database
    from drippulse.settings import secret_box
    from drippulse.synthetic import create_orgs

    org_ids = create_orgs(settings.database_url, [], ENDPOINTS, "bench-webhooks")

    async def create() -> None:
        database = Database(settings.database_url, pool_size=1)
        async with database.transaction() as session:
            for org_id in org_ids:
                fields = {"url": url, "event_types": [], "enabled": True}
                await webhooks.create(session, Scope(org_id), system("bench"), secret_box(settings), fields)
        await database.close()

    asyncio.run(create())
    return org_ids


def _produce(settings: Any, org_ids: list[str]) -> None:
    import orjson

    from streams import topics
    from streams.runtime.kafka import ensure_topics, make_producer, produce_waiting
    from streams.runtime.schema_registry import make_registry
    from streams.runtime.serde import AvroSerde

    ensure_topics(settings.kafka)
    name = topics.topic_name(topics.WEBHOOK_DELIVERIES, settings.topic_prefix)
    serde = AvroSerde(topics.WEBHOOK_DELIVERIES, name, make_registry(settings.schema_registry_url))
    producer = make_producer(settings.kafka)
    payload = orjson.dumps({"type": "lead.qualified", "timestamp": "2026-11-28T00:00:00Z", "data": {"tier": "A"}})
    now = int(time.time() * 1000)
    for n in range(MESSAGES):
        org_id = org_ids[n % ENDPOINTS]
        record = {
            "message_id": f"msg_bench_{n}",
            "org_id": org_id,
            "execution_id": f"exec-{n}",
            "event_type": "lead.qualified",
            "payload_json": payload.decode(),
            "created_at_ms": now,
        }
        produce_waiting(producer, name, serde.encode(record), org_id.encode())
    assert producer.flush(120) == 0


def measure(settings: Any, log_dir: Path) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    port, counter = context.Value("i", 0), context.Value("q", 0)
    receiver = context.Process(target=_serve, args=(port, counter), daemon=True)
    receiver.start()
    while port.value == 0:
        time.sleep(0.01)
    _produce(settings, _subscribe(settings, f"http://127.0.0.1:{port.value}/hooks"))
    env = {**os.environ, "DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true", "DRIPPULSE_LOG_LEVEL": "WARNING"}
    # BENCH_PROFILER="py-spy record -o profile.txt -f raw --" shows where the worker spends its time.
    profiler = os.environ.get("BENCH_PROFILER", "").split()
    argv = [*profiler, sys.executable, "-m", "drippulse", "worker", "webhooks"]
    worker = spawn(argv, log_dir / "bench-webhooks.log", attached=True, env=env)
    samples: list[tuple[float, int, float]] = []
    deadline = time.monotonic() + 300
    try:
        while counter.value < MESSAGES and time.monotonic() < deadline and worker.poll() is None:
            samples.append((time.monotonic(), counter.value, _cpu_s(worker.pid)))
            time.sleep(0.05)
        samples.append((time.monotonic(), counter.value, _cpu_s(worker.pid)))
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)  # a profiler's child, if it outlived the profiler
        receiver.terminate()
    if counter.value < MESSAGES:
        raise RuntimeError(f"the webhook worker delivered {counter.value} of {MESSAGES} messages")
    start_at, start_count, start_cpu = next(sample for sample in samples if sample[1] >= WARMUP)
    end_at, end_count, end_cpu = next(sample for sample in samples if sample[1] >= MESSAGES)
    return {
        "webhook_deliveries_per_s": round((end_count - start_count) / (end_at - start_at)),
        "webhook_worker_cores_used": round((end_cpu - start_cpu) / (end_at - start_at), 2),
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from /proc: is the worker CPU-bound?"""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
