"""The demo's Lead Qualification Agent: deployed from the built-in template as an org's admin would
through the API, and read back at the end (its metrics over the run, one `score_lead` call), so the
demo shows the agent the issue describes rather than a bare workflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

BUILTIN_TEMPLATE = "builtin:lead-qualification"
SAMPLE_LEAD: dict[str, Any] = {
    "lead_id": "sample-ada",
    "email": "ada@initech.net",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Initech",
    "title": "CTO",
    "country": "GB",
    "industry": "software",
    "employees": 800,
    "annual_revenue": 12_000_000.0,
    "lead_source": "referral",
    "attributes": {"utm_campaign": "retarget"},
}
"""A lead the rules and the synthetic truth disagree on (a CTO by referral: rules give little for
either), so `score_lead` shows the learned probability saying what the rules miss."""


class AgentNotDeployed(RuntimeError):
    pass


def deploy_agent(api: httpx.Client, project_id: str, webhook_ids: list[str]) -> dict[str, Any]:
    """Copies the built-in template into the project, activates version 1 and deploys it. The
    activation is the admin's own: the default project's policy asks no second person, so a 202 (a
    change request) means someone changed that policy and the demo cannot go on by itself."""
    template = (
        api.post("/api/v1/agent_templates", json={"copy_of": BUILTIN_TEMPLATE, "project_id": project_id})
        .raise_for_status()
        .json()
    )
    activated = api.post(f"/api/v1/agent_templates/{template['id']}/versions/{template['latest_version']}/activate")
    activated.raise_for_status()
    if activated.status_code != 200:
        raise AgentNotDeployed(
            f"activating {template['id']} opened change request {activated.json().get('id')}: the project's "
            "policy requires an Approver for template changes"
        )
    agent: dict[str, Any] = (
        api.post(
            "/api/v1/agents",
            json={"name": "Lead Qualification Agent", "template_id": template["id"], "webhook_ids": webhook_ids},
        )
        .raise_for_status()
        .json()
    )
    return agent


def print_agent_report(console: Console, api: httpx.Client, agent_id: str, since_ms: int) -> None:
    """The agent as the API shows it now, its metrics since `since_ms` (one row per day with
    executions: a run rarely crosses midnight UTC) and one `score_lead` call."""
    agent = api.get(f"/api/v1/agents/{agent_id}").raise_for_status().json()
    console.print(
        f"\n[bold]Agent[/bold] {agent['name']} [cyan]{agent['id']}[/cyan]: template {agent['template_id']} "
        f"v{agent['template_version']}, status {agent['status']}, backing workflow {agent['workflow_id']} "
        f"v{agent['workflow_version']}",
        highlight=False,
    )
    since = datetime.fromtimestamp(since_ms / 1000, UTC).isoformat()
    report = (
        api.get(f"/api/v1/agents/{agent_id}/metrics", params={"bucket": "day", "since": since})
        .raise_for_status()
        .json()
    )
    table = Table(title=f"Agent metrics (GET /api/v1/agents/{agent_id}/metrics?bucket=day)")
    for column in ("day (UTC)", "executions", "success rate", "latency p50", "latency p99", "cost"):
        table.add_column(column, justify="left" if column.startswith("day") else "right")
    for period in report["periods"]:
        if not period["executions"]:
            continue
        rate = period["success_rate"]
        table.add_row(
            datetime.fromtimestamp(period["start_ms"] / 1000, UTC).date().isoformat(),
            f"{period['executions']:,}",
            "n/a" if rate is None else f"{rate:.1%} of {period['terminal']:,} decided",
            _ms(period["latency_p50_ms"]),
            _ms(period["latency_p99_ms"]),
            f"{period['cost']:,.2f}",
        )
    console.print(table)
    total = sum(period["executions"] for period in report["periods"])
    console.print(
        f"{total:,} executions of the agent since the demo started (success rate: completed / decided, so "
        "filtered-out leads count against it and leads waiting for an Approver are not yet decided; latency: "
        "event time → the agent's decision)"
    )
    _print_score(console, api, agent_id)


def _print_score(console: Console, api: httpx.Client, agent_id: str) -> None:
    scored = api.post(f"/api/v1/agents/{agent_id}/score_lead", json={"lead": SAMPLE_LEAD}).raise_for_status().json()
    probability = scored["probability"]
    learned = "n/a" if probability is None else f"{probability:.1%} (model v{scored['model_version']})"
    console.print(
        f"\n[bold]score_lead[/bold] (POST /api/v1/agents/{agent_id}/score_lead) for {SAMPLE_LEAD['first_name']} "
        f"{SAMPLE_LEAD['last_name']}, {SAMPLE_LEAD['title']} at {SAMPLE_LEAD['company']} "
        f"({SAMPLE_LEAD['lead_source']}): score {scored['score']}, tier {scored['tier']}, owner {scored['owner']} "
        f"({scored['routing_reason']}), learned probability {learned}",
        highlight=False,
    )
    rules = Table(title="Why: each score rule, with what it read")
    for column in ("rule", "points", "matched", "comparisons"):
        rules.add_column(column, justify="right" if column == "points" else "left")
    for rule in scored["rules"]:
        rules.add_row(rule["id"], f"{rule['points']:+}", "yes" if rule["matched"] else "no", why(rule["condition"]))
    console.print(rules)
    console.print(f"[bold]Summary[/bold] ({scored['summary']['source']}): {scored['summary']['text']}", highlight=False)


def why(condition: dict[str, Any]) -> str:
    """A rule's explained condition (processors/explain.py) in one line: the value each field held
    and what it was compared with, so a reader sees why a rule matched or not without the JSON."""
    for key, joiner in (("all", " and "), ("any", " or ")):
        if key in condition:
            parts = condition[key]
            fields = {part.get("field") for part in parts}
            if len(fields) == 1 and None not in fields:
                return f"{_read(parts[0])}: " + joiner.join(_comparison(part) for part in parts)
            return "(" + joiner.join(why(part) for part in parts) + ")"
    if "not" in condition:
        return f"not {why(condition['not'])}"
    return f"{_read(condition)}: {_comparison(condition)}"


def _read(leaf: dict[str, Any]) -> str:
    actual = leaf["actual"]
    return f"{leaf['field']} = {f'{actual:.3f}' if isinstance(actual, float) else repr(actual)}"


def _comparison(leaf: dict[str, Any]) -> str:
    return f"{leaf['op']} {leaf['value']!r}" if "value" in leaf else leaf["op"]


def _ms(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,} ms"
