"""CrmCommandApplier: drip.crm.commands -> the organization's CRMs, then drip.crm.results.

Runs in the batch loop, so commands are applied in partition order and offsets are committed only
after every command of the batch has an outcome. Within a batch, commands for different leads go out
concurrently (up to `connection_concurrency` per connection), while commands for the same lead keep
their order: a later update must not be overtaken by an earlier one.

Each request first reserves a token from the connection's bucket in Redis (rate limit shared by all
workers). A batch starts at most `burst + rate * batch_budget_s` commands per connection: the rest of
their leads' chains go to the parking schedule, due at once and still in order, so a slow connection
never keeps a batch past the consumer's poll interval (which would evict the worker from its group).
Transient failures get a few quick attempts with backoff (a 429's `Retry-After` honoured);
a lead whose command still fails is parked with its later commands (streams/delivery/crm_parking.py) and
retried on a schedule, so a CRM that is down holds back neither the batch nor other orgs. Once a
connection parks a lead, its other leads are parked without trying, in this batch and (while the
connection is marked failing) in later ones: the CRM is most likely down for them too. A request that
got no answer within the timeout is not repeated at once: a CRM that hangs costs one timeout.
Permanent 4xx answers fail the command with the CRM's reason.
Applied commands are marked in Redis, so a replayed batch skips them (and emits their result once
more, from the mark: the first may have been lost with the batch); the CRM also receives the
command id as its idempotency key. A batch that fails part-way (Redis going away under it) lets its
other chains finish, then marks everything it applied before it is rewound, waiting for Redis to come
back if need be: one failing chain must not make the batch forget what the CRM already took. Every
batch first retries the parked leads that are due, and the batch loop calls this processor on idle
polls too, so retries happen while the topic is quiet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processors.delivery_policy import CrmOutcome, classify_crm_response, retry_after_s
from streams.clock import now_ms
from streams.delivery.crm_connectors import CONNECTORS, HEADERS, CrmHttp, CrmResponse
from streams.delivery.crm_parking import Chain, ParkedCommands
from streams.delivery.outbound_http import OutboundHttp
from streams.delivery.rate_limiter import TokenBuckets
from streams.runtime.dlq import DeadLetters
from streams.runtime.records import ConsumedRecord, OutputRecord
from streams.runtime.serde import AvroSerde
from streams.state import redis_clients, state_keys
from streams.state.control_plane import RevisionCache
from streams.state.secret_box import SecretBox

log = logging.getLogger(__name__)

Outcome = tuple[dict[str, Any], dict[str, Any]]
"""(result record, the command it is about)."""

RETRYING = "retrying"
"""A result status: the command is parked and will be retried (a later row replaces this one)."""

LEGACY_MARK = b"1"
"""The 'applied' mark of earlier versions, which kept no details of the result."""

REMEMBER_PATIENCE_S = 60.0
"""How long a batch waits for Redis to mark what it applied; far below max.poll.interval.ms (300 s)."""


@dataclass(frozen=True)
class CrmConfig:
    max_attempts: int
    """Quick attempts inside a batch before a lead's commands are parked."""
    backoff_s: tuple[float, ...]
    timeout_s: float
    max_retry_after_s: float
    connection_concurrency: int
    applied_retention_s: int
    allow_loopback: bool
    park_schedule_s: tuple[float, ...]
    batch_budget_s: float = 30.0
    """Seconds of a connection's rate one batch may use; far below max.poll.interval.ms (300 s)."""
    parked_claims_per_batch: int = 50


class RequestBudget:
    """How many more commands each connection may start in this batch."""

    def __init__(self, budget_s: float) -> None:
        self._budget_s = budget_s
        self._left: dict[str, float] = {}

    def take(self, connection: dict[str, Any]) -> bool:
        left = self._left.get(connection["id"])
        if left is None:
            left = connection["burst"] + connection["rate_limit_per_s"] * self._budget_s
        if left < 1:
            return False
        self._left[connection["id"]] = left - 1
        return True


@dataclass(slots=True)
class Job:
    command: dict[str, Any]
    connection: dict[str, Any]


class CrmCommandApplier:
    def __init__(
        self,
        commands: AvroSerde,
        results: tuple[AvroSerde, str],
        dead_letters: DeadLetters,
        redis_url: str,
        connections: RevisionCache[list[dict[str, Any]]],
        box: SecretBox,
        config: CrmConfig,
    ) -> None:
        self._commands = commands
        self._connection_cache = connections
        self._results, self._results_topic = results
        self._dead_letters = dead_letters
        self._redis_url = redis_url
        self._box = box
        self._config = config
        self._loop = asyncio.new_event_loop()
        self._http: OutboundHttp | None = None
        self._redis: aioredis.Redis | None = None
        self._buckets: TokenBuckets | None = None
        self._parking: ParkedCommands | None = None
        self._tokens: dict[str, str] = {}
        self._ledger: list[Outcome] = []
        """Every outcome of the running batch as soon as it is known, kept if the batch raises."""

    def on_rebalance(self) -> None:
        """Nothing per partition: connections are cached per org, checked by revision."""

    def process(self, batch: Sequence[ConsumedRecord]) -> list[OutputRecord]:
        """Also called with no messages when the topic is idle: parked leads still come due."""
        commands, dead = self._dead_letters.decode_batch(self._commands, batch)
        return dead + self._loop.run_until_complete(self._apply_all(commands))

    async def _connect(self) -> tuple[OutboundHttp, aioredis.Redis, TokenBuckets, ParkedCommands]:
        """Created inside the applier's own event loop, the first time a batch needs them."""
        if self._http is None or self._redis is None or self._buckets is None or self._parking is None:
            self._http = OutboundHttp(self._config.timeout_s, self._config.allow_loopback, HEADERS)
            self._redis = redis_clients.connect_async(self._redis_url)
            self._buckets = TokenBuckets(self._redis)
            self._parking = ParkedCommands(self._redis, self._config.park_schedule_s)
        return self._http, self._redis, self._buckets, self._parking

    async def _apply_all(self, commands: list[dict[str, Any]]) -> list[OutputRecord]:
        http, client, buckets, parking = await self._connect()
        budget = RequestBudget(self._config.batch_budget_s)
        self._ledger = []
        try:
            outcomes = await self._retry_parked(http, client, buckets, parking, budget)
            if commands:
                outcomes += await self._apply_batch(http, client, buckets, parking, budget, commands)
        except Exception:
            # The batch is rewound and replayed; what the CRM already took must be skipped then.
            await self._remember(client, self._ledger)
            raise
        await self._remember(client, outcomes)
        return [(self._results_topic, r["org_id"].encode(), self._results.encode(r)) for r, _ in outcomes]

    async def _apply_batch(
        self,
        http: OutboundHttp,
        client: aioredis.Redis,
        buckets: TokenBuckets,
        parking: ParkedCommands,
        budget: RequestBudget,
        commands: list[dict[str, Any]],
    ) -> list[Outcome]:
        jobs, again = await self._pending_jobs(client, commands)
        chains: defaultdict[Chain, list[Job]] = defaultdict(list)
        for job in jobs:
            chains[(job.command["org_id"], job.connection["id"], job.command["lead_id"])].append(job)
        to_park: dict[Chain, list[Job]] = {chain: chains.pop(chain) for chain in await parking.parked(list(chains))}
        failing = await parking.failing(sorted({(org_id, connection_id) for org_id, connection_id, _ in chains}))
        down: set[str] = {connection_id for _, connection_id in failing}
        """Connections marked failing, or that parked a lead in this batch: their leads are parked untried."""
        limits: defaultdict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(self._config.connection_concurrency)
        )

        deferred: dict[Chain, list[Job]] = {}

        async def run_chain(chain: Chain, chain_jobs: list[Job]) -> list[Outcome]:
            async with limits[chain[1]]:
                done: list[Outcome] = []
                for index, job in enumerate(chain_jobs):
                    if chain[1] not in down and not budget.take(job.connection):
                        deferred[chain] = chain_jobs[index:]
                        break
                    result = None if chain[1] in down else await self._apply(http, buckets, job)
                    if result is None or result["status"] == RETRYING:
                        down.add(chain[1])
                        to_park[chain] = chain_jobs[index:]
                        if result is not None:
                            done.append((result, job.command))
                        break
                    done.append((result, job.command))
                return done

        applied = _all_or_raise(
            await asyncio.gather(
                *(run_chain(chain, chain_jobs) for chain, chain_jobs in chains.items()), return_exceptions=True
            )
        )
        outcomes = [outcome for chain_outcomes in applied for outcome in chain_outcomes]
        await parking.park({chain: [job.command for job in parked] for chain, parked in to_park.items()})
        await parking.park({chain: [job.command for job in later] for chain, later in deferred.items()}, due_now=True)
        newly_down = {(org_id, connection_id) for org_id, connection_id, _ in to_park if connection_id in down}
        await parking.mark_failing(newly_down - failing)
        attempted = {result["result_id"] for result, _ in outcomes}
        waiting = CrmResponse(None, "parked: the connection is failing; retried later")
        busy = CrmResponse(None, "deferred: more commands than the connection's rate allows in one batch")
        return (
            again
            + outcomes
            + [
                (self._result(job, RETRYING, 0, waiting), job.command)
                for parked in to_park.values()
                for job in parked
                if _result_id(job) not in attempted
            ]
            + [(self._result(job, RETRYING, 0, busy), job.command) for later in deferred.values() for job in later]
        )

    async def _retry_parked(
        self,
        http: OutboundHttp,
        client: aioredis.Redis,
        buckets: TokenBuckets,
        parking: ParkedCommands,
        budget: RequestBudget,
    ) -> list[Outcome]:
        """Due parked leads, each drained in order until its CRM fails again or the batch's budget
        for the connection runs out (the rest is due again at once). A parked command already marked
        applied (a drain that failed before it could trim the list), or parked twice, is skipped,
        not sent again."""
        lease_ms = int((self._config.timeout_s * self._config.max_attempts + 60) * 1000)
        chains = await parking.claim(self._config.parked_claims_per_batch, lease_ms)
        if not chains:
            return []
        connections = self._connections({org_id for org_id, _, _ in chains})

        async def drain(chain: Chain) -> list[Outcome]:
            org_id, connection_id, _ = chain
            connection = next((c for c in connections[org_id] if c["id"] == connection_id), None)
            commands = await parking.load(chain)
            if connection is None:
                await parking.drop(chain, len(commands))
                gone = CrmResponse(None, "the connection was deleted or disabled while commands were parked")
                unknown = {"id": connection_id, "type": ""}
                return [(self._result(Job(c, unknown), CrmOutcome.FAILED, 0, gone), c) for c in commands]
            outcomes: list[Outcome] = []
            jobs = [Job(command, connection) for command in commands]
            first = {id(command) for command in _first_of_each(commands)}
            for index, (job, mark) in enumerate(zip(jobs, await self._marks(client, jobs), strict=True)):
                if id(job.command) not in first:
                    continue
                if mark is not None:
                    outcomes += self._applied_before(job, mark)
                    continue
                if not budget.take(connection):
                    await parking.release(chain, index)
                    return outcomes
                result = await self._apply(http, buckets, job)
                if result["status"] == RETRYING:
                    await parking.mark_failing({(org_id, connection_id)})
                    if await parking.settle(chain, index, failed_round=True):
                        await parking.drop(chain, len(commands) - index)
                        rounds = len(self._config.park_schedule_s)
                        given_up = CrmResponse(None, f"gave up after {rounds} retry rounds: {result['error']}")
                        outcomes += [
                            (self._result(Job(c, connection), CrmOutcome.FAILED, 0, given_up), c)
                            for c in commands[index:]
                        ]
                    return outcomes
                outcomes.append((result, job.command))
            await parking.settle(chain, len(commands), failed_round=False)
            await parking.mark_recovered((org_id, connection_id))
            return outcomes

        drained = _all_or_raise(await asyncio.gather(*map(drain, chains), return_exceptions=True))
        return [outcome for chain_outcomes in drained for outcome in chain_outcomes]

    def _connections(self, org_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Each org's enabled connections, from the revision-checked cache. A blocking read at most
        every refresh period, on this applier's own loop before any request of the batch starts."""
        return self._connection_cache.get(org_ids)

    async def _pending_jobs(
        self, client: aioredis.Redis, commands: list[dict[str, Any]]
    ) -> tuple[list[Job], list[Outcome]]:
        """One job per (command, enabled connection of its org), minus those applied already, and
        the result of each of those once more. A command id met again in the batch is the same
        command (a replay upstream put it on the topic twice): it is applied once."""
        commands = list(_first_of_each(commands))
        connections = self._connections({c["org_id"] for c in commands})
        jobs = [Job(c, conn) for c in commands for conn in connections[c["org_id"]]]
        pending: list[Job] = []
        again: list[Outcome] = []
        for job, mark in zip(jobs, await self._marks(client, jobs), strict=True):
            if mark is None:
                pending.append(job)
            else:
                again += self._applied_before(job, mark)
        return pending, again

    @staticmethod
    async def _marks(client: aioredis.Redis, jobs: list[Job]) -> list[bytes | None]:
        """Each job's 'applied' mark: None while its command has not been applied through its
        connection."""
        if not jobs:
            return []
        pipe = client.pipeline(transaction=False)
        for job in jobs:
            pipe.get(state_keys.crm_applied(job.command["org_id"], job.connection["id"], job.command["command_id"]))
        marks: list[bytes | None] = await pipe.execute()
        return marks

    def _applied_before(self, job: Job, mark: bytes) -> list[Outcome]:
        """The result of a command applied earlier, rebuilt from its mark: the same row again (same
        result id and time), because a batch that was replayed may have lost it before the broker
        had it. A mark from before marks kept the details (b"1") yields nothing."""
        if mark == LEGACY_MARK:
            return []
        details = orjson.loads(mark)
        response = CrmResponse(details["status_code"], "", object_id=details["crm_object_id"])
        result = self._result(job, CrmOutcome.APPLIED.value, details["attempts"], response)
        result["applied_at_ms"] = details["applied_at_ms"]
        return [(result, job.command)]

    async def _apply(self, http: OutboundHttp, buckets: TokenBuckets, job: Job) -> dict[str, Any]:
        command, connection = job.command, job.connection
        sealed = connection.get("sealed_credentials")

        async def throttle() -> None:
            wait = await buckets.reserve(
                command["org_id"], connection["id"], connection["rate_limit_per_s"], connection["burst"]
            )
            if wait > 0:
                await asyncio.sleep(wait)

        token = self._token(sealed) if sealed else None
        crm = CrmHttp(http, connection["base_url"], token, throttle)
        attempts = 0
        while True:
            attempts += 1
            response = await CONNECTORS[connection["type"]].apply(crm, command)
            outcome = CrmOutcome.FAILED if response.permanent else classify_crm_response(response.status_code)
            if outcome != CrmOutcome.RETRY or attempts >= self._config.max_attempts or response.timed_out:
                break
            await asyncio.sleep(self._delay(response, attempts))
        if outcome == CrmOutcome.FAILED:
            log.warning("crm: %s via %s failed: %s", command["command_id"], connection["id"], response.error)
        result = self._result(job, RETRYING if outcome == CrmOutcome.RETRY else outcome.value, attempts, response)
        self._ledger.append((result, command))
        return result

    def _token(self, sealed: str) -> str:
        """Opening a sealed credential costs a Fernet decryption; each is opened once per process
        (a changed credential is a new sealed value)."""
        token = self._tokens.get(sealed)
        if token is None:
            token = self._tokens[sealed] = self._box.open(sealed)
        return token

    def _delay(self, response: CrmResponse, attempts: int) -> float:
        backoff = self._config.backoff_s[min(attempts - 1, len(self._config.backoff_s) - 1)]
        if response.status_code == 429 or response.retry_after is not None:
            return retry_after_s(response.retry_after, time.time(), backoff, self._config.max_retry_after_s)
        return backoff

    def _result(self, job: Job, status: str, attempts: int, response: CrmResponse) -> dict[str, Any]:
        command, connection = job.command, job.connection
        return {
            "result_id": _result_id(job),
            "command_id": command["command_id"],
            "org_id": command["org_id"],
            "connection_id": connection["id"],
            "connector": connection["type"],
            "execution_id": command["execution_id"],
            "lead_id": command["lead_id"],
            "operation": command["operation"],
            "status": status,
            "attempts": attempts,
            "status_code": response.status_code,
            "error": response.error,
            "crm_object_id": response.object_id,
            "applied_at_ms": now_ms(),
        }

    async def _remember(self, client: aioredis.Redis, outcomes: list[Outcome]) -> None:
        """Marks applied commands (a replayed batch skips them) and keeps failed ones, for
        `POST /api/v1/crm_commands/{result_id}/retry`, as long as the retention. While Redis cannot
        be reached it waits for it, up to REMEMBER_PATIENCE_S: an applied command left unmarked is
        sent to the CRM again by the replay."""
        deadline = time.monotonic() + REMEMBER_PATIENCE_S
        delay = 0.25
        while True:
            pipe = client.pipeline(transaction=False)
            for result, command in outcomes:
                if result["status"] == CrmOutcome.APPLIED:
                    key = state_keys.crm_applied(result["org_id"], result["connection_id"], result["command_id"])
                    pipe.set(key, _mark(result), ex=self._config.applied_retention_s)
                elif result["status"] == CrmOutcome.FAILED:
                    key = state_keys.crm_failed(result["org_id"], result["result_id"])
                    pipe.set(key, orjson.dumps(command), ex=self._config.applied_retention_s)
            if not len(pipe):
                return
            try:
                await pipe.execute()
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("crm: cannot mark %d outcomes yet, retrying in %.2f s: %s", len(outcomes), delay, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)


def _mark(result: dict[str, Any]) -> bytes:
    """What the 'applied' mark keeps of a result: enough to emit the same row again on a replay."""
    return orjson.dumps({k: result[k] for k in ("attempts", "status_code", "crm_object_id", "applied_at_ms")})


def _first_of_each(commands: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The commands in order, each command id once."""
    seen: set[str] = set()
    for command in commands:
        if command["command_id"] not in seen:
            seen.add(command["command_id"])
            yield command


def _all_or_raise(results: list[list[Outcome] | BaseException]) -> list[list[Outcome]]:
    """The chains' outcomes once every chain has finished, or the first chain's error: gathering with
    `return_exceptions` lets the other chains finish (and their outcomes reach the ledger) instead of
    running on unawaited into the next batch."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [result for result in results if not isinstance(result, BaseException)]


def _result_id(job: Job) -> str:
    """One result row per (command, connection): a later status of the same pair replaces it."""
    return f"{job.command['command_id']}:{job.connection['id']}"
