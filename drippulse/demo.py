"""The Lead Qualification demo: stack up, one org, one active workflow, a webhook subscription to a
local endpoint, N leads through Kafka, then a summary read back from ClickHouse through the API and
the count of notifications the endpoint received and verified."""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from drippulse.demo_receiver import DemoReceiver
from drippulse.lead_producer import produce_leads
from drippulse.operators import create_org
from drippulse.services import LocalServices
from drippulse.settings import Settings
from processors.templates import LEAD_QUALIFICATION

console = Console()


class DemoFailed(RuntimeError):
    pass


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


def run_demo(settings: Settings, leads: int, serve: bool, timeout_s: float = 600.0) -> dict[str, Any]:
    receiver = DemoReceiver()
    receiver.start()
    services = LocalServices(settings, env={"DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true"})
    try:
        console.print("[bold]Starting the embedded stack, the API, the qualifier and the webhook worker…[/bold]")
        console.print("(loopback webhook URLs are allowed in this local demo, for its own endpoint)")
        services.start()
        created = create_org(settings, "Demo Co")
        org_id, api_key = created.org_id, created.api_key
        api = httpx.Client(base_url=settings.api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        workflow = (
            api.post(
                "/api/v1/workflows",
                json={
                    "name": "Lead Qualification",
                    "description": "score, tier, route, update CRM, notify",
                    "definition": LEAD_QUALIFICATION,
                },
            )
            .raise_for_status()
            .json()
        )
        api.post(f"/api/v1/workflows/{workflow['id']}/activate").raise_for_status()
        console.print(f"Organization [cyan]{org_id}[/cyan], workflow [cyan]{workflow['id']}[/cyan] (active, v1)")
        subscription = (
            api.post("/api/v1/webhooks", json={"url": receiver.url, "event_types": ["lead.qualified"]})
            .raise_for_status()
            .json()
        )
        receiver.trust(subscription["secret"])
        console.print(f"Webhook subscription [cyan]{subscription['id']}[/cyan] -> {receiver.url}")

        with _progress() as progress:
            task = progress.add_task("Producing leads to Kafka", total=leads)
            produce_leads(settings, [org_id], leads, on_progress=lambda n: progress.advance(task, n))
            stored = progress.add_task("Executions in ClickHouse", total=leads)
            summary = _wait_for_executions(
                api, workflow["id"], leads, timeout_s, services, lambda n: progress.update(stored, completed=n)
            )
            notified = progress.add_task("Webhooks verified by the endpoint", total=summary["completed"])
            _wait_for_notifications(receiver, summary["completed"], timeout_s, services, progress, notified)
        _print_summary(summary, settings)
        console.print(
            f"Webhooks: {len(receiver.verified):,} lead.qualified notifications delivered to the demo endpoint, "
            f"each verified with the standardwebhooks library ({receiver.rejected} rejected)"
        )
        if serve:
            console.print(f"\nServing. API key for this org: [bold]{api_key}[/bold]\nPress Ctrl-C to stop.")
            while True:
                services.check_alive()
                time.sleep(1)
        return summary
    finally:
        services.stop()
        receiver.stop()


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
        f"({summary['completed']:,} qualified, {summary['filtered_out']:,} filtered out)"
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
