"""score_lead_p50_ms, score_lead_p99_ms, score_lead_per_s: `POST /api/v1/agents/{id}/score_lead`
through the HTTP API, as a caller sees it.

One `drippulse api` process, the one `make run` starts, on a topic prefix of its own: its embedded
ClickHouse sinks find nothing of the other sections to write while it is measured. One org with the
built-in Lead Qualification Agent deployed as the demo deploys it (drippulse/demo_agent.py) and a
learned model, trained on synthetic outcomes and stored as the trainer stores it, so each call
reads and applies the org's model as in production. Every call scores another synthetic lead
(drippulse/synthetic.py), with the demo's bootstrap admin key.

- Latency: one client, one keep-alive connection, one call at a time: WARMUP calls, then CALLS
  timed from before the request is sent to the parsed answer. A quantile is the value at 0-based
  position ⌊q·n⌋ of the n sorted ones (ClickHouse's quantileExact, as the metrics routes use).
- Throughput: CLIENTS threads of this process, each with its own connection, CALLS_PER_CLIENT calls
  each back to back: answers a second from the first request to the last answer.
Every answer must be a 200; anything else stops the benchmark rather than being timed.
Alone: `python -m bench.agent_calls` (its own embedded stack).
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.alone import alone

CALLS = int(os.environ.get("BENCH_SCORE_LEAD_CALLS", "2000"))
WARMUP = int(os.environ.get("BENCH_SCORE_LEAD_WARMUP", "200"))
CLIENTS = 8
CALLS_PER_CLIENT = int(os.environ.get("BENCH_SCORE_LEAD_CALLS_PER_CLIENT", "500"))
MODEL_OUTCOMES = 5_000


def _leads(count: int, seed: int) -> list[dict[str, Any]]:
    from drippulse.synthetic import lead_event

    rng = random.Random(seed)
    return [lead_event(rng, "org-bench", n)["lead"] for n in range(count)]


def _store_model(settings: Any, org_id: str) -> None:
    """Version 1 of the org's model, learned from synthetic outcomes and checkpointed by the
    trainer's own store."""
    from drippulse.synthetic import conversion_probability
    from processors.learned_model import LearnedModel
    from streams.state.control_plane import connect
    from streams.state.lead_models import Checkpoint, ModelStore

    rng = random.Random(11)
    model = LearnedModel()
    for lead in _leads(MODEL_OUTCOMES, 12):
        model.learn(lead, rng.random() < conversion_probability(lead))
    engine = connect(settings.database_url)
    try:
        ModelStore(engine, "bench-agent-calls", settings.model_versions_kept).checkpoint(
            Checkpoint(models={org_id: (1, model)}, offsets={}, expected={})
        )
    finally:
        engine.dispose()


def _score(client: httpx.Client, path: str, lead: dict[str, Any]) -> None:
    answer = client.post(path, json={"lead": lead})
    if answer.status_code != 200:
        raise RuntimeError(f"score_lead answered {answer.status_code}: {answer.text[:500]}")
    answer.json()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _latencies(base_url: str, headers: dict[str, str], path: str) -> list[float]:
    """Milliseconds per call, one call at a time, after the warm-up."""
    leads = _leads(WARMUP + CALLS, 21)
    timings = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        for n, lead in enumerate(leads):
            started = time.perf_counter()
            _score(client, path, lead)
            if n >= WARMUP:
                timings.append((time.perf_counter() - started) * 1000)
    return timings


def _throughput(base_url: str, headers: dict[str, str], path: str) -> float:
    """Answers a second with CLIENTS clients calling at once."""
    leads = _leads(CLIENTS * CALLS_PER_CLIENT, 31)
    clients = [httpx.Client(base_url=base_url, headers=headers, timeout=30) for _ in range(CLIENTS)]
    failures: list[Exception] = []
    start = threading.Barrier(CLIENTS + 1)

    def calls(client: httpx.Client, mine: list[dict[str, Any]]) -> None:
        start.wait()
        try:
            for lead in mine:
                _score(client, path, lead)
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=calls, args=(c, leads[n::CLIENTS]), daemon=True) for n, c in enumerate(clients)]
    try:
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    finally:
        for client in clients:
            client.close()
    if failures:
        raise RuntimeError(f"{len(failures)} of {CLIENTS} clients failed") from failures[0]
    return len(leads) / elapsed


def _running(api: Any, log: Path) -> None:
    if api.poll() is not None:
        raise RuntimeError(f"the API exited with {api.returncode}; see {log}")


def measure(settings: Any, log_dir: Path) -> dict[str, Any]:
    from drippulse.demo_agent import deploy_agent
    from drippulse.operators import create_org
    from drippulse.processes import spawn, terminate
    from drippulse.services import wait_for_api

    log = log_dir / "bench-api.log"
    env = {
        **os.environ,
        "DRIPPULSE_TOPIC_PREFIX": f"{settings.topic_prefix}calls-{uuid.uuid4().hex[:6]}.",
        "DRIPPULSE_LOG_LEVEL": "WARNING",
    }
    api = spawn([sys.executable, "-m", "drippulse", "api"], log, attached=True, env=env)
    try:
        wait_for_api(settings.api_url, lambda: _running(api, log), 90, log)
        created = create_org(settings, f"bench-agent-calls-{uuid.uuid4().hex[:6]}")
        _store_model(settings, created.org_id)
        headers = {"Authorization": f"Bearer {created.api_key}"}
        with httpx.Client(base_url=settings.api_url, headers=headers, timeout=30) as client:
            agent = deploy_agent(client, created.project_id, [])
        path = f"/api/v1/agents/{agent['id']}/score_lead"
        latencies = _latencies(settings.api_url, headers, path)
        per_s = _throughput(settings.api_url, headers, path)
    finally:
        terminate(api.pid)
        api.wait(timeout=20)
    return {
        "score_lead_p50_ms": round(_quantile(latencies, 0.5), 1),
        "score_lead_p99_ms": round(_quantile(latencies, 0.99), 1),
        "score_lead_per_s": round(per_s),
    }


def main() -> None:
    print(alone("calls", lambda settings: measure(settings, settings.log_dir)))


if __name__ == "__main__":
    main()
