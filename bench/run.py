"""`make bench`: throughput on one broker in one run, as ratios against the raw broker limit.

Each measured loop runs in its own child process (so its RSS is its own), after its input is
already on the broker (so producing input is not counted). Prints a table and writes
bench/out/results.json.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

OUT = Path(__file__).resolve().parent / "out" / "results.json"
ORGS = 1_000
EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
BATCH = 5_000
console = Console()


def _rss_peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _settings(prefix: str) -> Any:
    from drippulse.settings import Settings

    os.environ["DRIPPULSE_TOPIC_PREFIX"] = prefix
    os.environ["DRIPPULSE_WORKFLOW_REFRESH_S"] = "5"
    return Settings()


def _produce_input(settings: Any, org_ids: list[str], topic: str) -> None:
    from drippulse.synthetic import lead_event
    from streams import topics
    from streams.kafka import make_producer
    from streams.schema_registry import make_registry
    from streams.serde import AvroSerde

    serde = AvroSerde(topics.INBOUND_EVENTS, topic, make_registry(settings.schema_registry_url))
    producer = make_producer(settings)
    rng = random.Random(1)
    for n in range(EVENTS):
        org_id = org_ids[rng.randrange(len(org_ids))]
        while True:
            try:
                producer.produce(topic, serde.encode(lead_event(rng, org_id, n)), org_id.encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0


def raw_passthrough(prefix: str) -> dict[str, float]:
    """The broker limit for a Python client: consume a batch, produce the same bytes, flush, commit."""
    from streams import topics
    from streams.batch_runtime import next_offsets
    from streams.kafka import ensure_topics, make_consumer, make_producer

    settings = _settings(prefix)
    ensure_topics(settings)
    source = topics.topic_name(topics.INBOUND_EVENTS, settings)
    sink = topics.topic_name(topics.EXECUTIONS, settings)
    _produce_input(settings, [f"org-{i}" for i in range(ORGS)], source)
    consumer = make_consumer(settings, f"bench-raw-{uuid.uuid4()}")
    producer = make_producer(settings)
    consumer.subscribe([source])
    done, started = 0, None
    while done < EVENTS:
        messages = [m for m in consumer.consume(BATCH, 0.5) if m.error() is None]
        if not messages:
            continue
        started = started or time.perf_counter()
        for m in messages:
            producer.produce(sink, m.value(), m.key())
        producer.flush(60)
        consumer.commit(offsets=next_offsets(messages), asynchronous=False)
        done += len(messages)
    elapsed = time.perf_counter() - (started or 0)
    consumer.close()
    return {"events_per_s": done / elapsed, "rss_mb": _rss_peak_mb()}


def qualifier(prefix: str) -> dict[str, float]:
    """The real LeadQualifier worker, 1,000 orgs x 10 active workflows."""
    import redis.asyncio as aioredis

    from api.store import ControlPlaneStore
    from bench.workflows import workflow_definitions
    from drippulse.workers import build_qualifier
    from streams import topics

    settings = _settings(prefix)

    async def create_orgs() -> list[str]:
        client = aioredis.Redis.from_url(settings.redis_url)
        store = ControlPlaneStore(client)
        org_ids = []
        for n in range(ORGS):
            org, _ = await store.create_org(f"bench-{n}")
            for k, definition in enumerate(workflow_definitions()):
                workflow = await store.create_workflow(org["id"], f"wf-{k}", "", definition)
                await store.activate_workflow(org["id"], workflow, 1)
            org_ids.append(org["id"])
        await client.aclose()
        return org_ids

    org_ids = asyncio.run(create_orgs())
    worker = build_qualifier(settings)
    _produce_input(settings, org_ids, topics.topic_name(topics.INBOUND_EVENTS, settings))
    started = None
    while worker.stats.records_in < EVENTS:
        if worker.run_once() and started is None:
            started = time.perf_counter()
    elapsed = time.perf_counter() - (started or 0)
    stats = worker.stats
    return {"events_per_s": stats.records_in / elapsed, "rss_mb": _rss_peak_mb(),
            "outputs_per_event": stats.records_out / stats.records_in}


def _in_child(function: Any, prefix: str) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, float] = pool.apply(function, (prefix,))
    return result


def _machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
            "broker": "embedded Tansu" if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "external"}


def main() -> None:
    from drippulse.devstack import EmbeddedStack
    from drippulse.settings import Settings
    from tests.stack import stack_env

    home = Path(tempfile.mkdtemp(prefix="drippulse-bench-"))
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        os.environ.update({k: v for k, v in stack_env(home).items() if k != "DRIPPULSE_TOPIC_PARTITIONS"})
    stack = EmbeddedStack(Settings(), attached=True)
    stack.start()
    try:
        console.print(f"[bold]DripPulse benchmark[/bold]: {EVENTS:,} events, {ORGS:,} orgs x 10 active workflows")
        raw = _in_child(raw_passthrough, f"bench-raw-{uuid.uuid4().hex[:6]}.")
        qual = _in_child(qualifier, f"bench-q-{uuid.uuid4().hex[:6]}.")
    finally:
        stack.stop()
    figures = {
        "raw_passthrough_events_per_s": round(raw["events_per_s"]),
        "qualifier_events_per_s": round(qual["events_per_s"]),
        "qualifier_vs_raw_ratio": round(qual["events_per_s"] / raw["events_per_s"], 3),
        "qualifier_rss_mb": round(qual["rss_mb"], 1),
        "qualifier_outputs_per_event": round(qual["outputs_per_event"], 2),
    }
    targets = {"qualifier_events_per_s": 15_000, "qualifier_vs_raw_ratio": 0.25}
    table = Table(title="DripPulse benchmark (one broker, one run)")
    for column in ("figure", "value", "target", "met"):
        table.add_column(column)
    for name, value in figures.items():
        target = targets.get(name)
        met = "" if target is None else ("yes" if value >= target else "NO")
        table.add_row(name, f"{value:,}", "" if target is None else f">= {target:,}", met)
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"figures": figures, "targets": targets, "machine": _machine(),
                               "events": EVENTS, "orgs": ORGS, "workflows_per_org": 10}, indent=2))
    console.print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
