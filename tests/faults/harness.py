"""The fault suite's own stack and its instruments.

The faults stop Redis, freeze the broker and make ClickHouse refuse writes, so they cannot touch the
session's shared stack that every other test uses. `FaultStack` is a second embedded stack under its
own DRIPPULSE_HOME on free ports, with the API as a process of its own (chdb allows one session per
process, and the test process's API may hold it) and one process per worker kind, each of which a
test may SIGKILL.

Each test runs a `Scenario`: a fresh organization with two workflows triggered by `lead.created`
(Lead Qualification, which sends a CRM command and a webhook notification, and a log-only one), a
webhook endpoint and a CRM connection aimed at local fakes, and a `LeadStream` posting leads through
the API at a steady rate. After the fault, `Scenario.account` waits until every acknowledged event
has exactly one execution per workflow, its CRM command applied and its webhook delivered, and
`Scenario.verify` checks that by identity, reads the topics for what was replayed and absorbed on
the way, and prints the figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from drippulse.devstack import EmbeddedStack
from drippulse.operators import create_org
from drippulse.processes import spawn, terminate
from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION
from streams import topics
from tests import control_plane
from tests.conftest import WEBHOOK_WORKER_ENV
from tests.faults.fakes import FaultyCrm
from tests.integration.helpers import activate_workflow
from tests.stack import SERVICE_URLS, WorkerProcess, serde_for, stack_env, wait_until
from tests.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
RECOVERY_TIMEOUT_S = 150.0
SENDERS = 3
SEND_INTERVAL_S = 0.1
"""Three senders, each a lead every 100 ms at most: up to 30 a second, a modest steady stream on a
shared 2-core CI machine."""
BEFORE_FAULT = 30
"""Events acknowledged, and the first one carried end to end, before a fault is injected."""
CRM_BATCH_SIZE = 20
"""The CRM worker's batch: what a SIGKILL mid-batch may at most re-send."""
WORKER_ENV: dict[str, dict[str, str]] = {
    "qualifier": {},
    "webhooks": WEBHOOK_WORKER_ENV,
    "crm": {
        "DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true",
        "DRIPPULSE_BATCH_SIZE": str(CRM_BATCH_SIZE),
        "DRIPPULSE_CRM_MAX_ATTEMPTS": "4",
        "DRIPPULSE_CRM_BACKOFF_S": "0.2,0.2,0.4",
        "DRIPPULSE_CRM_PARK_SCHEDULE_S": ",".join(["1"] * 60),
        "DRIPPULSE_CRM_TIMEOUT_S": "2",
        "DRIPPULSE_CRM_BATCH_BUDGET_S": "1",
    },
}
"""Loopback allowed (the fakes listen on 127.0.0.1), 2 s timeouts and quick retries, as in the
integration tests; the CRM parks for 1 s rounds, 60 of them, more than any fault here lasts."""
WORKER_GROUPS = {
    "qualifier": ("drippulse-qualifier", topics.INBOUND_EVENTS),
    "webhooks": ("drippulse-webhooks", topics.WEBHOOK_DELIVERIES),
    "crm": ("drippulse-crm", topics.CRM_COMMANDS),
}
LOG_ONLY: dict[str, Any] = {
    "trigger": {"event_types": ["lead.created"]},
    "steps": [{"type": "action", "action": "log", "message": "lead arrived"}],
}
READ_TOPICS = (
    topics.INBOUND_EVENTS,
    topics.EXECUTIONS,
    topics.CRM_COMMANDS,
    topics.CRM_RESULTS,
    topics.WEBHOOK_DELIVERIES,
    topics.WEBHOOK_ATTEMPTS,
)


class FaultStack:
    """Tansu, Redis and PostgreSQL (embedded), the API with chdb, and the three worker processes."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**{name: "" for name in SERVICE_URLS}, **stack_env(home), "PYTHONPATH": str(ROOT)}
        self.settings = Settings(**self.env)
        self.stack = EmbeddedStack(self.settings, attached=True)
        self.sink_switch = home / "clickhouse-refuses-writes"
        """While this file exists the API's sinks cannot insert (tests/faults/fault_api.py)."""
        self.api: subprocess.Popen[bytes] | None = None
        self.workers = {
            kind: WorkerProcess(self.settings, kind, {**self.env, **env}) for kind, env in WORKER_ENV.items()
        }
        self.orchestrators: list[WorkerProcess] = []
        """Started by the tests that need them (`orchestrator`)."""

    def start(self) -> None:
        self.stack.start()
        self.api = spawn(
            [sys.executable, "-m", "tests.faults.fault_api", str(self.sink_switch)],
            self.settings.log_dir / "api.log",
            attached=True,
            env={**os.environ, **self.env},
        )
        wait_until(self.api_healthy, 120, "the fault suite's API to become healthy")
        self.start_workers(*self.workers)

    def start_workers(self, *kinds: str) -> None:
        """One after the other, from this thread: a child started from another thread would get its
        parent-death signal when that thread ends (drippulse/processes.py)."""
        for kind in kinds:
            self.workers[kind].start()
        assert not self.dead(), f"worker(s) exited at start: {self.dead()}; see {self.settings.log_dir}"

    def stop(self) -> None:
        for worker in [*self.workers.values(), *self.orchestrators]:
            worker.stop()
        if self.api is not None:
            terminate(self.api.pid, timeout_s=20)
            self.api.wait(timeout=30)
        self.stack.stop()

    def api_healthy(self) -> bool:
        return self.health().get("status") == "ok"

    def health(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = httpx.get(f"{self.settings.api_url}/health", timeout=10).json()
        except httpx.HTTPError:
            return {}
        return body

    def dead(self) -> list[str]:
        """The parts that exited: none may, whatever the fault (a worker that crash-loops is a defect)."""
        gone = [kind for kind, w in self.workers.items() if w.process is not None and w.process.poll() is not None]
        gone += [
            f"orchestrator {n}" for n, w in enumerate(self.orchestrators) if w.process and w.process.poll() is not None
        ]
        if self.api is not None and self.api.poll() is not None:
            gone.append("api")
        return gone

    def stop_redis(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits, as in a restart or a failover."""
        redis = self.stack.processes.pop("redis")
        terminate(redis.pid)
        redis.wait(timeout=15)

    def start_redis(self) -> None:
        """Starts what is not running (Redis) on the same port and data directory, and waits for it."""
        self.stack.start()

    def stop_postgres(self) -> None:
        """SIGINT: PostgreSQL's fast shutdown, as in a restart or a failover: connections are cut."""
        postgres = self.stack.processes.pop("postgres")
        terminate(postgres.pid, stop_signal=signal.SIGINT)
        postgres.wait(timeout=30)

    def start_postgres(self) -> None:
        """Starts what is not running (PostgreSQL) on the same port and data directory, and waits for it."""
        self.stack.start()

    def orchestrator(self) -> WorkerProcess:
        """One more `drippulse worker orchestrator` (they share the inbox partitions), stopped with
        the stack; not started."""
        worker = WorkerProcess(self.settings, "orchestrator", self.env)
        self.orchestrators.append(worker)
        return worker

    def freeze_broker(self) -> None:
        """SIGSTOP: the broker keeps its (in-memory) topics and its connections, and answers nothing."""
        os.kill(self.stack.processes["kafka"].pid, signal.SIGSTOP)

    def thaw_broker(self) -> None:
        os.kill(self.stack.processes["kafka"].pid, signal.SIGCONT)

    def committed(self, kind: str) -> dict[int, int]:
        """A worker kind's committed offsets on its input topic, per partition."""
        group, topic = WORKER_GROUPS[kind]
        return committed_offsets(self.settings, group, topic)

    def logged(self, kind: str, text: str) -> int:
        """How many lines of the worker kind's log contain `text`."""
        log = self.settings.log_dir / f"{kind}.log"
        return log.read_text(errors="replace").count(text) if log.exists() else 0

    def failures_logged(self, kind: str) -> int:
        """How many failed batches the worker kind logged so far (the batch runtime's back-off line)."""
        log = self.settings.log_dir / f"{kind}.log"
        return log.read_text(errors="replace").count(" failed (") if log.exists() else 0


def committed_offsets(settings: Settings, group: str, topic: topics.Topic) -> dict[int, int]:
    """Read without joining the group: a consumer that never subscribes is not a member."""
    name = topics.topic_name(topic, settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": group})
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        found = consumer.committed([TopicPartition(name, p) for p in partitions], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found}


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    value: dict[str, Any]


def read_org(
    settings: Settings, org_id: str, wanted: tuple[topics.Topic, ...] = READ_TOPICS, below: dict[int, int] | None = None
) -> dict[topics.Topic, list[Consumed]]:
    """Every record of one organization on each topic, with its position. One throwaway consumer
    reads the topics from the start until they stay quiet for a second (Tansu's high watermark is not
    to be trusted, see tests/stack.py). With `below` (one topic, partition -> offset) it reads only
    the records before those offsets, and stops there: a topic being written to is never quiet."""
    names = {topics.topic_name(t, settings.topic_prefix): t for t in wanted}
    assert below is None or len(names) == 1, "offsets are per partition of one topic"
    serdes = {name: serde_for(topic, settings) for name, topic in names.items()}
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"faults-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(timeout=10).topics
    assignment = [TopicPartition(name, p, OFFSET_BEGINNING) for name in names for p in metadata[name].partitions]
    if below is not None:
        assignment = [tp for tp in assignment if below.get(tp.partition, 0) > 0]
    consumer.assign(assignment)
    found: dict[str, list[Consumed]] = {name: [] for name in names}
    reached: set[int] = set()
    key = org_id.encode()
    last_seen = time.monotonic()
    while assignment and time.monotonic() - last_seen < 1.0:
        for message in consumer.consume(10_000, 0.2):
            if message.error():
                continue
            last_seen = time.monotonic()
            topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
            if below is not None and offset >= below[partition] - 1:
                reached.add(partition)
                if offset >= below[partition]:
                    continue
            if message.key() == key:
                found[topic].append(Consumed(partition, offset, serdes[topic].decode(message.value())))
        if below is not None and len(reached) == len(assignment):
            break
    consumer.close()
    return {names[name]: records for name, records in found.items()}


class LeadStream:
    """Clients posting `lead.created` events through the API: SENDERS threads, each one event every
    SEND_INTERVAL_S, so several requests are in flight when a fault strikes.

    They behave as the API asks clients to: an event answered 503 is sent again after `Retry-After`
    with the same body until it is acknowledged with 202, so at the end every event made is
    acknowledged exactly once and `acked` is the exact tally. With `client_ids` each event carries its
    own event_id (a retry is the same event); without, the API assigns one, which needs no Redis for
    the dedup window (the Redis fault keeps the stream flowing into the broker that way).
    """

    def __init__(self, client: httpx.Client, tag: str, client_ids: bool) -> None:
        self._client = client
        self._tag = tag
        self._client_ids = client_ids
        self.acked: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.retry_after: list[str] = []
        """The Retry-After of every 503."""
        self.no_answer: list[str] = []
        """Requests that got no HTTP answer within the client's timeout, or a transport error."""
        self.duplicates: list[str] = []
        self.unexpected: list[str] = []
        """Answers other than 202 and 503; the test fails on any."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(sender,), name=f"lead-stream-{tag}-{sender}", daemon=True)
            for sender in range(SENDERS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stops making new events; those being sent are still retried until acknowledged."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RECOVERY_TIMEOUT_S)
        assert not any(thread.is_alive() for thread in self._threads), "an event was never acknowledged"
        assert self.unexpected == [], self.unexpected

    def _event(self, sender: int, n: int) -> dict[str, Any]:
        name = f"{self._tag}-{sender}-{n}"
        lead = {"lead_id": f"lead-{name}", "email": f"lead.{name}@acme.io", "title": "VP Sales"}
        event: dict[str, Any] = {"event_type": "lead.created", "lead": lead}
        if self._client_ids:
            event["event_id"] = f"evt-{name}"
        return event

    def _run(self, sender: int) -> None:
        n = 0
        while not self._stop.is_set() and not self.unexpected:
            self._send(self._event(sender, n))
            n += 1
            self._stop.wait(SEND_INTERVAL_S)

    def _send(self, event: dict[str, Any]) -> None:
        """Until acknowledged, retried after a 503 or no answer; one not acknowledged within the
        recovery timeout is unexpected (the test fails instead of waiting for ever)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                response = self._client.post("/api/v1/events", json=event)
            except httpx.HTTPError as exc:
                with self._lock:
                    self.no_answer.append(repr(exc))
                time.sleep(1)
                continue
            with self._lock:
                self.statuses[response.status_code] += 1
            if response.status_code == 202:
                body = response.json()
                with self._lock:
                    self.acked.extend(body["event_ids"])
                    self.duplicates.extend(body["duplicates"])
                return
            if response.status_code != 503:
                with self._lock:
                    self.unexpected.append(f"{response.status_code}: {response.text}")
                return
            retry_after = response.headers.get("retry-after", "")
            with self._lock:
                self.retry_after.append(retry_after)
            time.sleep(float(retry_after) if retry_after.isdigit() else 1)
        with self._lock:
            self.unexpected.append(f"{event['lead']['lead_id']}: not acknowledged in {RECOVERY_TIMEOUT_S:.0f} s")


MAX_PAGES = 1000
"""More pages than any scenario lists: a cursor that never ends fails the test instead of hanging it."""


def every_page(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated list of the API, a thousand a page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        page = client.get(path, params={"limit": 1000, **params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items
    raise AssertionError(f"{path} listed more than {MAX_PAGES} pages")


@dataclass
class Figures:
    fault: str
    events_acked: int
    executions: int
    fault_s: float
    recovery_s: float
    answers: dict[int, int]
    """POST /events answers by status, retries included."""
    duplicates: dict[str, int] = field(default_factory=dict)

    def report(self) -> None:
        print(f"\nFAULT-FIGURES {json.dumps(self.__dict__)}", flush=True)


@dataclass
class Scenario:
    stack: FaultStack
    tag: str
    org_id: str
    client: httpx.Client
    workflow_ids: list[str]
    receiver: Receiver
    endpoint_up: threading.Event
    """Cleared, the webhook endpoint hangs: every request waits until it is set again."""
    crm: FaultyCrm
    webhook_id: str
    stream: LeadStream
    fault_s: float = 0.0
    """How long the fault lasted (`account` sets it)."""

    def _listed(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paginated list of the API (ClickHouse, read with FINAL)."""
        return every_page(self.client, path, **params)

    def _listed_executions(self) -> list[dict[str, Any]]:
        return self._listed("/api/v1/executions")

    def recorded_deliveries(self) -> int:
        """Deliveries the dispatcher recorded as delivered (its attempts, through ClickHouse)."""
        return len(self._listed(f"/api/v1/webhooks/{self.webhook_id}/deliveries", status="delivered"))

    def crm_results(self) -> Counter[str]:
        """The latest result status of each CRM command, as GET /crm_commands shows it."""
        return Counter(item["status"] for item in self._listed("/api/v1/crm_commands"))

    def executions(self) -> Counter[tuple[str, str]]:
        """(event_id, workflow_id) -> executions listed."""
        return Counter((item["event_id"], item["workflow_id"]) for item in self._listed_executions())

    def execution_ids(self) -> set[str]:
        return {item["execution_id"] for item in self._listed_executions()}

    def under_way(self) -> bool:
        """BEFORE_FAULT events acknowledged and the pipeline carrying them to the CRM, the endpoint
        and ClickHouse: the fault then lands on a running stream."""
        return len(self.stream.acked) >= BEFORE_FAULT and bool(
            self.crm.applied and self.delivered() and self.executions()
        )

    def requests_of(self, key: str) -> list[tuple[float, str, str, int]]:
        """What the CRM received with one idempotency key: (time, method, path, status)."""
        return [(round(r.at, 2), r.method, r.path, r.status) for r in self.crm.requests if r.idempotency_key == key]

    def delivered(self) -> dict[str, int]:
        """webhook-id -> 2xx answers the endpoint gave it, for those it answered 2xx at least once."""
        return {message_id: n for message_id, n in self.receiver.delivered().items() if n}

    def exact(self) -> bool:
        """Every acknowledged event: one execution per workflow, its command applied and its result
        shown as applied (none left retrying), its webhook delivered and the delivery recorded so.
        Counts only here; `verify` then checks identities."""
        acked = len(self.stream.acked)
        return (
            len(self.crm.applied) == acked
            and len(self.delivered()) == acked
            and self.recorded_deliveries() == acked
            and self.crm_results() == Counter({"applied": acked})
            and sum(self.executions().values()) == acked * len(self.workflow_ids)
        )

    def end(
        self, fault: str, fault_started: float, resent_commands: int = 0
    ) -> tuple[Figures, dict[topics.Topic, list[Consumed]]]:
        """The fault ends now: the lead stream stops, then the exact account and its figures."""
        fault_ended = time.monotonic()
        self.stream.stop()
        return self.verify(fault, self.account(fault_started, fault_ended), resent_commands)

    def account(self, fault_started: float, fault_ended: float) -> float:
        """Waits for the exact account; the seconds from the fault's end until it held. For a kill
        the fault ends when the restarted worker owns its partitions again."""
        self.fault_s = fault_ended - fault_started
        wait_until(self.exact, RECOVERY_TIMEOUT_S, f"the exact account of {self.tag}", interval_s=0.5)
        recovery = time.monotonic() - fault_ended
        assert not self.stack.dead(), f"parts of the stack died: {self.stack.dead()}"
        return recovery

    def verify(
        self, fault: str, recovery_s: float, resent_commands: int = 0
    ) -> tuple[Figures, dict[topics.Topic, list[Consumed]]]:
        """The exact account, by identity, and the figures. `resent_commands`: how many CRM writes
        the fault may legitimately have sent twice (commands in flight at a SIGKILL); otherwise none
        may be. Returns the figures and the topic records, for a test's own checks."""
        acked = set(self.stream.acked)
        assert len(acked) == len(self.stream.acked), "an event id was acknowledged twice"
        executions = self.executions()
        expected = {(event_id, workflow_id) for event_id in acked for workflow_id in self.workflow_ids}
        assert set(executions) == expected, "executions differ from acknowledged events x workflows"
        assert set(executions.values()) == {1}, "an execution is listed twice"

        by_topic = read_org(self.stack.settings, self.org_id)
        inbound = Counter(r.value["event_id"] for r in by_topic[topics.INBOUND_EVENTS])
        assert set(inbound) == acked, "the inbound topic holds exactly the acknowledged events"
        on_topic = Counter(r.value["execution_id"] for r in by_topic[topics.EXECUTIONS])
        assert len(on_topic) == len(expected)
        commands = Counter(r.value["command_id"] for r in by_topic[topics.CRM_COMMANDS])
        assert set(self.crm.applied) == set(commands), "every CRM command applied, and nothing else"
        assert set(self.crm.applied.values()) == {1}, "no command changed the CRM twice"
        resent = sum(self.crm.replayed.values())
        assert resent <= resent_commands, f"{resent} commands sent again after a 2xx: " + "; ".join(
            f"{key}: {self.requests_of(key)}" for key in self.crm.replayed
        )
        messages = Counter(r.value["message_id"] for r in by_topic[topics.WEBHOOK_DELIVERIES])
        assert len(messages) == len(acked) and set(self.delivered()) == set(messages)
        succeeded: defaultdict[str, set[str]] = defaultdict(set)
        for attempt in by_topic[topics.WEBHOOK_ATTEMPTS]:
            if attempt.value["result"] == "succeeded":
                succeeded[attempt.value["message_id"]].add(attempt.value["attempt_id"])
        assert {m: len(a) for m, a in succeeded.items()} == dict.fromkeys(messages, 1), (
            "the dispatcher recorded exactly one successful attempt per delivery"
        )
        assert self.receiver.unverified == []

        webhook_resent = sum(n - 1 for n in self.delivered().values())
        applied_rows = Counter(
            r.value["result_id"] for r in by_topic[topics.CRM_RESULTS] if r.value["status"] == "applied"
        )
        figures = Figures(
            fault=fault,
            events_acked=len(acked),
            executions=len(executions),
            fault_s=round(self.fault_s, 1),
            recovery_s=round(recovery_s, 1),
            answers=dict(sorted(self.stream.statuses.items())),
            duplicates={
                "api_dedup_window": len(self.stream.duplicates),
                "inbound_copies": sum(inbound.values()) - len(inbound),
                "executions_collapsed_by_final": sum(on_topic.values()) - len(on_topic),
                "crm_commands_on_topic_twice": sum(commands.values()) - len(commands),
                "crm_replays_skipped_as_applied": sum(applied_rows.values()) - len(applied_rows),
                "crm_writes_absorbed_by_idempotency_key": resent,
                "webhook_messages_on_topic_twice": sum(messages.values()) - len(messages),
                "webhook_ids_sent_again_after_a_2xx": webhook_resent,
            },
        )
        figures.report()
        return figures, by_topic


@contextmanager
def scenario(stack: FaultStack, tag: str, client_ids: bool = True) -> Iterator[Scenario]:
    """A fresh organization wired to fresh fakes, with the lead stream under way (`Scenario.under_way`)."""
    assert not stack.dead(), f"parts of the stack died: {stack.dead()}"
    wait_until(stack.api_healthy, 60, "the stack to report healthy (every check of GET /health ok)")
    created = create_org(stack.settings, f"Faults {tag}")
    client = httpx.Client(
        base_url=stack.settings.api_url, headers={"Authorization": f"Bearer {created.api_key}"}, timeout=60
    )
    workflows = [
        activate_workflow(client, "Lead Qualification", LEAD_QUALIFICATION)["id"],
        activate_workflow(client, "Arrivals log", LOG_ONLY)["id"],
    ]
    endpoint_up = threading.Event()
    endpoint_up.set()
    with Receiver(held=endpoint_up) as receiver, FaultyCrm() as crm:
        webhook = client.post("/api/v1/webhooks", json={"url": "https://93.184.216.34/hooks", "event_types": []})
        assert webhook.status_code == 201, webhook.text
        receiver.secrets.append(webhook.json()["secret"])
        control_plane.repoint_webhook(stack.settings, created.org_id, webhook.json()["id"], receiver.url)
        connection = client.post(
            "/api/v1/integration_connections",
            json={
                "type": "hubspot",
                "name": "HubSpot",
                "base_url": "https://93.184.216.34",
                "credentials": "pat-faults",
                "rate_limit_per_s": 500,
                "burst": 100,
            },
        )
        assert connection.status_code == 201, connection.text
        control_plane.repoint_connection(stack.settings, created.org_id, connection.json()["id"], crm.url)
        stream = LeadStream(client, tag, client_ids)
        running = Scenario(
            stack, tag, created.org_id, client, workflows, receiver, endpoint_up, crm, webhook.json()["id"], stream
        )
        stream.start()
        try:
            wait_until(running.under_way, 60, "the stream under way and a first lead through")
            yield running
        finally:
            stream.stop()
            endpoint_up.set()
            crm.held.set()
            crm.outage = None
            client.close()
