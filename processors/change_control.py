"""Four-eyes change control: which changes need another person's approval, who may give it, and
what a proposed change is (the diff a reviewer reads).

A project's policy decides whether activating a workflow version needs an Approver, and separately
whether activating an agent template version or upgrading a deployed agent does. Keys marked as
agent keys always go through a change request: an external agent may propose, never ship. The
decider must be a different person from whoever asked for the change and from whoever wrote the
version, so no one approves their own work, whatever roles they hold. An API key acts for the person
who issued it, so what anyone does through their key counts as theirs here. A change that no person
stands behind (asked for and written through a key that acts for nobody: the admin key of an
organization created without a first admin) has nobody to compare the decider with, so it is not
asked for at all (`request_refusal`) and never approved (`decision_refusal`).

Because the policy belongs to the project, moving a workflow between projects changes which rule
reviews it, and is refused where that would loosen review (`move_refusal`).
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
    agent_template_change_requires_approval: bool = Field(
        default=False,
        description="Activating an agent template version, and upgrading a deployed agent to another template "
        "version, open a change request that another person with the Approver role must approve (so they do "
        "where workflow activations need approval).",
    )


def activation_needs_approval(policy: ProjectPolicy, by_agent_key: bool) -> bool:
    return by_agent_key or policy.workflow_activation_requires_approval


def template_change_needs_approval(policy: ProjectPolicy, by_agent_key: bool) -> bool:
    """Template activations and agent upgrades: what an agent may do is a person's call, so an agent
    key only ever proposes one. A project that reviews workflow activations reviews these too: an
    activated template version is deployed as a workflow, so skipping review there would let any
    policy run in the project unreviewed."""
    return (
        by_agent_key or policy.agent_template_change_requires_approval or policy.workflow_activation_requires_approval
    )


def move_refusal(source: ProjectPolicy, destination: ProjectPolicy, active: bool) -> str | None:
    """Why a workflow may not move from a project with policy `source` to one with `destination`,
    or None. Leaving a gated project would let the workflow's next version skip review (move out,
    activate, move back), so a gated project keeps its workflows until an Admin turns its policy off
    (an audited change of its own). An active workflow entering a gated project would bring a
    version nobody reviewed there; an inactive one may enter, and its activation is reviewed."""
    gated_source = source.workflow_activation_requires_approval
    gated_destination = destination.workflow_activation_requires_approval
    if gated_source and not gated_destination:
        return (
            "its project requires approval for activations, and the destination does not; "
            "a workflow leaves such a project only once an Admin turns the project's policy off"
        )
    if gated_destination and not gated_source and active:
        return (
            "the destination requires approval for activations and this workflow's active version was "
            "not approved there; deactivate it, move it, then activate it through a change request"
        )
    return None


def request_refusal(involved_user_ids: Iterable[str | None]) -> str | None:
    """Why a change may not be put to an Approver, or None: `involved_user_ids`, the people behind
    the requester and the authors of the proposed version (whether they acted in a session or
    through a key they issued), are all nobody (None: a system actor, or a key that acts for no
    person). Whoever acted through such a key could approve it as a person. A person asks for it
    again (their session, or a key they issued), and then they are the one compared."""
    if not any(involved_user_ids):
        return (
            "no person stands behind this change (it was asked for and written through a key that acts for "
            "nobody, such as the admin key of an organization created without --admin-email); ask for it as a "
            "person: in your session, or through a key you issued"
        )
    return None


def decision_refusal(decider_user_id: str | None, involved_user_ids: Iterable[str | None]) -> str | None:
    """Why this person may not decide, or None. `decider_user_id`: the deciding person's own
    session, never a key (a key acts for its issuer, but a decision is a person's act).
    `involved_user_ids`: as for `request_refusal`; a decider must be none of them, and at least one
    of them a person."""
    if decider_user_id is None:
        return "a change request is decided by a person"
    involved = set(involved_user_ids)
    if decider_user_id in involved:
        return "you asked for or wrote this change; another Approver must decide it"
    return request_refusal(involved)


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
