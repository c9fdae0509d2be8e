"""Fault injection under a steady stream of leads: each fault, then recovery, then an exact account.

Every test streams leads through the API (tests/faults/harness.py, `LeadStream`) while it injects one
fault, ends it, and waits until the account is exact: every acknowledged event has exactly one
execution per matching workflow (two workflows match each lead), its CRM command applied once and
its webhook delivered, nothing left pending (GET /crm_commands shows every command applied, none
retrying; the dispatcher recorded every delivery). None of the stack's processes may die on the
way. The figures (events acknowledged, executions, duplicates absorbed, fault and recovery time)
are printed on a `FAULT-FIGURES` line.

The delivery guarantees held to, as documented:
- CRM (streams/delivery/crm_applier.py): an applied command is marked in Redis, so a replay skips it;
  the command id goes as `Idempotency-Key` for what a crash re-sends. So no fault may make a command
  reach the CRM twice, except a SIGKILL, which may re-send the commands of the batch it interrupted
  (the fake CRM honours the key, so they change nothing twice).
- Webhooks (streams/delivery/webhook_dispatcher.py, tests/integration/test_webhook_delivery.py):
  at-least-once with a stable `webhook-id`. Without a crash each webhook-id succeeds exactly once; a
  SIGKILL may re-send only the attempts in flight at the kill, and an attempt the dispatcher gave up
  waiting for may have reached the endpoint too. In every case the dispatcher records exactly one
  successful attempt per delivery.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest

from drippulse.operators import create_org
from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests import control_plane
from tests.faults.approvals import ApprovalsOrg
from tests.faults.fakes import FaultyCrm, Outage
from tests.faults.harness import (
    CRM_BATCH_SIZE,
    RECOVERY_TIMEOUT_S,
    WORKER_GROUPS,
    Consumed,
    FaultStack,
    committed_offsets,
    read_org,
    scenario,
)
from tests.integration.helpers import activate_workflow
from tests.stack import read_topic, wait_until

pytestmark = pytest.mark.stack
OUTAGE_S = 10.0
"""Redis and the broker: as long as the issue asks."""
SHORT_FAULT_S = 6.0
"""The sink, the CRM and the endpoint: long enough for several rounds of retries."""
WEBHOOK_MAX_IN_FLIGHT = 500
"""The dispatcher's default `webhook_max_in_flight`: the most attempts a SIGKILL can interrupt."""


def _hold(started: float, seconds: float) -> None:
    """The rest of the fault's duration: the only fixed wait the suite makes."""
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))


def test_redis_stopped_for_10_s(fault_stack: FaultStack) -> None:
    """Workers back off and commit nothing while Redis is down; the API keeps accepting events without
    a client id (they need no dedup window) and answers 503 with Retry-After to one with an id (the
    probe, never accepted, so it must appear nowhere); everything is processed once Redis is back."""
    with scenario(fault_stack, "redis", client_ids=False) as run:
        failures = fault_stack.failures_logged("qualifier")
        fault_stack.stop_redis()
        started = time.monotonic()
        try:
            wait_until(lambda: fault_stack.failures_logged("qualifier") > failures, OUTAGE_S, "the qualifier to fail")
            committed = {kind: fault_stack.committed(kind) for kind in WORKER_GROUPS}
            acked = len(run.stream.acked)
            probe = {"event_id": "redis-probe", "event_type": "lead.created", "lead": {"lead_id": "probe"}}
            refused = run.client.post("/api/v1/events", json=probe)
            assert refused.status_code == 503 and refused.headers["retry-after"].isdigit(), refused.text
            _hold(started, OUTAGE_S)
            assert {kind: fault_stack.committed(kind) for kind in WORKER_GROUPS} == committed, (
                "a worker committed offsets while Redis was down"
            )
            assert len(run.stream.acked) > acked, "the API went on accepting events"
        finally:
            fault_stack.start_redis()
        figures, _ = run.end("Redis stopped for 10 s", started)
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] == 0


def test_broker_unreachable_for_10_s(fault_stack: FaultStack) -> None:
    """POST /events answers 503 with Retry-After while the broker cannot acknowledge, neither hanging
    nor failing with 500; the client's retries (same event ids) are absorbed, and nothing acknowledged
    with 202 is lost."""
    with scenario(fault_stack, "broker") as run:
        fault_stack.freeze_broker()
        started = time.monotonic()
        try:
            time.sleep(OUTAGE_S)
        finally:
            fault_stack.thaw_broker()
        figures, _ = run.end("broker unreachable for 10 s", started)
        statuses, retry_after, no_answer = run.stream.statuses, run.stream.retry_after, run.stream.no_answer
    assert statuses[503] > 0, "the API answered 503 while the broker was unreachable"
    assert set(statuses) <= {202, 503} and no_answer == [], f"answers {statuses}, no answer: {no_answer}"
    assert all(value.isdigit() and int(value) > 0 for value in retry_after), retry_after
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] == 0


def _committed_were_written(written: set[str], below: list[Consumed]) -> None:
    """Every execution below the sink's committed offsets is in ClickHouse."""
    missing = {r.value["execution_id"] for r in below} - written
    assert not missing, f"the sink committed past {len(missing)} rows it did not write"


def test_clickhouse_sink_refusing_writes(fault_stack: FaultStack) -> None:
    """The sinks retry their batches while ClickHouse refuses writes, committing no offset past a row
    they did not write, and catch up afterwards; reads keep working meanwhile."""
    settings: Settings = fault_stack.settings
    with scenario(fault_stack, "sink") as run:
        fault_stack.sink_switch.touch()
        started = time.monotonic()
        try:
            wait_until(lambda: fault_stack.health().get("checks", {}).get("sinks") == "error", 30, "a sink to fail")
            _hold(started, SHORT_FAULT_S)
            committed = committed_offsets(settings, "drippulse-sink-executions", topics.EXECUTIONS)
            below = read_org(settings, run.org_id, (topics.EXECUTIONS,), below=committed)[topics.EXECUTIONS]
            written = run.execution_ids()
            _committed_were_written(written, below)
            assert len(written) < len(run.stream.acked) * len(run.workflow_ids), "rows were held back"
        finally:
            fault_stack.sink_switch.unlink()
        figures, _ = run.end("ClickHouse refusing writes for 6 s", started)
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] == 0


def test_sigkill_webhooks_worker_mid_delivery(fault_stack: FaultStack) -> None:
    """Killed while deliveries are in flight (the endpoint holds them), restarted at once: every
    message delivered; only the attempts in flight at the kill may be sent again."""
    worker = fault_stack.workers["webhooks"]
    with scenario(fault_stack, "kill-webhooks") as run:
        run.endpoint_up.clear()
        wait_until(lambda: run.receiver.concurrent > 0, 30, "a delivery in flight")
        started = time.monotonic()
        worker.kill()
        run.endpoint_up.set()
        worker.start()
        figures, _ = run.end("SIGKILL of the webhooks worker", started)
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] <= WEBHOOK_MAX_IN_FLIGHT


def test_sigkill_crm_worker_mid_batch(fault_stack: FaultStack) -> None:
    """Killed while a CRM request of its batch is in flight, restarted at once: every command applied
    once; only the interrupted batch's commands may be sent again, with their idempotency keys."""
    worker = fault_stack.workers["crm"]
    with scenario(fault_stack, "kill-crm") as run:
        run.crm.held.clear()
        wait_until(lambda: run.crm.in_flight > 0, 30, "a CRM request in flight")
        started = time.monotonic()
        worker.kill()
        run.crm.held.set()
        worker.start()
        figures, _ = run.end("SIGKILL of the CRM worker", started, resent_commands=CRM_BATCH_SIZE)
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] == 0


def test_crm_answering_429_then_500s(fault_stack: FaultStack) -> None:
    """The CRM throttles (429, Retry-After: 1), then fails (500), then recovers: commands are retried,
    parked and applied once each, and no command is asked again before its Retry-After."""
    with scenario(fault_stack, "crm-outage") as run:
        run.crm.outage = Outage(429, retry_after_s=1)
        started = time.monotonic()
        try:
            _hold(started, SHORT_FAULT_S / 2)
            run.crm.outage = Outage(500)
            _hold(started, SHORT_FAULT_S)
        finally:
            run.crm.outage = None
        figures, _ = run.end("CRM answering 429 then 500s for 6 s", started)
        requests = list(run.crm.requests)
    answered = Counter(r.status for r in requests)
    assert answered[429] > 0 and answered[500] > 0, answered
    by_key = defaultdict(list)
    for request in requests:
        by_key[request.idempotency_key].append(request)
    for key_requests in by_key.values():
        for throttled, after in itertools.pairwise(key_requests):
            if throttled.status == 429:
                assert after.at - throttled.at >= 0.95, "asked again before the 429's Retry-After"
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] == 0


def test_webhook_endpoint_hanging(fault_stack: FaultStack) -> None:
    """The endpoint stops answering for a while: attempts time out and are retried, and every message
    is delivered afterwards. An attempt the dispatcher stopped waiting for may still have reached the
    endpoint, so a webhook-id may succeed there once per such attempt, and no more."""
    with scenario(fault_stack, "hang") as run:
        run.endpoint_up.clear()
        started = time.monotonic()
        try:
            wait_until(lambda: run.receiver.concurrent > 0, 30, "a delivery to hang")
            _hold(started, SHORT_FAULT_S)
        finally:
            run.endpoint_up.set()
        _, by_topic = run.end("webhook endpoint hanging for 6 s", started)
        delivered = run.delivered()
    timed_out: Counter[str] = Counter(
        message_id
        for message_id, _ in {
            (a.value["message_id"], a.value["attempt_id"])
            for a in by_topic[topics.WEBHOOK_ATTEMPTS]
            if a.value["error"].startswith("no answer")
        }
    )
    assert sum(timed_out.values()) > 0, "attempts timed out while the endpoint hung"
    assert all(n <= 1 + timed_out[message_id] for message_id, n in delivered.items())


def test_a_manual_run_retried_with_its_key_after_a_503_runs_each_lead_once(fault_stack: FaultStack) -> None:
    """The documented retry: the broker does not acknowledge a manual run (503), the client sends the
    same body with the same Idempotency-Key once it is back. Both attempts' events reach the topic
    (the first stayed queued in the API's producer) with the same ids, so each lead has one
    execution and the CRM gets one write per lead, not two."""
    settings = fault_stack.settings
    wait_until(fault_stack.api_healthy, 60, "the stack to report healthy")
    created = create_org(settings, "Faults manual run")
    client = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {created.api_key}"}, timeout=60)
    workflow_id = activate_workflow(client, "Lead Qualification", LEAD_QUALIFICATION)["id"]
    path = f"/api/v1/workflows/{workflow_id}/runs"
    body = {"leads": [{"lead_id": f"m{n}", "email": f"buyer{n}@initech.net", "title": "VP Sales"} for n in range(3)]}
    headers = {"Idempotency-Key": "retry-after-503"}
    with FaultyCrm() as crm:
        connection = client.post(
            "/api/v1/integration_connections",
            json={"type": "hubspot", "name": "HubSpot", "base_url": "https://93.184.216.34", "credentials": "pat"},
        )
        assert connection.status_code == 201, connection.text
        control_plane.repoint_connection(settings, created.org_id, connection.json()["id"], crm.url)
        fault_stack.freeze_broker()
        try:
            refused = client.post(path, json=body, headers=headers)
        finally:
            fault_stack.thaw_broker()
        assert refused.status_code == 503 and refused.headers["retry-after"].isdigit(), refused.text

        def retry() -> httpx.Response | None:
            answer = client.post(path, json=body, headers=headers)
            return answer if answer.status_code == 202 else None

        event_ids = set(wait_until(retry, 60, "the retry to be accepted").json()["event_ids"])

        def both_attempts_evaluated() -> list[dict[str, Any]] | None:
            found = read_topic(settings, topics.EXECUTIONS, key=created.org_id)
            return found if len(found) >= 2 * len(body["leads"]) else None

        executions = wait_until(both_attempts_evaluated, 60, "both attempts' events evaluated")
        wait_until(lambda: len(crm.applied) >= len(body["leads"]), 60, "the CRM writes")
        commands = {c["command_id"] for c in read_topic(settings, topics.CRM_COMMANDS, key=created.org_id)}
    assert {e["event_id"] for e in executions} == event_ids, "the first attempt's events are the retry's"
    assert len({e["execution_id"] for e in executions}) == len(body["leads"])
    assert len(commands) == len(crm.applied) == len(body["leads"]), "one CRM write per lead"


def test_postgresql_stopped_for_10_s_with_approvals_opening_decisions_and_schedules(fault_stack: FaultStack) -> None:
    """PostgreSQL stopped and restarted while leads stream in, approvals open, people decide and a
    schedule fires: the API answers 503 with Retry-After (never 500) while it is down, no process
    dies, and afterwards the account is exact: every event once, every approval opened once and
    resumed with the decision its decider was told, every claimed fire time completed with exactly
    its leads run."""
    fault_stack.orchestrator().start()
    with scenario(fault_stack, "postgres") as run:
        side = ApprovalsOrg(fault_stack, "pg", schedule=True)
        side.post_leads(6)
        first = side.wait_opened()
        side.decide(first[:3])
        fault_stack.stop_postgres()
        started = time.monotonic()
        try:
            assert side.try_deciding(first[3]) == 503, "a decision while PostgreSQL is down is a 503 to retry"
            _hold(started, OUTAGE_S)
        finally:
            fault_stack.start_postgres()
        side.post_leads(6)
        side.decide(side.wait_opened())
        figures, _ = run.end("PostgreSQL stopped for 10 s", started)
        orchestrated = side.account()
        statuses = run.stream.statuses
    assert orchestrated["fire_times"] > 0, "the schedule fired"
    print(f"\nFAULT-FIGURES {json.dumps({'fault': 'PostgreSQL stopped for 10 s', **orchestrated})}", flush=True)
    assert set(statuses) <= {202, 503}, statuses
    assert figures.duplicates["webhook_ids_sent_again_after_a_2xx"] == 0


def test_an_orchestrator_killed_during_a_rebalance_with_decisions_pending(fault_stack: FaultStack) -> None:
    """Two orchestrators share the inbox: a second one joins (a rebalance starts), people decide, and
    the first is SIGKILLed while the group rebalances. Every decided execution resumes exactly once, with
    its decision: none is lost on a partition whose table the new owner had not rebuilt yet."""
    first = fault_stack.orchestrators[0] if fault_stack.orchestrators else fault_stack.orchestrator()
    if first.process is None or first.process.poll() is not None:
        first.start()
    assert first.process is not None
    side = ApprovalsOrg(fault_stack, "rebalance")
    side.post_leads(12)
    pending = side.wait_opened()
    revoking = f"[{first.process.pid}] [INFO] Revoking previously assigned partitions"
    rebalances = fault_stack.logged("orchestrator", revoking)
    second = fault_stack.orchestrator()
    second.start(wait=False)
    wait_until(lambda: fault_stack.logged("orchestrator", revoking) > rebalances, 60, "the second one to join")
    side.decide(pending)
    first.kill()
    fault_stack.orchestrators.remove(first)
    assert second.ready is not None
    wait_until(second.ready.exists, RECOVERY_TIMEOUT_S, "the second orchestrator to own the partitions")
    figures = side.account()
    print(f"\nFAULT-FIGURES {json.dumps({'fault': 'orchestrator killed mid-rebalance', **figures})}", flush=True)
    assert not fault_stack.dead(), f"parts of the stack died: {fault_stack.dead()}"
