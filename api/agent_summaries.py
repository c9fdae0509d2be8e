"""The summary of an agent's decision in its synchronous answers (inference, score_lead, execute
with `?wait`): the template's provider through api.summarizer, the credential opened only for the
call, and every provider call recorded against the agent's backing workflow, so its metrics, costs
and budget count it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from api.provider_calls import record_provider_calls
from api.summarizer import Summarizer, Summary
from processors.summaries import SummaryProvider
from streams.sinks.clickhouse import ClickHouse
from streams.state.secret_box import SecretBox


class AgentSummaries:
    """One per API process (`app.state.agent_summaries`)."""

    def __init__(self, summarizer: Summarizer, box: SecretBox, clickhouse: ClickHouse) -> None:
        self._summarizer = summarizer
        self._box = box
        self._clickhouse = clickhouse

    async def summarize(
        self,
        org_id: str,
        workflow_id: str,
        provider: SummaryProvider,
        sealed_credential: str | None,
        lead: Mapping[str, Any],
        decision: Mapping[str, Any],
        execution_id: str = "",
    ) -> Summary:
        """Never fails for the provider's sake (a fallback is the built-in summary). Each summary
        records its own calls under an id of its own: a repeated request that asks the provider
        again is charged again, as the provider charges it."""
        summary = await self._summarizer.summarize_sealed(provider, self._box, sealed_credential, lead, decision)
        call_id = f"sum_{uuid.uuid4().hex}"
        await record_provider_calls(
            self._clickhouse, org_id, workflow_id, summary.provider_calls, call_id, execution_id
        )
        return summary
