"""Summaries for the API's synchronous agent calls: the template's provider when it has one, the
built-in summary whenever the provider cannot answer in time or answers nonsense.

A provider is an embellishment, never a dependency: `summarize` never raises, never waits longer
than the template's `timeout_s`, and never queues. At most `max_concurrent` provider calls run in
the process at once; when they are all taken, the next summary is the built-in one at once
(`busy`), so a slow provider cannot pile requests up behind it or hold the API's connections.

The call goes through the SSRF-guarded outbound client every customer-configured URL goes through
(one parse, one resolution, the checked address connected to, no proxies, no redirects): a
template's URL is checked when it is saved, and again here, where it counts. Loopback is allowed
only where DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK allows it for webhooks and CRMs.

The credential and the lead never reach a log: a failure is logged with the provider's redacted
origin, the model, the reason and the latency. Reasons are ours (a status code, "no answer within
2 s", the guard's refusal), never the provider's body, so they are safe to store with the execution.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from processors.summaries import MAX_TIMEOUT_S, SummaryProvider, builtin_summary
from streams.delivery.outbound_http import NoAnswer, OutboundHttp
from streams.delivery.redacted_url import redacted_url
from streams.delivery.ssrf_guard import UnsafeDestination
from streams.state.secret_box import SecretBox

log = logging.getLogger(__name__)

HEADERS = {"user-agent": "DripPulse-Summaries/0.1", "content-type": "application/json"}
MAX_ANSWER_BYTES = 64 * 1024
"""A chat completion of `max_tokens` ≤ 2000 fits many times over; a longer answer is cut and then
reads as malformed."""
MAX_TEXT_CHARS = 4000
"""A provider's summary is cut to this."""
_REASON_CHARS = 200
SYSTEM_PROMPT = (
    "You summarise a CRM lead and an automated qualification decision for a salesperson. In two or three "
    "plain sentences say who the lead is, the score and tier and the main reasons, the recommended owner, "
    "and what happens next. Use only the facts given; do not invent any."
)
DECISION_FIELDS = ("score", "tier", "owner", "routing_reason", "status", "actions", "score_breakdown", "probability")
"""What a provider is told of the decision: what the built-in summary reads too, nothing internal."""


class Summary(BaseModel):
    text: str
    source: Literal["builtin", "provider"]
    provider_calls: int = Field(
        description="Attempts to reach the provider (0 or 1), answered or not: what the agent's costs count."
    )
    fallback_reason: str | None = Field(
        default=None, description="Why the provider's summary was not used; null when it was, or none was asked."
    )
    latency_ms: float


class ProviderFailed(Exception):
    """Why a provider's answer was not used, in words safe to store and show."""


class Summarizer:
    """One per API process (`app.state.summarizer`): its concurrency bound is per process."""

    def __init__(self, allow_loopback: bool, max_concurrent: int) -> None:
        self._http = OutboundHttp(MAX_TIMEOUT_S, allow_loopback, HEADERS)
        self._slots = asyncio.Semaphore(max_concurrent)

    async def summarize(
        self,
        provider: SummaryProvider,
        credential: str | None,
        lead: Mapping[str, Any],
        decision: Mapping[str, Any],
    ) -> Summary:
        """`credential` is the opened provider credential (`SecretBox.open` of what is stored sealed);
        None sends no Authorization header (a provider that needs none)."""
        started = time.perf_counter()
        if provider.kind == "builtin":
            return _builtin(lead, decision, started, provider_calls=0, reason=None)
        if self._slots.locked():
            return self._fell_back(provider, lead, decision, started, provider_calls=0, reason="busy")
        async with self._slots:
            try:
                text = await self._ask(provider, credential, lead, decision)
            except ProviderFailed as failure:
                reason = str(failure)
            except Exception as exc:  # a summary must never fail the agent's call
                reason = f"unexpected error ({type(exc).__name__})"
            else:
                return Summary(text=text, source="provider", provider_calls=1, latency_ms=_since(started))
        return self._fell_back(provider, lead, decision, started, provider_calls=1, reason=reason)

    async def summarize_sealed(
        self,
        provider: SummaryProvider,
        box: SecretBox,
        sealed_credential: str | None,
        lead: Mapping[str, Any],
        decision: Mapping[str, Any],
    ) -> Summary:
        """`summarize` with the credential as stored (`SecretBox.seal` of it), opened only for the
        call. A credential no key of DRIPPULSE_SECRET_KEY opens (a key dropped before `drippulse
        secrets reseal`) is a fallback like any other, not an error."""
        if provider.kind == "builtin" or sealed_credential is None:
            return await self.summarize(provider, None, lead, decision)
        try:
            credential = box.open(sealed_credential)
        except ValueError:
            reason = "the credential cannot be opened with any key of DRIPPULSE_SECRET_KEY"
            return self._fell_back(provider, lead, decision, time.perf_counter(), provider_calls=0, reason=reason)
        return await self.summarize(provider, credential, lead, decision)

    async def close(self) -> None:
        await self._http.close()

    async def _ask(
        self, provider: SummaryProvider, credential: str | None, lead: Mapping[str, Any], decision: Mapping[str, Any]
    ) -> str:
        facts = {"lead": lead, "decision": {key: decision[key] for key in DECISION_FIELDS if key in decision}}
        body = orjson.dumps(
            {
                "model": provider.model,
                "messages": [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {
                        "role": "user",
                        "content": orjson.dumps(facts, default=str, option=orjson.OPT_NON_STR_KEYS).decode(),
                    },
                ],
                "max_tokens": provider.max_tokens,
                "temperature": 0,
            }
        )
        headers = {"authorization": f"Bearer {credential}"} if credential else {}
        try:
            # The client's own timeout bounds the exchange; this one also bounds the DNS lookup.
            async with asyncio.timeout(provider.timeout_s):
                answer = await self._http.request(
                    "POST", _endpoint(provider), body, headers, MAX_ANSWER_BYTES, timeout_s=provider.timeout_s
                )
        except TimeoutError:
            raise ProviderFailed(f"no answer within {provider.timeout_s:g} s") from None
        except UnsafeDestination as refused:
            raise ProviderFailed(_clip(f"refused by the SSRF guard: {refused}")) from None
        except NoAnswer as failed:
            raise ProviderFailed(_clip(f"no answer: {failed}")) from None
        if not 200 <= answer.status < 300:
            raise ProviderFailed(f"the provider answered HTTP {answer.status}")
        return _content(answer.body)

    def _fell_back(
        self,
        provider: SummaryProvider,
        lead: Mapping[str, Any],
        decision: Mapping[str, Any],
        started: float,
        provider_calls: int,
        reason: str,
    ) -> Summary:
        summary = _builtin(lead, decision, started, provider_calls, reason)
        origin = redacted_url(_endpoint(provider))
        log.warning(
            "summary provider %s (model %s) not used, built-in summary instead: %s",
            origin,
            provider.model,
            reason,
            extra={
                "summary_provider": origin,
                "summary_model": provider.model,
                "fallback_reason": reason,
                "latency_ms": summary.latency_ms,
            },
        )
        return summary


def _builtin(
    lead: Mapping[str, Any], decision: Mapping[str, Any], started: float, provider_calls: int, reason: str | None
) -> Summary:
    return Summary(
        text=builtin_summary(lead, decision),
        source="builtin",
        provider_calls=provider_calls,
        fallback_reason=reason,
        latency_ms=_since(started),
    )


def _endpoint(provider: SummaryProvider) -> str:
    return f"{str(provider.url).rstrip('/')}/chat/completions"


def _content(body: bytes) -> str:
    """`choices[0].message.content` of a chat completion."""
    try:
        content = orjson.loads(body)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise ProviderFailed("the provider's answer is not a chat completion") from None
    if not isinstance(content, str) or not content.strip():
        raise ProviderFailed("the provider's answer has no content")
    return content.strip()[:MAX_TEXT_CHARS]


def _clip(reason: str) -> str:
    return reason[:_REASON_CHARS]


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
