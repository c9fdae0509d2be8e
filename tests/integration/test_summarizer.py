"""Summaries from an OpenAI-compatible provider, against a real HTTP server on a loopback port, and
the built-in summary whenever the provider cannot be used. No stack needed."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet

from api.summarizer import Summarizer, Summary
from processors.summaries import SummaryProvider, builtin_summary
from streams.state.secret_box import SecretBox
from tests.chat_completions_server import ChatCompletionsServer, completion

CREDENTIAL = "sk-test-s3cret-credential"
LEAD = {"lead_id": "lead-1", "email": "ada@acme.example", "first_name": "Ada", "title": "CTO", "company": "Acme"}
DECISION = {
    "score": 80,
    "tier": "A",
    "owner": "emea",
    "routing_reason": "territory emea",
    "status": "completed",
    "actions": ["crm_update"],
    "score_breakdown": {"cto": 30},
    "logs": ["internal"],
}


@pytest.fixture
def server() -> Iterator[ChatCompletionsServer]:
    with ChatCompletionsServer() as running:
        yield running
        if running.held is not None:
            running.held.set()


def provider(url: str, timeout_s: float = 10.0) -> SummaryProvider:
    return SummaryProvider(kind="openai_compatible", url=url, model="test-model", timeout_s=timeout_s, max_tokens=120)


def summarize(kind: SummaryProvider, allow_loopback: bool = True, credential: str | None = CREDENTIAL) -> Summary:
    async def scenario() -> Summary:
        summarizer = Summarizer(allow_loopback=allow_loopback, max_concurrent=4)
        try:
            return await summarizer.summarize(kind, credential, LEAD, DECISION)
        finally:
            await summarizer.close()

    return asyncio.run(scenario())


def assert_built_in(summary: Summary, provider_calls: int = 1) -> str:
    assert summary.source == "builtin" and summary.text == builtin_summary(LEAD, DECISION)
    assert summary.provider_calls == provider_calls
    assert summary.fallback_reason
    return summary.fallback_reason


def test_the_providers_text_is_the_summary_asked_for_with_the_bearer_credential(
    server: ChatCompletionsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    summary = summarize(provider(server.base_url + "/v1"))
    assert summary.source == "provider" and summary.text == "A summary from the provider."
    assert summary.provider_calls == 1 and summary.fallback_reason is None
    [request] = server.received
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {CREDENTIAL}"
    assert request.body["model"] == "test-model" and request.body["max_tokens"] == 120
    assert request.body["temperature"] == 0
    system, user = request.body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert '"email":"ada@acme.example"' in user["content"] and '"tier":"A"' in user["content"]
    assert "internal" not in user["content"], "the decision's internals are not sent"
    assert CREDENTIAL not in caplog.text


def test_no_credential_sends_no_authorization_header(server: ChatCompletionsServer) -> None:
    summary = summarize(provider(server.base_url), credential=None)
    assert summary.source == "provider"
    assert "authorization" not in server.received[0].headers


def test_a_builtin_provider_makes_no_call() -> None:
    summary = summarize(SummaryProvider())
    assert summary.source == "builtin" and summary.provider_calls == 0 and summary.fallback_reason is None


def test_a_provider_slower_than_its_timeout_gives_the_built_in_summary_and_says_so(
    server: ChatCompletionsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.held = threading.Event()
    summary = summarize(provider(server.base_url, timeout_s=0.3))
    assert assert_built_in(summary) == "no answer within 0.3 s"
    assert server.arrived.is_set(), "the provider was asked"
    assert "no answer within 0.3 s" in caplog.text
    assert CREDENTIAL not in caplog.text and "ada@acme.example" not in caplog.text and "Ada" not in caplog.text


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, b'{"error": "upstream leaked tok-upstream-secret"}', "the provider answered HTTP 500"),
        (401, b'{"error": "bad key"}', "the provider answered HTTP 401"),
        (200, b"<html>not json</html>", "the provider's answer is not a chat completion"),
        (200, b'{"choices": []}', "the provider's answer is not a chat completion"),
        (200, completion("   "), "the provider's answer has no content"),
        (200, completion(None), "the provider's answer has no content"),
    ],
)
def test_a_failed_or_malformed_answer_gives_the_built_in_summary_without_echoing_the_body(
    server: ChatCompletionsServer, caplog: pytest.LogCaptureFixture, status: int, body: bytes, reason: str
) -> None:
    caplog.set_level(logging.DEBUG)
    server.status, server.body = status, body
    summary = summarize(provider(server.base_url))
    assert assert_built_in(summary) == reason
    assert len(server.received) == 1
    assert "tok-upstream-secret" not in caplog.text and CREDENTIAL not in caplog.text


def test_loopback_is_refused_unless_allowed_and_the_provider_hears_nothing(
    server: ChatCompletionsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    summary = summarize(provider(server.base_url), allow_loopback=False)
    reason = assert_built_in(summary)
    assert reason.startswith("refused by the SSRF guard") and "loopback" in reason
    assert server.received == []
    assert CREDENTIAL not in caplog.text


def test_a_cloud_metadata_address_is_refused_even_where_loopback_is_allowed() -> None:
    summary = summarize(provider("http://169.254.169.254/latest"), allow_loopback=True)
    reason = assert_built_in(summary)
    assert reason.startswith("refused by the SSRF guard") and "metadata" in reason


def test_a_provider_that_cannot_be_reached_gives_the_built_in_summary() -> None:
    with ChatCompletionsServer() as closed:
        url = closed.base_url
    summary = summarize(provider(url))
    assert assert_built_in(summary).startswith("no answer: ")


def test_when_every_provider_slot_is_taken_the_next_summary_is_built_in_at_once(server: ChatCompletionsServer) -> None:
    server.held = threading.Event()

    async def scenario() -> tuple[Summary, Summary]:
        summarizer = Summarizer(allow_loopback=True, max_concurrent=1)
        try:
            first = asyncio.ensure_future(summarizer.summarize(provider(server.base_url), CREDENTIAL, LEAD, DECISION))
            assert await asyncio.get_running_loop().run_in_executor(None, server.arrived.wait, 30)
            second = await summarizer.summarize(provider(server.base_url), CREDENTIAL, LEAD, DECISION)
            assert server.held is not None
            server.held.set()
            return await first, second
        finally:
            await summarizer.close()

    first, second = asyncio.run(scenario())
    assert first.source == "provider"
    assert assert_built_in(second, provider_calls=0) == "busy"
    assert len(server.received) == 1, "the busy summary never reached the provider"


def test_lead_values_json_cannot_encode_are_sent_as_text(server: ChatCompletionsServer) -> None:
    async def scenario() -> Summary:
        summarizer = Summarizer(allow_loopback=True, max_concurrent=1)
        try:
            odd: dict[str, Any] = {**LEAD, "seen": {1, 2}, 3: "numeric key"}
            return await summarizer.summarize(provider(server.base_url), CREDENTIAL, odd, DECISION)
        finally:
            await summarizer.close()

    assert asyncio.run(scenario()).source == "provider"


def summarize_sealed(kind: SummaryProvider, box: SecretBox, sealed: str | None) -> Summary:
    async def scenario() -> Summary:
        summarizer = Summarizer(allow_loopback=True, max_concurrent=1)
        try:
            return await summarizer.summarize_sealed(kind, box, sealed, LEAD, DECISION)
        finally:
            await summarizer.close()

    return asyncio.run(scenario())


def test_a_sealed_credential_is_opened_only_to_be_sent_as_the_bearer(server: ChatCompletionsServer) -> None:
    box = SecretBox([Fernet.generate_key()])
    sealed = box.seal(CREDENTIAL)
    assert CREDENTIAL not in sealed
    summary = summarize_sealed(provider(server.base_url), box, sealed)
    assert summary.source == "provider"
    assert server.received[0].headers["authorization"] == f"Bearer {CREDENTIAL}"


def test_a_credential_no_key_opens_gives_the_built_in_summary_and_sends_nothing(
    server: ChatCompletionsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sealed = SecretBox([Fernet.generate_key()]).seal(CREDENTIAL)
    summary = summarize_sealed(provider(server.base_url), SecretBox([Fernet.generate_key()]), sealed)
    assert "cannot be opened" in assert_built_in(summary, provider_calls=0)
    assert server.received == []
    assert sealed not in caplog.text
