"""What an agent says about a lead and its decision, in a sentence or three.

The built-in summary is deterministic and needs no network: it is always there, and it is what an
agent uses unless its template names an OpenAI-compatible provider. A provider's answer is only ever
an embellishment: when it is slow or fails, the built-in summary stands in and the failure is
recorded, so a provider can never block or break a decision.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

MAX_TIMEOUT_S = 30.0
"""The longest a template may let its provider take: a summary is asked for while a caller waits."""


class SummaryProvider(BaseModel):
    """Where an agent's summaries come from. `builtin` (the default) is computed here; an
    `openai_compatible` provider is called at `url` (the chat-completions endpoint's base, e.g.
    `https://api.openai.com/v1`) with `model`; its credential is given separately and stored sealed,
    never in the definition."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["builtin", "openai_compatible"] = "builtin"
    url: HttpUrl | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_s: float = Field(default=2.0, gt=0, le=MAX_TIMEOUT_S)
    max_tokens: int = Field(default=200, ge=16, le=2000)

    @model_validator(mode="after")
    def _provider_is_named(self) -> SummaryProvider:
        if self.kind == "openai_compatible" and (self.url is None or self.model is None):
            raise ValueError("an openai_compatible provider needs 'url' and 'model'")
        return self


MAX_SUMMARY_CHARS = 600
"""A built-in summary is never longer than this, whatever the lead and the decision hold."""
_FIELD_CHARS = 80
"""Any one value quoted from the lead or the decision is cut to this."""
_TOP_RULES = 3
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_NEXT_STEP = {
    "awaiting_approval": "it waits for a person's approval before it goes on",
    "waiting": "it waits for a scheduled step before it goes on",
    "filtered_out": "the policy's filter stopped it, so nothing was done",
    "rejected": "a person rejected it",
    "exited": "it left the policy at its exit condition",
}


def builtin_summary(lead: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    """Who the lead is, how it scored and why, who should own it and what happens next: what a person
    skimming a queue needs, built only from the fields named here. The email, the attributes and
    anything else the lead carries are never quoted, so a summary stored or shown carries no more of
    the lead than its name, title, company and country. Any shape is accepted: a field of the wrong
    type is left out, not an error."""
    sentences = [_who(lead), _score(decision), _next(decision)]
    return _clip(" ".join(sentence for sentence in sentences if sentence), MAX_SUMMARY_CHARS)


def _who(lead: Mapping[str, Any]) -> str:
    name = _text(lead.get("name")) or " ".join(
        part for part in (_text(lead.get("first_name")), _text(lead.get("last_name"))) if part
    )
    title, company, country = _text(lead.get("title")), _text(lead.get("company")), _text(lead.get("country"))
    role = " at ".join(part for part in (title, company) if part)
    if title:
        who = f"{name or 'A lead'}, {role}"
    elif company:
        who = f"{name}, {company}" if name else f"A lead from {company}"
    else:
        who = name or "A lead"
    return f"{who} ({country})." if country else f"{who}."


def _score(decision: Mapping[str, Any]) -> str:
    score, tier = _number(decision.get("score")), _text(decision.get("tier"))
    if score is None and not tier:
        return ""
    said = ", ".join(([f"score {score:g}"] if score is not None else []) + ([f"tier {tier}"] if tier else []))
    said = said[0].upper() + said[1:]
    rules = _top_rules(decision.get("score_breakdown"))
    if rules:
        said += ", mostly from " + _listed([f"{rule} ({points:+g})" for rule, points in rules])
    probability = _number(decision.get("probability"))
    if probability is not None and 0 <= probability <= 1:
        said += f"; the learned model gives it a {probability:.0%} chance to convert"
    return said + "."


def _next(decision: Mapping[str, Any]) -> str:
    owner, reason = _text(decision.get("owner")), _text(decision.get("routing_reason"))
    parts = [f"Recommended owner: {owner}" + (f" ({reason})" if reason else "")] if owner else []
    status = _text(decision.get("status"))
    actions = [text for text in map(_text, _items(decision.get("actions"))) if text][:5]
    if status in _NEXT_STEP:
        parts.append(_NEXT_STEP[status])
    if actions:
        parts.append(("so far: " if status in ("awaiting_approval", "waiting") else "actions: ") + ", ".join(actions))
    elif status not in _NEXT_STEP and status:
        parts.append("no action taken")
    if not parts:
        return ""
    said = "; ".join(parts)
    return said[0].upper() + said[1:] + "."


def _top_rules(breakdown: object) -> list[tuple[str, float]]:
    """The rules that gave the most points (ties by id, so the same breakdown reads the same)."""
    if not isinstance(breakdown, Mapping):
        return []
    points = [(_text(rule), _number(value)) for rule, value in breakdown.items()]
    given = [(rule, value) for rule, value in points if rule and value]
    return sorted(given, key=lambda item: (-abs(item[1]), item[0]))[:_TOP_RULES]


def _items(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []


def _listed(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _number(value: object) -> float | None:
    """A finite number, never a bool (a JSON `true` is not a score)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: object) -> str:
    """A short single-line string, or empty: control characters would let a lead's field forge lines
    in whatever shows the summary."""
    if not isinstance(value, str):
        return ""
    return _clip(" ".join(_NOT_PRINTABLE.sub(" ", value).split()), _FIELD_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
