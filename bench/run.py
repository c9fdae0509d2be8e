"""`make bench`: throughput on one broker in one run, with ratios against the raw limit.

Definitions (also in the README):
- raw_passthrough: the architecture's baseline loop on the same records: consume a batch, parse
  each record (Avro decode), add a field, serialize (Avro encode), produce, flush, commit. It is the
  ceiling for any Python processor of this data on this machine.
- broker_bytes_passthrough: consume and produce the bytes untouched; the broker's own limit.
- qualifier: the real LeadQualifier worker, 1,000 orgs x 10 active workflows and one deployed agent
  (the built-in Lead Qualification Agent, invoked only; lead events never trigger it).
- agent_execute: the same worker on the same leads, each an agent call (`POST /agents/{id}/execute`
  publishes a manual run of the agent's workflow): the ratio to the qualifier is the target.
- webhook_deliveries: one `drippulse worker webhooks` process delivering signed messages to a local
  receiver that answers 200 at once (bench/webhook_deliveries.py).
- orchestrator_resumes_per_s, wait_lateness_p99_ms: one `drippulse worker orchestrator` process
  turning decided approvals and due waits into completed executions (bench/orchestrator_resumes.py).
- model_updates_per_s: the model trainer learning from outcomes through Kafka, Redis and PostgreSQL
  (bench/model_updates.py; alone: `python -m bench.model_updates`).
- score_lead_p50_ms, score_lead_p99_ms, score_lead_per_s: `POST /agents/{id}/score_lead` through one
  `drippulse api` process over HTTP, one client at a time, then 8 at once (bench/agent_calls.py;
  alone: `python -m bench.agent_calls`).
- engine_evals: event x workflow evaluations per second on one core, no I/O: every workflow's
  trigger is checked and enrolled events run the full step graph (about 14 conditions each).
  Median of 5 runs (min and max reported too): run-to-run noise on the 2-core machine is about 25%.
Every loop runs as PROCESSES worker processes in one consumer group (default: one per core), each a
child of this script, after its input is on the broker, with the garbage-collector setting of a
worker process (drippulse.workers.tune_gc_for_batches). Throughput is measured in steady state:
the first WARMUP events (first sight of every org: workflow loading and compilation) are excluded.
raw_passthrough and qualifier run ROUNDS times, alternating, over the same input; each reports the
median and the ratio is the median of the rounds' ratios (min and max reported too), so one noisy
run decides no figure. Before each qualifier round the leads' recorded state is deleted, so every
round does the same work: enrolling new leads, not recognising replays.
"""

from __future__ import annotations

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

from bench import agent_calls, model_updates, orchestrator_resumes, webhook_deliveries

OUT = Path(__file__).resolve().parent / "out" / "results.json"
ORGS = 1_000
EVENTS = int(os.environ.get("BENCH_EVENTS", "150000"))
WARMUP = int(os.environ.get("BENCH_WARMUP_EVENTS", "25000"))
PROCESSES = int(os.environ.get("BENCH_PROCESSES", str(os.cpu_count() or 1)))
BATCH = 5_000
AGENT_INDEX = 10
"""The agent's workflow comes after the ten of bench/workflows.py."""
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TARGETS = {
    "qualifier_events_per_s": (">=", 15_000),
    "qualifier_vs_raw_ratio": (">=", 0.25),
    "agent_execute_vs_qualifier_ratio": (">=", 0.8),
    "engine_evals_per_s": (">=", 200_000),
    "webhook_deliveries_per_s": (">=", 3_000),
    "orchestrator_resumes_per_s": (">=", 1_000),
    "wait_lateness_p99_ms": ("<=", 1_000),
    "score_lead_p99_ms": ("<=", 20),
}
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


def _inbound_serde(settings: Any) -> Any:
    from streams import topics
    from streams.runtime.schema_registry import make_registry
    from streams.runtime.serde import AvroSerde

    name = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    return AvroSerde(topics.INBOUND_EVENTS, name, make_registry(settings.schema_registry_url))


def produce_input(prefix: str, org_ids: list[str], agents: dict[str, str] | None = None) -> None:
    """The same lead events on the prefix's inbound topic; with `agents` (org -> the agent's
    workflow), each is an agent call instead, as `POST /agents/{id}/execute` publishes it."""
    from drippulse.synthetic import lead_event
    from streams import topics
    from streams.runtime.kafka import ensure_topics, make_producer, produce_waiting

    settings = _settings(prefix)
    ensure_topics(settings.kafka)
    topic = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    serde = _inbound_serde(settings)
    producer = make_producer(settings.kafka)
    rng = random.Random(1)
    for n in range(EVENTS):
        org_id = org_ids[rng.randrange(len(org_ids))]
        event = lead_event(rng, org_id, n)
        if agents is not None:
            event.update(trigger="MANUAL", workflow_id=agents[org_id], source="agent")
        produce_waiting(producer, topic, serde.encode(event), org_id.encode())
    assert producer.flush(120) == 0


def _drain(run_batch: Any, quiet_s: float = 3.0) -> list[tuple[float, int]]:
    """Runs batches until the topic has been quiet for `quiet_s`; returns (end time, records) per batch."""
    marks: list[tuple[float, int]] = []
    last = time.monotonic()
    while time.monotonic() - last < quiet_s or not marks:
        count = run_batch()
        if count:
            last = time.monotonic()
            marks.append((time.time(), count))
    return marks


def raw_worker(prefix: str, group: str, touch_bytes: bool) -> dict[str, Any]:
    from drippulse.workers import tune_gc_for_batches
    from streams import topics
    from streams.runtime.batch_runtime import next_offsets
    from streams.runtime.kafka import make_consumer, make_producer
    from streams.runtime.records import ConsumedRecord

    settings = _settings(prefix)
    source = topics.topic_name(topics.INBOUND_EVENTS, settings.topic_prefix)
    sink = topics.topic_name(topics.EXECUTIONS, settings.topic_prefix) + (".raw" if touch_bytes else ".bytes")
    serde = _inbound_serde(settings)
    consumer = make_consumer(settings.kafka, group)
    producer = make_producer(settings.kafka)
    tune_gc_for_batches()
    consumer.subscribe([source])

    def run_batch() -> int:
        """As the batch runtime does: plain records copied out of the client's messages."""
        records = [
            ConsumedRecord(m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(), m.value())
            for m in consumer.consume(BATCH, 0.2)
            if m.error() is None
        ]
        for r in records:
            value = r.value
            if touch_bytes:
                record = serde.decode(value)
                record["source"] = "raw-passthrough"
                value = serde.encode(record)
            producer.produce(sink, value, r.key)
        if records:
            producer.flush(60)
            consumer.commit(offsets=next_offsets(records), asynchronous=False)
        return len(records)

    marks = _drain(run_batch)
    consumer.close()
    return {"marks": marks, "rss_mb": _rss_peak_mb(), "outputs": sum(n for _, n in marks)}


def qualifier_worker(prefix: str, group: str, touch_bytes: bool) -> dict[str, Any]:
    from drippulse import workers
    from drippulse.workers import build_qualifier, tune_gc_for_batches

    workers.QUALIFIER_GROUP = group
    worker = build_qualifier(_settings(prefix))
    tune_gc_for_batches()
    marks = _drain(worker.run_once)
    return {"marks": marks, "rss_mb": _rss_peak_mb(), "outputs": worker.stats.records_out}


def _steady_rate(results: list[dict[str, Any]]) -> float:
    """Events per second after the first WARMUP events, across all processes of one loop."""
    marks = sorted(mark for result in results for mark in result["marks"])
    done, start = 0, None
    for at, count in marks:
        done += count
        if start is None and done >= WARMUP:
            start, measured_from = at, done
    if start is None or marks[-1][0] <= start:
        raise RuntimeError("too few events to measure past the warm-up; raise BENCH_EVENTS")
    return (done - measured_from) / (marks[-1][0] - start)


def _measure(worker: Any, prefix: str, touch_bytes: bool = True) -> dict[str, Any]:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        results = pool.starmap(worker, [(prefix, group, touch_bytes)] * PROCESSES)
    total = sum(n for result in results for _, n in result["marks"])
    if total != EVENTS:
        raise RuntimeError(f"{worker.__name__} consumed {total} of {EVENTS} events")
    return {
        "events_per_s": _steady_rate(results),
        "rss_mb": max(r["rss_mb"] for r in results),
        "outputs_per_event": sum(r["outputs"] for r in results) / total,
    }


def create_orgs(prefix: str) -> list[str]:
    from bench.workflows import agent_workflow, workflow_definitions
    from drippulse.synthetic import create_orgs

    return create_orgs(_settings(prefix).database_url, [*workflow_definitions(), agent_workflow()], ORGS, "bench")


def agent_workflows(prefix: str, org_ids: list[str]) -> dict[str, str]:
    """Each org's agent: the workflow `create_orgs` added last."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_settings(prefix).database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT org_id, id FROM workflows WHERE org_id = ANY(:orgs) AND name = :name"),
                {"orgs": org_ids, "name": f"wf-{AGENT_INDEX}"},
            )
            return {org_id: workflow_id for org_id, workflow_id in rows}
    finally:
        engine.dispose()


def forget_leads(prefix: str, org_ids: list[str]) -> None:
    import redis

    from streams.state import state_keys

    client = redis.Redis.from_url(_settings(prefix).redis_url)
    try:
        client.delete(*(state_keys.lead_state(org_id) for org_id in org_ids))
    finally:
        client.close()


def _median_min_max(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[0], ordered[-1]


def engine_evals(events: int = 20_000) -> tuple[float, float]:
    """(evaluations per second, share of them that enrolled and ran the full step graph)."""
    from bench.workflows import workflow_definitions
    from drippulse.synthetic import lead_event
    from processors.compiler import compile_workflow
    from processors.events import EVENT_TYPE_BY_SYMBOL
    from processors.model import WorkflowDefinition
    from processors.routing import RoutingState

    compiled = [
        compile_workflow(f"wf-{k}", 1, WorkflowDefinition.model_validate(d))
        for k, d in enumerate(workflow_definitions())
    ]
    rng = random.Random(5)
    sample = []
    for n in range(events):
        event = lead_event(rng, f"org-{n % ORGS}", n)
        event["event_type"] = EVENT_TYPE_BY_SYMBOL[event["event_type"]].value
        sample.append(event)
    state = RoutingState()
    enrolled = 0
    started = time.perf_counter()
    for event in sample:
        for workflow in compiled:
            if workflow.triggers(event):
                workflow.evaluate(event, state)
                enrolled += 1
    total = events * len(compiled)
    return total / (time.perf_counter() - started), enrolled / total


def _machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "broker": "external" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else "embedded Tansu",
    }


def run() -> dict[str, Any]:
    prefix = f"bench-{uuid.uuid4().hex[:6]}."
    console.print(
        f"[bold]DripPulse benchmark[/bold]: {EVENTS:,} events ({WARMUP:,} warm-up), {ORGS:,} orgs x 10 "
        f"active workflows and an agent, {PROCESSES} process(es) per loop"
    )
    org_ids = create_orgs(prefix)
    produce_input(prefix, org_ids)
    broker = _measure(raw_worker, prefix, touch_bytes=False)
    raws, qualifiers = [], []
    for _ in range(ROUNDS):
        raws.append(_measure(raw_worker, prefix))
        forget_leads(prefix, org_ids)
        qualifiers.append(_measure(qualifier_worker, prefix))
    raw, raw_min, raw_max = _median_min_max([r["events_per_s"] for r in raws])
    qualifier, qualifier_min, qualifier_max = _median_min_max([q["events_per_s"] for q in qualifiers])
    ratio, ratio_min, ratio_max = _median_min_max(
        [q["events_per_s"] / r["events_per_s"] for r, q in zip(raws, qualifiers, strict=True)]
    )
    agent_prefix = f"{prefix}agent."
    produce_input(agent_prefix, org_ids, agent_workflows(prefix, org_ids))
    agents = []
    for _ in range(ROUNDS):
        forget_leads(prefix, org_ids)
        agents.append(_measure(qualifier_worker, agent_prefix))
    agent, agent_min, agent_max = _median_min_max([a["events_per_s"] for a in agents])
    webhooks = webhook_deliveries.measure(_settings(prefix), _settings(prefix).log_dir)
    orchestrator = orchestrator_resumes.measure(_settings(prefix), _settings(prefix).log_dir)
    model = model_updates.measure(_settings(prefix))
    calls = agent_calls.measure(_settings(prefix), _settings(prefix).log_dir)
    runs = sorted(engine_evals() for _ in range(5))
    evals_per_s, enrolled_share = runs[2]
    return {
        "engine_evals_per_s": round(evals_per_s),
        "engine_evals_per_s_min": round(runs[0][0]),
        "engine_evals_per_s_max": round(runs[-1][0]),
        "engine_enrolled_share": round(enrolled_share, 3),
        "broker_bytes_passthrough_events_per_s": round(broker["events_per_s"]),
        "raw_passthrough_events_per_s": round(raw),
        "raw_passthrough_events_per_s_min": round(raw_min),
        "raw_passthrough_events_per_s_max": round(raw_max),
        "qualifier_events_per_s": round(qualifier),
        "qualifier_events_per_s_min": round(qualifier_min),
        "qualifier_events_per_s_max": round(qualifier_max),
        "qualifier_vs_raw_ratio": round(ratio, 3),
        "qualifier_vs_raw_ratio_min": round(ratio_min, 3),
        "qualifier_vs_raw_ratio_max": round(ratio_max, 3),
        "qualifier_vs_broker_bytes_ratio": round(qualifier / broker["events_per_s"], 3),
        "qualifier_rss_mb": round(max(q["rss_mb"] for q in qualifiers), 1),
        "qualifier_outputs_per_event": round(qualifiers[0]["outputs_per_event"], 2),
        "agent_execute_events_per_s": round(agent),
        "agent_execute_events_per_s_min": round(agent_min),
        "agent_execute_events_per_s_max": round(agent_max),
        "agent_execute_vs_qualifier_ratio": round(agent / qualifier, 3),
        **webhooks,
        **orchestrator,
        **model,
        **calls,
    }


def report(figures: dict[str, Any]) -> None:
    table = Table(title="DripPulse benchmark (one broker, one run)")
    for column in ("figure", "value", "target", "met"):
        table.add_column(column)
    for name, value in figures.items():
        target = TARGETS.get(name)
        if target is None:
            table.add_row(name, f"{value:,}", "", "")
            continue
        direction, bound = target
        met = value >= bound if direction == ">=" else value <= bound
        table.add_row(name, f"{value:,}", f"{direction} {bound:,}", "yes" if met else "NO")
    console.print(table)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "figures": figures,
                "targets": TARGETS,
                "machine": _machine(),
                "workload": {
                    "webhook_messages": webhook_deliveries.MESSAGES,
                    "webhook_endpoints": webhook_deliveries.ENDPOINTS,
                    "events": EVENTS,
                    "warmup_events": WARMUP,
                    "orgs": ORGS,
                    "workflows_per_org": 10,
                    "agents_per_org": 1,
                    "processes_per_loop": PROCESSES,
                    "batch": BATCH,
                    "rounds": ROUNDS,
                    "score_lead_calls": agent_calls.CALLS,
                    "score_lead_clients": agent_calls.CLIENTS,
                    "score_lead_calls_per_client": agent_calls.CALLS_PER_CLIENT,
                },
            },
            indent=2,
        )
    )
    console.print(f"wrote {OUT}")


def main() -> None:
    from drippulse.devstack import EmbeddedStack, isolated_env
    from drippulse.settings import Settings

    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        home = Path(tempfile.mkdtemp(prefix="drippulse-bench-"))
        os.environ.update(isolated_env(home))
    stack = EmbeddedStack(Settings(), attached=True)
    stack.start()
    try:
        figures = run()
    finally:
        stack.stop()
    report(figures)


if __name__ == "__main__":
    main()
