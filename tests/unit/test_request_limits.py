"""Body routes look for their caller's credentials before reading the body (api/request_limits.py);
here with the control plane's store down: a listener that hangs up on every connection."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from api import problems
from api.control_plane.database import Database
from api.deps import EventsSend
from api.request_limits import RequestLimits


class HangingUpStore:
    """Accepts connections and closes them at once, counting them: PostgreSQL as a client sees it
    when the server is going down."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._listener.close()


@pytest.fixture
def store() -> Iterator[HangingUpStore]:
    down = HangingUpStore()
    yield down
    down.close()


def _app(database: Database) -> FastAPI:
    app = FastAPI()

    @app.post("/things")
    async def things(body: dict[str, int], _: EventsSend) -> dict[str, int]:
        return body

    app.add_middleware(RequestLimits, routes=app.routes)
    problems.install(app)
    app.state.database = database
    return app


async def _chunks(count: int) -> AsyncIterator[bytes]:
    yield b'{"a": 1'
    for _ in range(count):
        yield b" "
    yield b"}"


def test_with_the_store_down_a_body_route_tries_its_credentials_once_before_the_body(store: HangingUpStore) -> None:
    """Once before the body (refused there: the store did not answer), once more in the route's
    dependencies (whose 503 is the answer), and never again per chunk of the body."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{store.port}/drippulse?sslmode=disable&gssencmode=disable"

    async def post() -> httpx.Response:
        database = Database(url)
        try:
            transport = httpx.ASGITransport(app=_app(database))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.post(
                    "/things",
                    content=_chunks(50),
                    headers={"Authorization": "Bearer dpk_anything", "Content-Type": "application/json"},
                )
        finally:
            await database.close()

    response = asyncio.run(post())
    assert response.status_code == 503 and response.headers["Retry-After"], response.text
    assert store.connections == 2, f"{store.connections} connections for one request"
