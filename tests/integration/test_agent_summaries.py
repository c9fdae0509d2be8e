"""Agents' summaries against the real stack: the built-in summary in every synchronous answer; a
provider's, asked with the template's credential, which is write-only (stored sealed, never
returned, never logged, never carried to another URL or into a copy); provider URLs refused when
saved unless DripPulse may call them; and every provider call an agent made counted in its costs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drippulse.operators import reseal_secrets
from drippulse.settings import Settings, secret_box
from processors.templates import lead_qualification_agent
from tests import control_plane
from tests.chat_completions_server import ChatCompletionsServer
from tests.integration.helpers import deploy_agent
from tests.stack import WorkerProcess, api_process

pytestmark = pytest.mark.stack
CREDENTIAL = "sk-live-a-credential-nobody-may-read"
LEAD = {"lead_id": "lead-summary", "email": "bea@initech.net", "title": "VP Sales", "country": "US"}
PUBLIC_PROVIDER = "https://93.184.216.34/v1"


def provider(url: str) -> dict[str, Any]:
    return {"kind": "openai_compatible", "url": url, "model": "test-model", "timeout_s": 10}


def with_provider(url: str) -> dict[str, Any]:
    return {**lead_qualification_agent(), "summary": provider(url)}


def created(response: httpx.Response) -> Any:
    assert response.status_code == 201, response.text
    return response.json()


def refused_field(response: httpx.Response, kind: str) -> str:
    assert response.status_code == 422 and response.json()["type"].endswith(kind), response.text
    [error] = response.json()["errors"]
    field: str = error["field"]
    return field


def test_inference_score_lead_and_execute_carry_the_built_in_summary_by_default(
    org_factory: Any, qualifier: WorkerProcess
) -> None:
    client = org_factory("Summaries Co")["client"]
    agent = deploy_agent(client, lead_qualification_agent())
    answers = [
        client.post(f"/api/v1/agents/{agent['id']}/inference", json={"lead": LEAD}),
        client.post(f"/api/v1/agents/{agent['id']}/score_lead", json={"lead": LEAD}),
        client.post(f"/api/v1/agents/{agent['id']}/execute", params={"wait": 30}, json={"lead": LEAD}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        summary = answer.json()["summary"]
        assert (summary["source"], summary["provider_calls"], summary["fallback_reason"]) == ("builtin", 0, None)
        assert "Score " in summary["text"] and "bea@initech.net" not in summary["text"]


def test_a_summary_credential_is_write_only_stored_sealed_and_never_follows_a_new_url(
    org_factory: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = org_factory("Sealed Co")["client"]
    body = {"name": "with a provider", "definition": with_provider(PUBLIC_PROVIDER), "summary_credential": CREDENTIAL}
    template = created(client.post("/api/v1/agent_templates", json=body))
    path = f"/api/v1/agent_templates/{template['id']}"
    assert template["has_summary_credential"] is True

    stored = control_plane.stored_summary_credential(settings, template["id"], 1)
    assert stored is not None and CREDENTIAL not in stored
    assert secret_box(settings).open(stored) == CREDENTIAL
    kept = created(client.post(f"{path}/versions", json={"definition": with_provider(PUBLIC_PROVIDER)}))
    assert kept["has_summary_credential"] is True
    moved = client.post(f"{path}/versions", json={"definition": with_provider("https://93.184.216.35/v1")})
    assert refused_field(moved, "validation") == "$.summary_credential"
    copied = created(client.post("/api/v1/agent_templates", json={"copy_of": template["id"], "name": "a copy"}))
    assert copied["has_summary_credential"] is False

    audit = client.get("/api/v1/audit_log", params={"resource_id": template["id"]})
    seen = [
        client.get(path).text,
        client.get(f"{path}/versions").text,
        client.get(f"{path}/versions/1").text,
        audit.text,
        caplog.text,
    ]
    assert audit.status_code == 200 and len(audit.json()["items"]) == 2
    assert not [text for text in seen if CREDENTIAL in text or stored in text]


def test_secrets_reseal_reseals_summary_credentials(org_factory: Any, settings: Settings) -> None:
    client = org_factory("Reseal Co")["client"]
    body = {"name": "to reseal", "definition": with_provider(PUBLIC_PROVIDER), "summary_credential": CREDENTIAL}
    template = created(client.post("/api/v1/agent_templates", json=body))
    before = control_plane.stored_summary_credential(settings, template["id"], 1)
    assert reseal_secrets(settings) >= 1
    after = control_plane.stored_summary_credential(settings, template["id"], 1)
    assert after is not None and after != before and secret_box(settings).open(after) == CREDENTIAL


def test_an_unsafe_summary_provider_url_or_a_credential_without_a_provider_is_refused_when_saved(
    org_factory: Any,
) -> None:
    client = org_factory("Unsafe Co")["client"]
    for url in ("http://127.0.0.1:8000/v1", "http://169.254.169.254/latest", "http://10.0.0.1/v1"):
        answer = client.post("/api/v1/agent_templates", json={"definition": with_provider(url)})
        assert refused_field(answer, "unsafe-destination") == "$.definition.summary.url", url
    template = created(client.post("/api/v1/agent_templates", json={"definition": lead_qualification_agent()}))
    draft = f"/api/v1/agent_templates/{template['id']}/versions/1"
    answer = client.patch(draft, json={"definition": with_provider("http://127.0.0.1:8000/v1")})
    assert refused_field(answer, "unsafe-destination") == "$.definition.summary.url"
    answer = client.patch(draft, json={"definition": lead_qualification_agent(), "summary_credential": CREDENTIAL})
    assert refused_field(answer, "validation") == "$.summary_credential"


def test_a_providers_summary_is_asked_with_the_opened_credential_and_each_call_is_a_cost(
    org_factory: Any, settings: Settings, clickhouse_http: tuple[str, Path]
) -> None:
    """On an API process that may call loopback providers (as a local setup does), with its own
    ClickHouse: its provider calls are the only costs that ClickHouse holds."""
    org = org_factory("Provider Co")
    url, _ = clickhouse_http
    env = {"CLICKHOUSE_URL": url, "DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK": "true"}
    with ChatCompletionsServer() as server, api_process(settings, env) as reached:
        client = httpx.Client(base_url=reached.api_url, headers={"Authorization": f"Bearer {org['key']}"}, timeout=60)
        agent = deploy_agent(client, with_provider(server.base_url + "/v1"), summary_credential=CREDENTIAL)
        calls = [f"/api/v1/agents/{agent['id']}/{call}" for call in ("inference", "score_lead")]
        summaries = [client.post(call, json={"lead": LEAD}).json()["summary"] for call in calls]
        assert [(s["source"], s["text"], s["provider_calls"]) for s in summaries] == [
            ("provider", "A summary from the provider.", 1)
        ] * 2
        assert [request.headers["authorization"] for request in server.received] == [f"Bearer {CREDENTIAL}"] * 2

        server.status = 500
        fell_back = client.post(calls[0], json={"lead": LEAD}).json()["summary"]
        assert (fell_back["source"], fell_back["provider_calls"]) == ("builtin", 1)
        assert fell_back["fallback_reason"] == "the provider answered HTTP 500"

        since = (datetime.now(UTC) - timedelta(days=2)).isoformat()
        metrics = client.get(f"/api/v1/agents/{agent['id']}/metrics", params={"bucket": "day", "since": since})
        assert metrics.status_code == 200, metrics.text
        periods = metrics.json()["periods"]
        assert sum(period["units"]["provider_calls"] for period in periods) == 3
        per_call = metrics.json()["unit_prices"]["per_provider_call"]
        assert sum(period["cost"] for period in periods) == pytest.approx(3 * per_call)
    logged = (settings.log_dir / f"api-{reached.api_port}.log").read_text()
    assert CREDENTIAL not in logged and "summary provider" in logged, "the fallback is logged, never the credential"
