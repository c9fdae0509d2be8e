"""The Lead Qualification demo: stack up, one org with the Lead Qualification Agent deployed from
the built-in template (tier A leads wait for a person with the Approver role), a webhook subscription
to a local endpoint, N leads through Kafka (the agent's policy is triggered by new leads, so they all
go through it), then a summary read back from ClickHouse through the API, the count of notifications
the endpoint received and verified, one approval taken end to end with the curl commands to take the
next, and the agent's metrics and one `score_lead` call.

Outcomes follow for part of the leads, drawn from features the rules only partly agree with
(drippulse/synthetic.py); the trainer learns the org's model from them, and the summary shows the
model and a backtest of it against the rules' score. They are sent once every lead is decided: the
agent's score also counts the learned model's say, which before the org has a model adds nothing,
so the backtest's rules-only side is the rules' own score."""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from drippulse.demo_agent import AgentNotDeployed, deploy_agent, print_agent_report
from drippulse.demo_receiver import DemoReceiver
from drippulse.lead_producer import produce_leads, produce_outcomes
from drippulse.operators import create_org, create_user
from drippulse.services import LocalServices
from drippulse.settings import Settings
from streams.clock import now_ms

console = Console()
APPROVER_EMAIL = "approver@demo.test"
APPROVER_PASSWORD = "demo approver password"
"""A local demo's person with the Approver role; the demo prints these so the reader can log in."""
OUTCOME_SHARE = 0.3
"""The share of the leads whose outcome (converted or disqualified) the demo sends after them."""


class DemoFailed(RuntimeError):
    pass


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def run_demo(settings: Settings, leads: int, serve: bool, timeout_s: float = 600.0) -> dict[str, Any]:
    receiver = DemoReceiver()
    receiver.start()
    services = LocalServices(
        settings, env={"DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true", "DRIPPULSE_MODEL_CHECKPOINT_S": "1"}
    )
    try:
        console.print(
            "[bold]Starting the embedded stack, the API, the qualifier, the orchestrator, the webhook worker "
            "and the model trainer…[/bold]"
        )
        console.print("(loopback webhook URLs are allowed in this local demo, for its own endpoint)")
        services.start()
        created = create_org(settings, "Demo Co")
        org_id, api_key = created.org_id, created.api_key
        api = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        create_user(settings, org_id, APPROVER_EMAIL, "Demo Approver", ["approver"], APPROVER_PASSWORD)
        subscription = (
            api.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["lead.qualified"]})
            .raise_for_status()
            .json()
        )
        receiver.trust(subscription["secret"])
        console.print(
            f"Organization [cyan]{org_id}[/cyan]; webhook subscription [cyan]{subscription['id']}[/cyan] "
            f"-> {receiver.url}"
        )
        try:
            agent = deploy_agent(api, created.project_id, [subscription["id"]])
        except AgentNotDeployed as exc:
            raise DemoFailed(str(exc)) from None
        workflow_id = agent["workflow_id"]
        console.print(
            f"Agent [cyan]{agent['id']}[/cyan] deployed from the built-in Lead Qualification Agent "
            f"(template {agent['template_id']} v{agent['template_version']}, {agent['status']}); it runs as "
            f"workflow [cyan]{workflow_id}[/cyan]",
            highlight=False,
        )
        started_ms = now_ms()

        with _progress() as progress:
            task = progress.add_task("Producing leads to Kafka", total=leads)
            produce_leads(settings, [org_id], leads, on_progress=lambda n: progress.advance(task, n))
            stored = progress.add_task("Agent executions in ClickHouse", total=leads)
            summary = _wait_for_executions(
                api, workflow_id, leads, timeout_s, services, lambda n: progress.update(stored, completed=n)
            )
            told = progress.add_task("Producing outcomes to Kafka", total=round(leads * OUTCOME_SHARE))
            outcomes = produce_outcomes(
                settings, [org_id], leads, OUTCOME_SHARE, on_progress=lambda n: progress.advance(told, n)
            )
            progress.update(told, total=outcomes, completed=outcomes)
            notified = progress.add_task("Webhooks verified by the endpoint", total=summary["completed"])
            _wait_for_notifications(receiver, summary["completed"], timeout_s, services, progress, notified)
            learned = progress.add_task("Outcomes learned by the trainer", total=outcomes)
            model = _wait_for_model(api, outcomes, timeout_s, services, lambda n: progress.update(learned, completed=n))
            summary["backtest"] = _wait_for_backtest(api, outcomes, timeout_s, services)
        _print_summary(summary, settings)
        _print_model(model, summary["backtest"], outcomes)
        console.print(
            f"Webhooks: {len(receiver.verified):,} lead.qualified notifications delivered to the demo endpoint, "
            f"each verified with the standardwebhooks library ({receiver.rejected} rejected)"
        )
        _show_an_approval(settings, api, workflow_id, summary, receiver, services, timeout_s)
        print_agent_report(console, api, agent["id"], started_ms)
        if serve:
            console.print(f"\nServing. API key for this org: [bold]{api_key}[/bold]\nPress Ctrl-C to stop.")
            while True:
                services.check_alive()
                time.sleep(1)
        return summary
    finally:
        services.stop()
        receiver.stop()


def _show_an_approval(
    settings: Settings,
    api: httpx.Client,
    workflow_id: str,
    summary: dict[str, Any],
    receiver: DemoReceiver,
    services: LocalServices,
    timeout_s: float,
) -> None:
    """Approves one waiting lead as the demo's Approver, as a person would, and waits for its CRM
    update and notification; then prints how to approve the next with curl."""
    waiting = summary["awaiting_approval"]
    if not waiting:
        return
    deadline = time.monotonic() + timeout_s
    pending: list[dict[str, Any]] = []
    while len(pending) < waiting:
        services.check_alive()
        params: dict[str, str | int] = {"workflow_id": workflow_id, "status": "pending", "limit": 500}
        pending = api.get("/api/v1/approvals", params=params).raise_for_status().json()["items"]
        if len(pending) == 500 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not pending:
        raise DemoFailed(f"{waiting} executions wait for approval, but no approval opened in {timeout_s:.0f} s")
    login = httpx.post(
        f"{settings.api_url}/api/v1/auth/login", json={"email": APPROVER_EMAIL, "password": APPROVER_PASSWORD}
    ).raise_for_status()
    approver = httpx.Client(
        base_url=settings.api_url, headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=30
    )
    first, after = pending[0], len(receiver.verified)
    approver.post(f"/api/v1/approvals/{first['id']}/approve", json={"comment": "demo"}).raise_for_status()
    while len(receiver.verified) <= after:
        services.check_alive()
        if time.monotonic() > deadline:
            raise DemoFailed(f"approval {first['id']} was not followed by its notification")
        time.sleep(0.1)
    execution = _resumed_execution(api, first["execution_id"], services, deadline)
    console.print(
        f"\n[bold]Approvals:[/bold] {waiting:,} tier A leads waited for a person with the Approver role. "
        f"{APPROVER_EMAIL} approved {first['lead_id']} ({first['id']}); its CRM update and lead.qualified "
        f"notification went out (execution {execution['status']}, timeline: "
        + " → ".join(entry["what"] for entry in execution.get("timeline", []))
        + f"). {waiting - 1:,} still wait. Approve the next one with curl:"
    )
    base = settings.api_url
    credentials = f'{{"email": "{APPROVER_EMAIL}", "password": "{APPROVER_PASSWORD}"}}'
    console.print(
        f"  TOKEN=$(curl -s {base}/api/v1/auth/login -H 'content-type: application/json' -d '{credentials}' "
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"token\"])')\n"
        f"  curl -s '{base}/api/v1/approvals?status=pending&limit=1' -H \"Authorization: Bearer $TOKEN\"\n"
        f"  curl -s -X POST {base}/api/v1/approvals/{pending[1]['id'] if len(pending) > 1 else first['id']}/approve "
        '-H "Authorization: Bearer $TOKEN" -H \'content-type: application/json\' -d \'{"comment": "looks good"}\'',
        soft_wrap=True,
        highlight=False,
    )


def _resumed_execution(api: httpx.Client, execution_id: str, services: LocalServices, deadline: float) -> Any:
    """The execution as ClickHouse holds it once the resumed revision is written (the sink writes it
    after the notification may already have been delivered)."""
    while True:
        services.check_alive()
        execution = api.get(f"/api/v1/executions/{execution_id}").json()
        if execution.get("status") not in (None, "awaiting_approval"):
            return execution
        if time.monotonic() > deadline:
            raise DemoFailed(f"execution {execution_id} was approved but its resumed run never reached ClickHouse")
        time.sleep(0.1)


def _wait_for_executions(
    api: httpx.Client,
    workflow_id: str,
    expected: int,
    timeout_s: float,
    services: LocalServices,
    on_count: Any,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        services.check_alive()
        summary: dict[str, Any] = (
            api.get("/api/v1/executions/summary", params={"workflow_id": workflow_id}).raise_for_status().json()
        )
        on_count(summary["executions"])
        if summary["executions"] >= expected:
            if summary["executions"] != expected or summary["leads"] != expected:
                raise DemoFailed(f"expected {expected} executions for {expected} leads, got {summary}")
            return summary
        if time.monotonic() > deadline:
            raise DemoFailed(f"only {summary['executions']} of {expected} executions after {timeout_s:.0f} s")
        time.sleep(0.5)


def _wait_for_model(
    api: httpx.Client, outcomes: int, timeout_s: float, services: LocalServices, on_count: Any
) -> dict[str, Any]:
    """The org's model once a checkpointed version learned from every outcome."""
    deadline = time.monotonic() + timeout_s
    while True:
        services.check_alive()
        response = api.get("/api/v1/models/current", params={"top": 6})
        model: dict[str, Any] = response.json() if response.status_code == 200 else {"trained_on": 0}
        on_count(model["trained_on"])
        if model["trained_on"] >= outcomes:
            return model
        if time.monotonic() > deadline:
            raise DemoFailed(f"the trainer learned {model['trained_on']} of {outcomes} outcomes in {timeout_s:.0f} s")
        time.sleep(0.5)


def _wait_for_backtest(api: httpx.Client, outcomes: int, timeout_s: float, services: LocalServices) -> dict[str, Any]:
    """The backtest once every outcome reached ClickHouse's inbound history."""
    deadline = time.monotonic() + timeout_s
    while True:
        services.check_alive()
        report: dict[str, Any] = api.post("/api/v1/models/backtest", json={}).raise_for_status().json()
        if report["outcomes"] + report["without_features"] >= outcomes:
            return report
        if time.monotonic() > deadline:
            raise DemoFailed(f"only {report['outcomes']} of {outcomes} outcomes in ClickHouse after {timeout_s:.0f} s")
        time.sleep(0.5)


def _wait_for_notifications(
    receiver: DemoReceiver, expected: int, timeout_s: float, services: LocalServices, progress: Progress, task: Any
) -> None:
    """Every qualified lead's notification, each webhook-id once, each signature valid."""
    deadline = time.monotonic() + timeout_s
    while len(receiver.verified) < expected:
        services.check_alive()
        progress.update(task, completed=len(receiver.verified))
        if time.monotonic() > deadline:
            raise DemoFailed(f"only {len(receiver.verified)} of {expected} notifications after {timeout_s:.0f} s")
        time.sleep(0.2)
    progress.update(task, completed=len(receiver.verified))
    if receiver.rejected:
        raise DemoFailed(f"{receiver.rejected} notifications failed signature verification")


def _print_summary(summary: dict[str, Any], settings: Settings) -> None:
    console.print(
        f"\n[bold green]All {summary['leads']:,} leads accounted for in ClickHouse[/bold green] "
        f"({summary['completed']:,} qualified, {summary['filtered_out']:,} filtered out, "
        f"{summary['awaiting_approval']:,} waiting for approval)"
    )
    tiers = Table(title="Leads per tier")
    tiers.add_column("tier")
    tiers.add_column("leads", justify="right")
    for tier, count in summary["per_tier"].items():
        tiers.add_row(tier, f"{count:,}")
    owners = Table(title="Leads per owner")
    owners.add_column("owner")
    owners.add_column("leads", justify="right")
    for owner, count in summary["per_owner"].items():
        owners.add_row(owner, f"{count:,}")
    console.print(tiers, owners)
    console.print(
        f"End-to-end latency (event time → row in ClickHouse): p50 {summary['latency_p50_ms']:,} ms, "
        f"p99 {summary['latency_p99_ms']:,} ms"
    )
    console.print(f"API docs: {settings.api_url}/docs")


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _print_model(model: dict[str, Any], backtest: dict[str, Any], outcomes: int) -> None:
    weights = ", ".join(f"{w['feature']} {w['weight']:+.2f}" for w in model["top_weights"])
    console.print(
        f"\n[bold]Learned model[/bold]: version {model['version']}, trained on {model['trained_on']:,} outcomes "
        f"(lead.converted / lead.disqualified for {outcomes:,} leads); AUC over the latest "
        f"{model['metrics']['recent_window']:,}, each predicted before it was learned: "
        f"{_figure(model['metrics']['recent_auc'])}. Weights that matter most: {weights}",
        highlight=False,
    )
    learned, rules = backtest["learned"], backtest["rules"]
    console.print(
        f"[bold]Backtest[/bold] (POST /api/v1/models/backtest): trained on the earlier {backtest['train']:,} "
        f"outcomes, judged on the later {backtest['test']:,}. AUC learned {_figure(learned['auc'])} vs "
        f"rules-only {_figure(rules['auc'])}; log loss learned {_figure(learned['log_loss'])} vs rules-only "
        f"{_figure(rules['log_loss'])}",
        highlight=False,
    )
    tiers = Table(title="Backtest per rules tier (the later outcomes)")
    for column in ("tier", "leads", "conversion rate", "learned probability", "rules probability"):
        tiers.add_column(column, justify="left" if column == "tier" else "right")
    for tier in backtest["per_tier"]:
        tiers.add_row(
            tier["tier"] or "(none)",
            f"{tier['leads']:,}",
            f"{tier['conversion_rate']:.1%}",
            f"{tier['learned_probability']:.1%}",
            "n/a" if tier["rules_probability"] is None else f"{tier['rules_probability']:.1%}",
        )
    console.print(tiers)
