"""Who changed something, and which part of an organization a caller may touch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ActorType = Literal["user", "api_key", "system"]


@dataclass(frozen=True)
class Actor:
    """Recorded with every change (audit log, change requests, key issuance). `user_id` is the person
    behind it, which is what four-eyes compares: the person themselves in their session, the person
    who issued the key for an API key (a key acts for its issuer), and nobody for a system actor or a
    key the operator's CLI issued (or one such a key issued). Being someone's key is not being that
    person: only `is_person` actors take decisions."""

    type: ActorType
    id: str
    label: str
    user_id: str | None = None

    @property
    def is_person(self) -> bool:
        return self.type == "user"

    def as_json(self) -> dict[str, Any]:
        return {"type": self.type, "id": self.id, "label": self.label, "user_id": self.user_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Actor:
        return cls(data["type"], data["id"], data["label"], data.get("user_id"))


def system(label: str) -> Actor:
    """An operator's command (`drippulse orgs create`) or a worker's own decision."""
    return Actor("system", f"system:{label}", label)


@dataclass(frozen=True)
class Scope:
    """An organization, narrowed to one project for a project-scoped key. Every store query of a
    project-level resource filters on both, so a resource outside the scope is simply not found."""

    org_id: str
    project_id: str | None = None
