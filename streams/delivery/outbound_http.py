"""The one HTTP client for calls into customers' systems (webhook endpoints, CRMs), with the
send-time SSRF guard built in.

It is pyreqwest (Rust's reqwest and hyper): on this project's 2-core machine it costs 117-162 µs of
CPU per request where aiohttp costs 214-350 µs, and the webhook dispatcher is CPU-bound (README,
design notes: "pyreqwest sends webhooks and CRM requests").

One parse, one resolution, one connection. A URL is read once, by the client's own parser
(`ssrf_guard.destination`, cached per URL), and that reading is what is checked and sent. reqwest
would resolve hostnames itself, out of sight of the guard, so each host is resolved here, under the
ASCII name the client would look up (cached for `dns_ttl_s`: no lookup per request), every address
is checked, and the client is pinned to the checked address (`resolve(host, ip, port)`): the address
checked is the address connected to, with no window for DNS rebinding. One client per host: a host
whose address changes gets a new client, and the old one is closed once its requests are past their
timeout, and so is the least recently used one when there are `max_clients`. A host is pinned to one
address, IPv4 first (a missing IPv6 route is the commoner failure). IP literals are checked as the
client reads them. Redirects are never followed, and proxies from the environment (`HTTP_PROXY`,
`HTTPS_PROXY`, `ALL_PROXY`) are never used: a proxy resolves and connects by itself, past the pin.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError
from pyreqwest.response import Response

from streams.delivery.ssrf_guard import Destination, check_addresses, destination


class NoAnswer(ConnectionError):
    """The request got no HTTP answer: connection refused or reset, TLS failure, and the like."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    """At most the `read_limit` bytes asked for."""
    retry_after: str | None
    content_type: str


class OutboundHttp:
    def __init__(
        self,
        timeout_s: float,
        allow_loopback: bool,
        default_headers: dict[str, str],
        dns_ttl_s: float = 10.0,
        max_clients: int = 1024,
    ) -> None:
        self._timeout_s = timeout_s
        self._default_headers = default_headers
        self._allow_loopback = allow_loopback
        self._dns_ttl_s = dns_ttl_s
        self._max_clients = max_clients
        self._clients: OrderedDict[tuple[str, int], tuple[str, Client]] = OrderedDict()
        self._resolved: dict[tuple[str, int], tuple[float, asyncio.Task[str]]] = {}
        self._closing: dict[Client, asyncio.Task[None]] = {}

    async def request(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: dict[str, str],
        read_limit: int,
        timeout_s: float | None = None,
    ) -> Answer:
        """Raises UnsafeDestination, TimeoutError (no answer within the timeout) or NoAnswer.
        `timeout_s` shortens the client's timeout for this request: one client serves callers whose
        destinations each set their own (summary providers)."""
        target = destination(url)
        client = await self._client_for(target)
        try:
            builder = client.request(method, target.url).headers(headers).body_bytes(body)
            if timeout_s is not None:
                builder = builder.timeout(timedelta(seconds=timeout_s))
            request = builder.build_streamed()
        except (PyreqwestError, ValueError) as exc:
            # A header value the client cannot send (a credential with a line break, say): a failed
            # attempt, never an exception that would stop the worker. The client's message quotes
            # the value, which may be a secret, so only the kind of error is kept.
            raise NoAnswer(f"the request cannot be sent ({type(exc).__name__}): a header value is not valid") from None
        try:
            async with request as response:
                return Answer(
                    response.status,
                    await _read(response, read_limit),
                    response.get_header("retry-after"),
                    response.get_header("content-type") or "",
                )
        except TimeoutError:
            raise
        except PyreqwestError as exc:
            raise NoAnswer(_reason(exc)) from None

    async def close(self) -> None:
        """Closes every client now, including those waiting out their requests' timeout."""
        for delayed in self._closing.values():
            delayed.cancel()
        for client in [client for _, client in self._clients.values()] + list(self._closing):
            await client.close()
        self._clients.clear()
        self._closing.clear()

    async def _client_for(self, target: Destination) -> Client:
        key = (target.host, target.port)
        current = self._clients.get(key)
        if target.literal:
            if current is not None:
                self._clients.move_to_end(key)
                return current[1]
            check_addresses(target.host, [target.host], self._allow_loopback)
            address = target.host
        else:
            address = await self._address(target)
            if current is not None and current[0] == address:
                self._clients.move_to_end(key)
                return current[1]
        builder = (
            ClientBuilder()
            .timeout(timedelta(seconds=self._timeout_s))
            .follow_redirects(False)
            .no_proxy()
            .default_headers(self._default_headers)
        )
        if not target.literal:
            builder = builder.resolve(target.host, address, target.port)
        client = builder.build()
        self._clients[key] = (address, client)
        self._clients.move_to_end(key)
        if current is not None:
            self._close_later(current[1])
        while len(self._clients) > self._max_clients:
            evicted, (_, idle) = self._clients.popitem(last=False)
            self._resolved.pop(evicted, None)
            self._close_later(idle)
        return client

    async def _address(self, target: Destination) -> str:
        """The checked address to connect to; one lookup per host at a time, reused for the TTL."""
        key = (target.host, target.port)
        cached = self._resolved.get(key)
        if cached is None or time.monotonic() > cached[0]:
            lookup = asyncio.ensure_future(self._lookup(target))
            self._resolved[key] = (time.monotonic() + self._dns_ttl_s, lookup)
            cached = self._resolved[key]
        try:
            return await asyncio.shield(cached[1])
        except Exception:
            self._resolved.pop(key, None)
            raise

    async def _lookup(self, target: Destination) -> str:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise NoAnswer(f"{target.host} does not resolve: {exc}") from None
        addresses = sorted((str(info[4][0]) for info in infos), key=lambda address: ":" in address)
        check_addresses(target.host, addresses, self._allow_loopback)
        return addresses[0]

    def _close_later(self, client: Client) -> None:
        """After the timeout every request on the old client has ended one way or the other."""

        async def close() -> None:
            await asyncio.sleep(self._timeout_s + 1)
            self._closing.pop(client, None)
            await client.close()

        self._closing[client] = asyncio.ensure_future(close())


def _reason(exc: PyreqwestError) -> str:
    """`ConnectError: connection error (Connection refused (os error 111))`: the error and its root
    cause, not the whole chain (whose first link repeats the URL)."""
    causes = getattr(exc, "details", {}).get("causes") or []
    root = f" ({causes[-1]['message']})" if causes and causes[-1].get("message") else ""
    return f"{type(exc).__name__}: {exc.message}{root}"


async def _read(response: Response, limit: int) -> bytes:
    """Up to `limit` bytes of the body. An empty body (most webhook receivers answer with none) is
    known from its Content-Length without a read."""
    if limit <= 0 or response.get_header("content-length") == "0":
        return b""
    reader = response.body_reader
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await reader.read(limit - size)
        if chunk is None:
            break
        chunks.append(bytes(chunk))
        size += len(chunks[-1])
    return b"".join(chunks)
