"""Owner routing: territory rules, round-robin over a team, fallback owner.

Round-robin consumes state, so it lives in `RoutingState`, an explicit value the runtime loads
before a batch and saves after it. A lead keeps the owner recorded for it in a workflow: a replayed
or updated event re-reads that owner instead of advancing the rotation again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

PointerKey = tuple[str, str, str]
"""(org_id, workflow_id, pool_id): one rotation per team in a workflow."""
AssignmentKey = tuple[str, str, str]
"""(org_id, workflow_id, lead_id)."""


@dataclass
class RoutingState:
    """The slice of routing state a batch needs, plus what the batch changed."""

    pointers: dict[PointerKey, int] = field(default_factory=dict)
    assignments: dict[AssignmentKey, str] = field(default_factory=dict)
    changed_pointers: set[PointerKey] = field(default_factory=set)
    new_assignments: set[AssignmentKey] = field(default_factory=set)

    def round_robin(
        self, org_id: str, workflow_id: str, pool_id: str, lead_id: str, team: Sequence[str]
    ) -> tuple[str, str]:
        """(owner, reason) for a lead rotating over `team`."""
        assignment_key = (org_id, workflow_id, lead_id)
        recorded = self.assignments.get(assignment_key)
        if recorded is not None and recorded in team:
            return recorded, f"round-robin over {pool_id} {list(team)}: kept the owner recorded for this lead"
        pointer_key = (org_id, workflow_id, pool_id)
        position = self.pointers.get(pointer_key, 0)
        owner = team[position % len(team)]
        self.pointers[pointer_key] = position + 1
        self.changed_pointers.add(pointer_key)
        self.assignments[assignment_key] = owner
        self.new_assignments.add(assignment_key)
        return owner, (
            f"round-robin over {pool_id} {list(team)}: next in rotation "
            f"(position {position % len(team) + 1} of {len(team)})"
        )
