"""Owner routing state: weighted round-robin rotations, daily loads per owner, account owners.

All of it is explicit state the runtime loads before a batch and saves after it. Everything a
decision depends on is derived from the event (its UTC day, its lead, its email domain), and a lead
keeps the owner recorded for it in a workflow, so a replayed or updated event re-reads its owner
instead of advancing the rotation or counting against a cap again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

PointerKey = tuple[str, str, str]
"""(org_id, workflow_id, pool_id): one rotation per team in a workflow."""
AssignmentKey = tuple[str, str, str]
"""(org_id, workflow_id, lead_id)."""
LoadKey = tuple[str, str, str]
"""(org_id, owner, UTC day): leads assigned to an owner that day, across the org's workflows."""
AccountKey = tuple[str, str]
"""(org_id, email domain)."""


def utc_day(epoch_ms: int) -> str:
    """The UTC day of an event, which daily loads count by: when the lead arrived, so a replay
    counts against the same day."""
    return _utc_day(epoch_ms // 86_400_000)


@lru_cache(maxsize=64)
def _utc_day(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))


@dataclass(frozen=True, slots=True)
class Member:
    owner: str
    weight: int = 1
    away: bool = False
    daily_cap: int | None = None


def rotation(members: Sequence[Member]) -> tuple[int, ...]:
    """One cycle of smooth weighted round-robin (as nginx does it): weights 2:1 give a, b, a rather
    than a, a, b, so every prefix of the cycle is within one lead of the weighted share."""
    current = [0] * len(members)
    total = sum(m.weight for m in members)
    order = []
    for _ in range(total):
        for index, member in enumerate(members):
            current[index] += member.weight
        chosen = max(range(len(members)), key=lambda i: (current[i], -i))
        current[chosen] -= total
        order.append(chosen)
    return tuple(order)


@dataclass
class RoutingState:
    """The slice of routing state a batch needs, plus what the batch changed."""

    pointers: dict[PointerKey, int] = field(default_factory=dict)
    assignments: dict[AssignmentKey, str] = field(default_factory=dict)
    loads: dict[LoadKey, int] = field(default_factory=dict)
    accounts: dict[AccountKey, str] = field(default_factory=dict)
    changed_pointers: set[PointerKey] = field(default_factory=set)
    new_assignments: set[AssignmentKey] = field(default_factory=set)
    changed_loads: set[LoadKey] = field(default_factory=set)
    new_accounts: set[AccountKey] = field(default_factory=set)

    def round_robin(
        self,
        org_id: str,
        workflow_id: str,
        pool_id: str,
        lead_id: str,
        team: Sequence[Member],
        order: Sequence[int],
        day: str,
    ) -> tuple[str | None, str]:
        """(owner, reason), or (None, reason) when every member is away or at their daily cap."""
        recorded = self.assignments.get((org_id, workflow_id, lead_id))
        if recorded is not None:
            for member in team:
                if member.owner == recorded and not member.away:
                    return recorded, f"round-robin over {pool_id}: kept the owner recorded for this lead"
        pointer_key = (org_id, workflow_id, pool_id)
        position = self.pointers.get(pointer_key, 0)
        skipped = []
        for offset in range(len(order)):
            member = team[order[(position + offset) % len(order)]]
            load_key = (org_id, member.owner, day)
            if member.away:
                skipped.append(f"{member.owner} (away)")
                continue
            if member.daily_cap is not None and self.loads.get(load_key, 0) >= member.daily_cap:
                skipped.append(f"{member.owner} (at daily cap {member.daily_cap})")
                continue
            self.pointers[pointer_key] = position + offset + 1
            self.changed_pointers.add(pointer_key)
            self.loads[load_key] = self.loads.get(load_key, 0) + 1
            self.changed_loads.add(load_key)
            self.record(org_id, workflow_id, lead_id, member.owner)
            reason = f"round-robin over {pool_id}: next in rotation"
            return member.owner, reason + (f", skipped {', '.join(dict.fromkeys(skipped))}" if skipped else "")
        return None, f"round-robin over {pool_id}: no eligible owner ({', '.join(dict.fromkeys(skipped))})"

    def record(self, org_id: str, workflow_id: str, lead_id: str, owner: str) -> None:
        self.assignments[(org_id, workflow_id, lead_id)] = owner
        self.new_assignments.add((org_id, workflow_id, lead_id))

    def account_owner(self, org_id: str, domain: str) -> str | None:
        return self.accounts.get((org_id, domain))

    def claim_account(self, org_id: str, domain: str, owner: str) -> None:
        """The first owner assigned a lead of a domain holds that account from then on."""
        if (org_id, domain) not in self.accounts:
            self.accounts[(org_id, domain)] = owner
            self.new_accounts.add((org_id, domain))
