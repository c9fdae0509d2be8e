"""Reads what a backtest of the learned model needs from ClickHouse, for one organization: its
outcome events, the describing events of those leads, and the rules' verdicts on them (executions).

Outcomes are inbound events like any other (`inbound_events`), so the history the replay reads is
the history a backtest reads; a lead's features come from its own earlier `lead.created` /
`lead.updated` events (processors/backtest.py picks those before each outcome)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson

from api.history_reader import occurred_window
from processors.backtest import LeadEvent, Outcome, RulesVerdict
from processors.events import DESCRIBING_LEADS, OUTCOMES
from streams.sinks.clickhouse import ClickHouse


class OutcomeHistoryReader:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse
        self._events = f"{clickhouse.database}.inbound_events"
        self._executions = f"{clickhouse.database}.executions"

    def outcomes(
        self, org_id: str, last: int, since_ms: int | None, until_ms: int | None
    ) -> tuple[list[Outcome], dict[str, list[LeadEvent]]]:
        """The org's latest `last` outcomes in the window, and every describing event of their leads
        up to the window's end, in time order per lead."""
        chosen, params = self._chosen(org_id, last, since_ms, until_ms)
        rows = self._ch.query(
            f"SELECT event_id, lead_id, event_type, toUnixTimestamp64Milli(occurred_at) AS at_ms FROM ({chosen})",
            params,
        )
        outcomes = [
            Outcome(int(row["at_ms"]), row["event_id"], row["lead_id"], OUTCOMES[row["event_type"]]) for row in rows
        ]
        described = self._ch.query(
            "SELECT lead_id, event_type, toUnixTimestamp64Milli(occurred_at) AS at_ms, event_json "
            f"FROM {self._events} FINAL WHERE org_id = {{org_id:String}} "
            "AND event_type IN {describing:Array(String)} "
            + ("AND occurred_at < fromUnixTimestamp64Milli({until_ms:Int64}) " if until_ms is not None else "")
            + f"AND lead_id IN (SELECT lead_id FROM ({chosen})) ORDER BY lead_id, occurred_at, event_id",
            params,
        )
        events: dict[str, list[LeadEvent]] = defaultdict(list)
        for row in described:
            lead = orjson.loads(row["event_json"]).get("lead") or {}
            events[row["lead_id"]].append(LeadEvent(int(row["at_ms"]), row["event_type"], lead))
        return outcomes, events

    def verdicts(
        self, org_id: str, workflow_id: str | None, last: int, since_ms: int | None, until_ms: int | None
    ) -> tuple[str | None, dict[str, list[RulesVerdict]]]:
        """(the workflow whose verdicts these are, its verdicts on the outcomes' leads in time order per
        lead): the workflow asked for, else the one that evaluated the most of these leads."""
        chosen, params = self._chosen(org_id, last, since_ms, until_ms)
        rows = self._ch.query(
            "SELECT workflow_id, lead_id, score, tier, toUnixTimestamp64Milli(event_occurred_at) AS at_ms "
            f"FROM {self._executions} FINAL WHERE org_id = {{org_id:String}} "
            "AND event_type IN {describing:Array(String)} "
            + ("AND workflow_id = {workflow_id:String} " if workflow_id is not None else "")
            + f"AND lead_id IN (SELECT lead_id FROM ({chosen})) ORDER BY lead_id, event_occurred_at, execution_id",
            {**params, "workflow_id": workflow_id or ""},
        )
        picked = workflow_id
        if picked is None and rows:
            picked = Counter(row["workflow_id"] for row in rows).most_common(1)[0][0]
        verdicts: dict[str, list[RulesVerdict]] = defaultdict(list)
        for row in rows:
            if row["workflow_id"] == picked:
                verdicts[row["lead_id"]].append(RulesVerdict(int(row["at_ms"]), int(row["score"]), row["tier"]))
        return picked, verdicts

    def _chosen(self, org_id: str, last: int, since_ms: int | None, until_ms: int | None) -> tuple[str, dict[str, Any]]:
        """The query of the outcomes a backtest takes (the latest `last` in the window), and its parameters."""
        clauses, params = occurred_window(org_id, since_ms, until_ms)
        params.update(outcomes=sorted(OUTCOMES), describing=sorted(DESCRIBING_LEADS))
        window = " AND ".join(clauses)
        return (
            f"SELECT event_id, lead_id, event_type, occurred_at FROM {self._events} FINAL WHERE {window} "
            f"AND event_type IN {{outcomes:Array(String)}} ORDER BY occurred_at DESC, event_id DESC LIMIT {int(last)}",
            params,
        )
