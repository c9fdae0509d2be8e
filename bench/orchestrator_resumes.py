"""orchestrator_resumes_per_s and wait_lateness_p99_ms: one real `drippulse worker orchestrator`.

Paused executions are made by the engine (evaluate, then suspend, as the qualifier does) and put on
the orchestrator's inbox before it starts, so the figures measure the orchestrator alone:
- capacity: APPROVALS approvals are decided at once (one UPDATE, as if that many people clicked
  together) and WAITS waits fall due at once; the rate is completed executions per second, from the
  resume times the executions record, after the first tenth (the orchestrator finding its feet).
- lateness: PACED waits fall due evenly over PACED_S seconds (the target rate, 1,000/s); the figure
  is the 99th percentile of (resumed at - due at) from each execution's timeline.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

APPROVALS = int(os.environ.get("BENCH_APPROVALS", "20000"))
WAITS = int(os.environ.get("BENCH_WAITS", "20000"))
PACED = int(os.environ.get("BENCH_PACED_WAITS", "20000"))
PACED_S = 20.0
LEAD_MS = 15_000
"""The paced waits reach the inbox this long before the first falls due: time to hold them all, as
waits that paused over the hours before would be."""
ORGS = 100
LEAD_ACTIONS = [
    {"type": "action", "action": "crm_update"},
    {"type": "action", "action": "webhook_notify", "event_type": "lead.qualified"},
]
WAIT_WORKFLOW = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [{"type": "wait", "until_field": "lead.attributes.resume_at"}, *LEAD_ACTIONS],
}
APPROVAL_WORKFLOW = {"trigger": {"event_types": ["lead.created"]}, "steps": [{"type": "approval"}, *LEAD_ACTIONS]}


def _suspensions(settings: Any, org_ids: list[str], count: int, kind: str, due_ms: Any, salt: str) -> int:
    """Puts `count` paused executions of the org's `kind` workflow on the inbox; `due_ms(n)` is when
    the n-th wait ends."""
    from sqlalchemy import create_engine, text

    from drippulse.synthetic import lead_event
    from processors.compiler import compile_workflow
    from processors.model import WorkflowDefinition
    from processors.orchestration import suspend
    from processors.routing import RoutingState
    from streams import topics
    from streams.clock import now_ms
    from streams.qualifier import suspended
    from streams.runtime.kafka import make_producer, produce_all
    from streams.runtime.schema_registry import make_registry
    from streams.runtime.serde import AvroSerde

    name = "wf-0" if kind == "wait" else "wf-1"
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        workflow_of = dict(
            connection.execute(
                text("SELECT org_id, id FROM workflows WHERE org_id = ANY(:orgs) AND name = :name"),
                {"orgs": org_ids, "name": name},
            ).all()
        )
    engine.dispose()
    definition = WorkflowDefinition.model_validate(WAIT_WORKFLOW if kind == "wait" else APPROVAL_WORKFLOW)
    compiled = {org_id: compile_workflow(workflow_id, 1, definition) for org_id, workflow_id in workflow_of.items()}
    inbox = topics.topic_name(topics.ORCHESTRATOR_INBOX, settings.topic_prefix)
    serde = AvroSerde(topics.ORCHESTRATOR_INBOX, inbox, make_registry(settings.schema_registry_url))
    rng = random.Random(count)
    records = []
    at = now_ms()
    for n in range(count):
        org_id = org_ids[n % len(org_ids)]
        event = lead_event(rng, org_id, n)
        event["event_id"] = f"{salt}-{n}"
        event["event_type"] = "lead.created"
        event["lead"]["lead_id"] = f"{salt}-lead-{n}"
        event["lead"]["attributes"]["resume_at"] = str(due_ms(n))
        execution = compiled[org_id].evaluate(event, RoutingState())
        records.append((inbox, org_id.encode(), serde.encode(suspended(suspend(execution, at), at))))
    producer = make_producer(settings.kafka)
    produce_all(producer, records)
    assert producer.flush(120) == 0
    return count


class _Completions:
    """Reads the executions the orchestrator completes, by event id: (resumed at ms, wait ended at
    ms or None)."""

    def __init__(self, settings: Any) -> None:
        import uuid

        from confluent_kafka import Consumer

        from streams import topics
        from streams.runtime.schema_registry import make_registry
        from streams.runtime.serde import AvroSerde

        name = topics.topic_name(topics.EXECUTIONS, settings.topic_prefix)
        self._serde = AvroSerde(topics.EXECUTIONS, name, make_registry(settings.schema_registry_url))
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": f"bench-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe([name])
        self.done: dict[str, tuple[int, int | None]] = {}

    def collect(self, prefix: str, expected: int, timeout_s: float) -> list[tuple[int, int | None]]:
        deadline = time.monotonic() + timeout_s
        mine = [value for key, value in self.done.items() if key.startswith(f"{prefix}-")]
        while len(mine) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(mine)} of {expected} {prefix} executions completed in {timeout_s:.0f} s")
            for message in self._consumer.consume(5000, 0.5):
                if message.error() is not None:
                    continue
                record = self._serde.decode(message.value())
                if record["status"] != "completed" or record["event_id"] in self.done:
                    continue
                timeline = {entry["what"]: entry["at_ms"] for entry in record["timeline"]}
                if "resumed" in timeline:  # not the qualifier rounds' executions, on the same topic
                    self.done[record["event_id"]] = (timeline["resumed"], timeline.get("wait_elapsed"))
            mine = [value for key, value in self.done.items() if key.startswith(f"{prefix}-")]
        return mine

    def close(self) -> None:
        self._consumer.close()


def _rate(resumed_ms: list[int]) -> float:
    ordered = sorted(resumed_ms)
    steady = ordered[len(ordered) // 10 :]
    return (len(steady) - 1) / max((steady[-1] - steady[0]) / 1000, 1e-3)


def _p99(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _pending_approvals(settings: Any, org_ids: list[str]) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM approvals WHERE org_id = ANY(:orgs) AND status = 'pending'"),
                    {"orgs": org_ids},
                ).scalar()
                or 0
            )
    finally:
        engine.dispose()


def _decide_all(settings: Any, org_ids: list[str]) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE approvals SET status = 'approved', decided_at = now(), decided_by = CAST(:by AS jsonb) "
                    "WHERE org_id = ANY(:orgs) AND status = 'pending'"
                ),
                {"orgs": org_ids, "by": '{"type": "user", "id": "usr_bench", "label": "bench@example.com"}'},
            )
    finally:
        engine.dispose()


def measure(settings: Any, log_dir: Path) -> dict[str, Any]:
    from drippulse.processes import spawn, terminate
    from drippulse.synthetic import create_orgs
    from streams.clock import now_ms
    from streams.runtime.kafka import ensure_topics

    ensure_topics(settings.kafka)
    org_ids = create_orgs(settings.database_url, [WAIT_WORKFLOW, APPROVAL_WORKFLOW], ORGS, "bench-orchestrator")
    far = now_ms() + 3_600_000
    _suspensions(settings, org_ids, APPROVALS, "approval", lambda n: far, "a")
    _suspensions(settings, org_ids, WAITS, "wait", lambda n: far, "w")
    ready = log_dir / "orchestrator-bench-ready"
    process = spawn(
        [sys.executable, "-m", "drippulse", "worker", "orchestrator", "--ready-file", str(ready)],
        log_dir / "orchestrator-bench.log",
        attached=True,
    )
    completions = _Completions(settings)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() or _pending_approvals(settings, org_ids) < APPROVALS:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the orchestrator did not hold the approvals; see {log_dir}")
            time.sleep(0.2)
        due_now = now_ms()
        _suspensions(settings, org_ids, WAITS, "wait", lambda n: due_now, "x")
        _decide_all(settings, org_ids)
        burst = completions.collect("a", APPROVALS, 300) + completions.collect("x", WAITS, 300)
        start = now_ms() + LEAD_MS
        _suspensions(settings, org_ids, PACED, "wait", lambda n: start + int(n * PACED_S * 1000 / PACED), "p")
        paced = completions.collect("p", PACED, PACED_S + 120)
    finally:
        completions.close()
        terminate(process.pid)
        process.wait(timeout=20)
    return {
        "orchestrator_resumes_per_s": round(_rate([resumed for resumed, _ in burst])),
        "wait_lateness_p50_ms": sorted(resumed - due for resumed, due in paced if due is not None)[len(paced) // 2],
        "wait_lateness_p99_ms": _p99([resumed - due for resumed, due in paced if due is not None]),
    }


def main() -> None:
    from bench.alone import alone

    print(alone("resumes", lambda settings: measure(settings, settings.log_dir)))


if __name__ == "__main__":
    main()
