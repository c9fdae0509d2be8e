"""Loads and saves the processor state a batch needs (routing, enrollment and the lead values
`changed*` conditions compare with), one pipeline each way.

Round-robin pointers and daily owner loads are cached in memory: while this worker owns an org's
partition it is the only writer of that org's routing state, so the cache is authoritative until the
next rebalance, when it is dropped and re-read from Redis. Per-lead state (recorded owners,
enrollments and remembered values) and account owners are read every batch (one HMGET per org
each), because a replay or a later event of the lead must find them.
Everything is written as absolute values, so saving the same batch twice (a replay) leaves the same
state, and a restarted worker continues from exactly what was saved: caps hold across restarts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import redis

from processors.compiler import CompiledWorkflow
from processors.enrollment import Enrollment, EnrollmentState
from processors.events import lead_id_of
from processors.free_mail import business_domain
from processors.lead_memory import LeadMemory, RememberedLead
from processors.routing import LoadKey, PointerKey, RoutingState, utc_day
from streams.state import redis_batch, state_keys

LOAD_TTL_S = 3 * 86_400


class ProcessorStateStore:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._pointers: dict[PointerKey, int] = {}
        self._loads: dict[LoadKey, int] = {}
        self._loaded_pointers: set[str] = set()
        self._loaded_days: set[tuple[str, str]] = set()
        self._expiring_days: set[tuple[str, str]] = set()
        """Load hashes this store has given their TTL: once per (org, day), not once per batch."""

    def forget(self) -> None:
        """Called on every rebalance: another worker may have changed this state meanwhile."""
        self._pointers.clear()
        self._loads.clear()
        self._loaded_pointers.clear()
        self._loaded_days.clear()
        self._expiring_days.clear()

    def load(
        self, events: Iterable[Mapping[str, Any]], workflows: Mapping[str, tuple[CompiledWorkflow, ...]]
    ) -> tuple[RoutingState, EnrollmentState, LeadMemory]:
        rotating = {org_id for org_id, compiled in workflows.items() if any(w.uses_round_robin for w in compiled)}
        matching_accounts = {
            org_id for org_id, compiled in workflows.items() if any(w.uses_account_match for w in compiled)
        }
        leads: dict[str, set[str]] = defaultdict(set)
        domains: dict[str, set[str]] = defaultdict(set)
        days: set[tuple[str, str]] = set()
        for event in events:
            org_id = event["org_id"]
            if workflows.get(org_id):
                leads[org_id].add(lead_id_of(event))
            if org_id in rotating:
                days.add((org_id, utc_day(event["occurred_at_ms"])))
            if org_id in matching_accounts:
                lead = event.get("lead")
                domain = business_domain(lead.get("email") if isinstance(lead, dict) else None)
                if domain:
                    domains[org_id].add(domain)
        state = RoutingState(pointers=self._pointers, loads=self._loads)
        enrollments = EnrollmentState()
        memory = LeadMemory()
        if not leads:
            return state, enrollments, memory
        unloaded = sorted(rotating - self._loaded_pointers)
        new_days = sorted(days - self._loaded_days)
        lead_lists = {org_id: sorted(ids) for org_id, ids in leads.items()}
        domain_lists = {org_id: sorted(ds) for org_id, ds in domains.items()}
        commands: list[redis_batch.Command] = []
        commands += [("HGETALL", state_keys.round_robin_pointers(org_id)) for org_id in unloaded]
        commands += [("HGETALL", state_keys.owner_loads(org_id, day)) for org_id, day in new_days]
        commands += [("HMGET", state_keys.lead_state(org_id), *ids) for org_id, ids in lead_lists.items()]
        commands += [("HMGET", state_keys.accounts(org_id), *ids) for org_id, ids in domain_lists.items()]
        releasable = {
            org_id: [(w.workflow_id, lead_id) for w in workflows[org_id] if w.pauses for lead_id in lead_lists[org_id]]
            for org_id in lead_lists
        }
        releasable = {org_id: keys for org_id, keys in releasable.items() if keys}
        commands += [
            ("HMGET", state_keys.released_runs(org_id), *(state_keys.released_field(w, lead) for w, lead in keys))
            for org_id, keys in releasable.items()
        ]
        replies = iter(redis_batch.execute(self._redis, commands))
        for org_id in unloaded:
            for field, value in _hash_items(next(replies)):
                workflow_id, _, pool = field.decode().partition("/")
                self._pointers[(org_id, workflow_id, pool)] = int(value)
            self._loaded_pointers.add(org_id)
        for org_id, day in new_days:
            for member, load in _hash_items(next(replies)):
                self._loads[(org_id, member.decode(), day)] = int(load)
            self._loaded_days.add((org_id, day))
        for org_id, lead_ids in lead_lists.items():
            for lead_id, recorded in zip(lead_ids, next(replies), strict=True):
                if recorded is not None:
                    lead = orjson.loads(recorded)
                    for workflow_id, owner in lead.get("owners", {}).items():
                        state.assignments[(org_id, workflow_id, lead_id)] = owner
                    for workflow_id, stored in lead.get("enrollments", {}).items():
                        enrollments.enrollments[(org_id, workflow_id, lead_id)] = Enrollment.from_json(stored)
                    if "memory" in lead:
                        memory.leads[(org_id, lead_id)] = RememberedLead.from_json(lead["memory"])
        for org_id, domain_ids in domain_lists.items():
            for domain, owner in zip(domain_ids, next(replies), strict=True):
                if owner is not None:
                    state.accounts[(org_id, domain)] = owner.decode()
        for org_id, keys in releasable.items():
            for (workflow_id, lead_id), released in zip(keys, next(replies), strict=True):
                if released is not None:
                    enrollments.release((org_id, workflow_id, lead_id), released.decode())
        return state, enrollments, memory

    def save(self, state: RoutingState, enrollments: EnrollmentState, memory: LeadMemory) -> None:
        """One HSET per org and hash. It runs once per batch for thousands of leads, so it groups
        only what changed and reads each state dict once."""
        updates: dict[str, dict[str, str | int | bytes]] = defaultdict(dict)
        pointers = state.pointers
        for org_id, workflow_id, pool in state.changed_pointers:
            field = state_keys.pointer_field(workflow_id, pool)
            updates[state_keys.round_robin_pointers(org_id)][field] = pointers[(org_id, workflow_id, pool)]
        new_load_keys = []
        for org_id, owner, day in state.changed_loads:
            key = state_keys.owner_loads(org_id, day)
            updates[key][owner] = state.loads[(org_id, owner, day)]
            if (org_id, day) not in self._expiring_days:
                self._expiring_days.add((org_id, day))
                new_load_keys.append(key)
        for org_id, domain in state.new_accounts:
            updates[state_keys.accounts(org_id)][domain] = state.accounts[(org_id, domain)]
        touched = {(org_id, lead_id) for org_id, _, lead_id in state.new_assignments}
        touched.update([(org_id, lead_id) for org_id, _, lead_id in enrollments.changed])
        touched |= memory.changed
        owners: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
        for (org_id, workflow_id, lead_id), owner in state.assignments.items():
            if (org_id, lead_id) in touched:
                owners[(org_id, lead_id)][workflow_id] = owner
        enrolled: dict[tuple[str, str], dict[str, Enrollment]] = defaultdict(dict)
        for (org_id, workflow_id, lead_id), enrollment in enrollments.enrollments.items():
            if (org_id, lead_id) in touched:
                enrolled[(org_id, lead_id)][workflow_id] = enrollment
        remembered = memory.leads
        for lead_ref in touched:
            lead: dict[str, Any] = {
                "owners": owners.get(lead_ref, {}),
                "enrollments": {workflow_id: e.as_json() for workflow_id, e in enrolled.get(lead_ref, {}).items()},
            }
            if lead_ref in remembered:
                lead["memory"] = remembered[lead_ref].as_json()
            updates[state_keys.lead_state(lead_ref[0])][lead_ref[1]] = orjson.dumps(lead)
        commands: list[redis_batch.Command] = []
        for key, mapping in updates.items():
            command: list[Any] = ["HSET", key]
            for item in mapping.items():
                command += item
            commands.append(tuple(command))
        commands += [("EXPIRE", key, LOAD_TTL_S) for key in new_load_keys]
        redis_batch.execute(self._redis, commands)


def _hash_items(reply: list[bytes] | dict[bytes, bytes]) -> Iterable[tuple[bytes, bytes]]:
    """HGETALL's raw reply: a flat field, value list (RESP2) or a map (RESP3)."""
    if isinstance(reply, dict):
        return reply.items()
    return zip(reply[::2], reply[1::2], strict=True)
