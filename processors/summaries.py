"""What an agent says about a lead and its decision, in a sentence or three.

The built-in summary is deterministic and needs no network: it is always there, and it is what an
agent uses unless its template names an OpenAI-compatible provider. A provider's answer is only ever
an embellishment: when it is slow or fails, the built-in summary stands in and the failure is
recorded, so a provider can never block or break a decision.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator


class SummaryProvider(BaseModel):
    """Where an agent's summaries come from. `builtin` (the default) is computed here; an
    `openai_compatible` provider is called at `url` (the chat-completions endpoint's base, e.g.
    `https://api.openai.com/v1`) with `model`; its credential is given separately and stored sealed,
    never in the definition."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["builtin", "openai_compatible"] = "builtin"
    url: HttpUrl | None = None
    model: str | None = Field(default=None, min_length=1, max_length=200)
    timeout_s: float = Field(default=2.0, gt=0, le=30)
    max_tokens: int = Field(default=200, ge=16, le=2000)

    @model_validator(mode="after")
    def _provider_is_named(self) -> SummaryProvider:
        if self.kind == "openai_compatible" and (self.url is None or self.model is None):
            raise ValueError("an openai_compatible provider needs 'url' and 'model'")
        return self
