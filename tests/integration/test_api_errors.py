"""An unexpected error answers a 500 problem, is logged once, and leaves the connection usable: the
client's next request on the same keep-alive connection is served."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI

from api import problems
from drippulse.devstack import free_port
from tests.stack import wait_until


@pytest.fixture
def failing_server() -> Iterator[int]:
    """A bare app with the API's problem handling and one route that fails: no stack needed."""
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("something nobody handled")

    @app.get("/fine")
    async def fine() -> dict[str, str]:
        return {"status": "ok"}

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the server to start")
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _exchange(connection: socket.socket, path: str) -> str:
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        chunk = connection.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer.decode()


def test_a_500_keeps_the_connection_and_is_logged_once(failing_server: int, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), socket.create_connection(("127.0.0.1", failing_server), timeout=10) as conn:
        failed = _exchange(conn, "/boom")
        assert failed.startswith("HTTP/1.1 500") and "application/problem+json" in failed
        assert "connection: close" not in failed.lower()
        assert _exchange(conn, "/fine").startswith("HTTP/1.1 200"), "the same connection serves the next request"
    logged = [r for r in caplog.records if "something nobody handled" in (r.exc_text or str(r.exc_info))]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]
