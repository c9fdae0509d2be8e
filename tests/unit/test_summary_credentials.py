"""What an agent template version stores as its summary provider's credential: sealed, never the
text given; kept from version to version only while the provider's URL stays the same, so editing
the URL alone can never send the stored credential to another server."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from api.control_plane.agent_templates import sealed_credential
from api.control_plane.tables import AgentTemplateVersion
from api.problems import Problem
from streams.state.secret_box import SecretBox

BOX = SecretBox([Fernet.generate_key()])
CREDENTIAL = "sk-live-s3cret"
PROVIDER = {"kind": "openai_compatible", "url": "https://llm.example.com/v1", "model": "m"}


def definition(summary: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "summary": summary}


def version(summary: dict[str, Any], credential: str | None) -> AgentTemplateVersion:
    return AgentTemplateVersion(definition=definition(summary), summary_credential=credential)


def refused(*args: Any) -> Problem:
    with pytest.raises(Problem) as refusal:
        sealed_credential(BOX, *args)
    assert refusal.value.status == 422
    assert [e["field"] for e in refusal.value.extra["errors"]] == ["$.summary_credential"]
    return refusal.value


def test_a_given_credential_is_stored_sealed_never_as_given() -> None:
    stored = sealed_credential(BOX, CREDENTIAL, definition(PROVIDER), None)
    assert stored is not None and CREDENTIAL not in stored
    assert BOX.open(stored) == CREDENTIAL


def test_an_empty_credential_removes_the_stored_one() -> None:
    previous = version(PROVIDER, BOX.seal(CREDENTIAL))
    assert sealed_credential(BOX, "", definition(PROVIDER), previous) is None


def test_a_new_version_keeps_the_credential_while_the_provider_url_is_the_same() -> None:
    sealed = BOX.seal(CREDENTIAL)
    assert sealed_credential(BOX, None, definition({**PROVIDER, "model": "other"}), version(PROVIDER, sealed)) == sealed


def test_a_credential_never_follows_its_provider_to_another_url() -> None:
    previous = version(PROVIDER, BOX.seal(CREDENTIAL))
    moved = definition({**PROVIDER, "url": "https://attacker.example.net/v1"})
    assert "credential again" in refused(None, moved, previous).extra["errors"][0]["message"]
    assert BOX.open(sealed_credential(BOX, "sk-new", moved, previous) or "") == "sk-new"


def test_built_in_summaries_hold_no_credential() -> None:
    builtin = definition({"kind": "builtin"})
    refused(CREDENTIAL, builtin, None)
    assert sealed_credential(BOX, None, builtin, version(PROVIDER, BOX.seal(CREDENTIAL))) is None


def test_a_template_without_a_previous_version_has_no_credential_unless_given() -> None:
    assert sealed_credential(BOX, None, definition(PROVIDER), None) is None
