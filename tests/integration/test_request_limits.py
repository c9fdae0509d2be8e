"""Request bodies are bounded and credentials looked for before a body is read, on every route: a
client that never finishes its upload still gets its answer, so the server did not wait for (or
keep) the whole body."""

from __future__ import annotations

import select
import socket
from typing import Any

import pytest

from api.request_limits import DEFAULT_LIMIT, PUBLIC_LIMIT
from drippulse.settings import Settings
from tests import control_plane
from tests.integration.helpers import login

pytestmark = pytest.mark.stack
CHUNK = b"x" * 65536
PASSWORD = "correct horse battery staple"


def _unfinished_upload(settings: Settings, path: str, headers: dict[str, str], size: int) -> str:
    """Sends `size` bytes of a chunked body and never its last chunk; the answer the server gives.
    Sending stops as soon as an answer is there (or the server stops reading)."""
    host, port = settings.api_url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", "Transfer-Encoding: chunked"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sent = 0
        while sent < size and not select.select([connection], [], [], 0)[0]:
            try:
                connection.sendall(f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(CHUNK)
        return connection.recv(65536).decode(errors="replace")


def _declared_upload(settings: Settings, path: str, headers: dict[str, str], declared: int) -> str:
    host, port = settings.api_url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    lines += [f"Content-Length: {declared}", *(f"{name}: {value}" for name, value in headers.items())]
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + CHUNK)
        return connection.recv(65536).decode(errors="replace")


@pytest.mark.parametrize("path", ["/api/v1/webhooks", "/api/v1/events", "/api/v1/workflows", "/api/v1/auth/logout"])
def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(
    path: str, settings: Settings, api_server: Any
) -> None:
    answer = _unfinished_upload(settings, path, {}, 64 * 1024 * 1024)
    assert answer.startswith("HTTP/1.1 401"), answer[:300]
    assert "application/problem+json" in answer and "/unauthorized" in answer


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({"Authorization": "Bearer dpk_not-a-key-of-anyone"}, "/unauthorized"),
        ({"Authorization": "Bearer dps_not-a-session"}, "/unauthorized"),
        ({"Cookie": "dp_session=dps_not-a-session"}, "/unauthorized"),
    ],
)
def test_an_upload_with_a_credential_nobody_holds_is_refused_before_its_body_is_read(
    headers: dict[str, str], kind: str, settings: Settings, api_server: Any
) -> None:
    answer = _unfinished_upload(settings, "/api/v1/events", headers, 64 * 1024 * 1024)
    assert answer.startswith("HTTP/1.1 401"), answer[:300]
    assert "application/problem+json" in answer and kind in answer


def test_a_session_cookie_without_its_csrf_token_is_refused_before_the_body_is_read(
    settings: Settings, org_factory: Any
) -> None:
    org = org_factory()
    email = f"csrf-{org['org_id']}@example.com"
    control_plane.add_member(settings, org["org_id"], email, ["editor"], PASSWORD)
    token = login(settings, email, PASSWORD).json()["token"]
    answer = _unfinished_upload(settings, "/api/v1/events", {"Cookie": f"dp_session={token}"}, 64 * 1024 * 1024)
    assert answer.startswith("HTTP/1.1 403"), answer[:300]
    assert "/csrf" in answer


def test_an_authenticated_upload_is_refused_at_the_routes_limit(settings: Settings, org_factory: Any) -> None:
    key = {"Authorization": f"Bearer {org_factory()['key']}"}
    answer = _unfinished_upload(settings, "/api/v1/webhooks", key, DEFAULT_LIMIT + 4 * len(CHUNK))
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
    assert "/payload-too-large" in answer
    declared = _declared_upload(settings, "/api/v1/webhooks", key, 1024 * 1024 * 1024)
    assert declared.startswith("HTTP/1.1 413"), declared[:300]


@pytest.mark.parametrize("path", ["/schema-registry/subjects/drip.events.inbound-value/versions", "/api/v1/auth/login"])
def test_a_public_route_refuses_an_upload_over_its_limit_unread(path: str, settings: Settings, api_server: Any) -> None:
    answer = _unfinished_upload(settings, path, {}, PUBLIC_LIMIT + 4 * len(CHUNK))
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
    declared = _declared_upload(settings, path, {}, 1024 * 1024 * 1024)
    assert declared.startswith("HTTP/1.1 413"), declared[:300]
