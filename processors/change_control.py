"""Four-eyes change control: which changes need another person's approval, who may give it, and
what a proposed change is (the diff a reviewer reads).

A project's policy decides whether activating a workflow version needs an Approver. Keys marked as
agent keys always go through a change request: an external agent may propose, never ship. The
decider must be a different person from whoever asked for the change and from whoever wrote the
version, so no one approves their own work, whatever roles they hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ProjectPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow_activation_requires_approval: bool = Field(
        default=False,
        description="Activating a workflow version opens a change request that another person with the "
        "Approver role must approve.",
    )


def activation_needs_approval(policy: ProjectPolicy, by_agent_key: bool) -> bool:
    return by_agent_key or policy.workflow_activation_requires_approval


def decision_refusal(decider_user_id: str | None, involved_user_ids: Iterable[str | None]) -> str | None:
    """Why this person may not decide, or None. `involved_user_ids`: the requester and the authors
    of the proposed version (None for a key or a system actor, which is no person to compare)."""
    if decider_user_id is None:
        return "a change request is decided by a person"
    if decider_user_id in set(involved_user_ids):
        return "you asked for or wrote this change; another Approver must decide it"
    return None


@dataclass(frozen=True)
class Change:
    """One difference between two JSON documents: where (a JSON Pointer, RFC 6901, so any key is
    unambiguous), and the value on each side (absent: None, with `op` saying which side lacks it)."""

    path: str
    op: str
    before: Any
    after: Any

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "op": self.op, "before": self.before, "after": self.after}


def _pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def definition_diff(before: Any, after: Any, path: str = "") -> list[Change]:
    """Every leaf that differs. Objects are compared key by key and lists position by position, so a
    reviewer sees "/steps/2/rules/0/points: 30 -> 40" rather than two documents."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[Change] = []
        for key in [*before, *(k for k in after if k not in before)]:
            where = f"{path}/{_pointer_token(key)}"
            if key not in after:
                changes.append(Change(where, "removed", before[key], None))
            elif key not in before:
                changes.append(Change(where, "added", None, after[key]))
            else:
                changes += definition_diff(before[key], after[key], where)
        return changes
    if isinstance(before, list) and isinstance(after, list):
        changes = []
        for index in range(max(len(before), len(after))):
            where = f"{path}/{index}"
            if index >= len(after):
                changes.append(Change(where, "removed", before[index], None))
            elif index >= len(before):
                changes.append(Change(where, "added", None, after[index]))
            else:
                changes += definition_diff(before[index], after[index], where)
        return changes
    if before == after and type(before) is type(after):
        return []
    return [Change(path, "changed", before, after)]
