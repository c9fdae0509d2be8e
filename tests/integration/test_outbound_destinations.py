"""The send-time SSRF guard against the HTTP client itself: whatever address the guard approves is
the address the client connects to, for URLs that Python's and WHATWG's parsers read differently.

No stack: a listener on every loopback address of one port (`[::]`, dual stack) records the local
address each connection reached, and DNS is a table of loopback addresses (the event loop's
`getaddrinfo`, which is where the guard resolves), so a name the client resolved by itself, or an
address the guard never checked, shows up as a connection to an unexpected address, or none.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.delivery import ssrf_guard
from streams.delivery.outbound_http import NoAnswer, OutboundHttp
from streams.delivery.ssrf_guard import UnsafeDestination


class Listener:
    """Accepts on `[::]:port` and answers 200 to anything, recording the local address reached."""

    def __init__(self, host: str = "::") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            self._socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self._socket.bind((host, 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        self.reached: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                with self._lock:
                    self.reached.append(_plain(connection.getsockname()[0]))
                connection.settimeout(2)
                try:
                    connection.recv(65536)
                    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                except OSError:
                    pass

    def take(self) -> list[str]:
        with self._lock:
            reached, self.reached = self.reached, []
        return reached

    def close(self) -> None:
        self._socket.close()


def _plain(address: str) -> str:
    """An address as text, an IPv4-mapped IPv6 address as the IPv4 address it is."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = parsed.ipv4_mapped if isinstance(parsed, ipaddress.IPv6Address) else None
    return str(mapped or parsed)


def _table_address(name: str) -> str:
    """A loopback address of the name's own (never 127.0.0.1, which literals use)."""
    digest = hashlib.sha256(name.encode()).digest()
    return f"127.{1 + digest[0] % 200}.{digest[1]}.{1 + digest[2] % 250}"


class TableDns:
    """Stands in for the event loop's resolver: every name resolves to its table address."""

    def __init__(self, answer: Any = _table_address) -> None:
        self.asked: list[str] = []
        self._answer = answer

    async def getaddrinfo(self, host: Any, port: Any, *_: Any, **__: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        self.asked.append(name)
        address = self._answer(name)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]


def _sender(url: str, allow_loopback: bool) -> Callable[[], Awaitable[str]]:
    """One request through a fresh client: answered, refused by the guard, or no answer."""

    async def send() -> str:
        http = OutboundHttp(3, allow_loopback=allow_loopback, default_headers={})
        try:
            await http.request("POST", url, b"{}", {}, 0)
            return "answered"
        except UnsafeDestination:
            return "refused"
        except (NoAnswer, TimeoutError):
            return "no answer"
        finally:
            await http.close()

    return send


def _run(dns: TableDns, scenario: Callable[[], Awaitable[str]]) -> str:
    loop = asyncio.new_event_loop()
    loop.getaddrinfo = dns.getaddrinfo  # type: ignore[method-assign]
    try:
        return loop.run_until_complete(scenario())
    finally:
        loop.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


NAMES = [
    "example.com",
    "attacker.tld",
    "localhost",
    "EXAMPLE.com.",
    "straße.test",
    "xn--strae-oqa.test",
    "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com",  # EXAMPLE in fullwidth letters
    "ex%41mple.com",
    "例え.テスト",
    "a.b.c.d.test",
]
LITERALS = [
    "127.0.0.1",
    "127.1",
    "0x7f.0.0.1",
    "2130706433",
    "0177.0.0.1",
    "169.254.169.254",
    "10.0.0.1",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[fe80::1]",
]
SEPARATORS = ["\\", "\\@", "/@", "@", "#@", "?@", "%40", ":@", "%5C@", "\t@", ""]


def _urls(port: int) -> st.SearchStrategy[str]:
    """Two hosts, one of them where a confused reader takes it: after a backslash, `@`, `#`, `?`,
    in credentials; and plain URLs whose path, query or fragment names another host."""
    hosts = st.sampled_from(NAMES + LITERALS)
    scheme = st.sampled_from(["http://", "HTTP://", "http:/", "http:///", "http:\\\\", " http://"])
    userinfo = st.sampled_from(["", "", "", "user@", "user:pw@", "a%40b@", "@"])
    separator = st.sampled_from(SEPARATORS)
    path = st.sampled_from(["/x", "", "\\x", "/%2e%2e/y", "/ü?q=1#f"])
    confused = st.builds(
        lambda s, u, first, sep, second, p: f"{s}{u}{first}:{port}{sep}{second}:{port}{p}",
        scheme,
        userinfo,
        hosts,
        separator,
        hosts,
        path,
    )
    tail = st.sampled_from(["/@", "?@", "#@", "/a/../@", "/%40", "?u=http://"])
    plain = st.builds(lambda s, first, t, second: f"{s}{first}:{port}{t}{second}", scheme, hosts, tail, hosts)
    return st.one_of(confused, plain)


@pytest.fixture
def approvals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the guard's policy approved, in order."""
    approved: list[str] = []
    policy = ssrf_guard.refusal

    def recording(address: Any, allow_loopback: bool) -> str | None:
        reason = policy(address, allow_loopback)
        if reason is None:
            approved.append(str(address))
        return reason

    monkeypatch.setattr(ssrf_guard, "refusal", recording)
    return approved


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_the_client_connects_exactly_to_the_address_the_guard_approved(
    data: st.DataObject, listener: Listener, approvals: list[str]
) -> None:
    url = data.draw(_urls(listener.port))
    approvals.clear()
    listener.take()
    dns = TableDns()

    outcome = _run(dns, _sender(url, allow_loopback=True))
    event(outcome)
    reached = listener.take()
    if outcome == "refused":
        assert reached == [], f"{url!r}: refused, yet something was connected to"
        return
    assert approvals, f"{url!r}: sent without an approved address"
    assert outcome == "answered" and len(reached) == 1, f"{url!r}: approved {approvals}, but {outcome}"
    assert reached[0] == _plain(approvals[-1]), f"{url!r}: approved {approvals}, reached {reached}"
    assert all(name.isascii() for name in dns.asked), f"{url!r}: resolved {dns.asked}, not the client's ASCII form"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}\\@public.example/x",
        "http://127.0.0.1:{port}\\@public.example:{port}/",
        "http://127.0.0.1:{port}\\\\public.example/",
        "http:\\\\127.0.0.1:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://user@127.0.0.1:{port}/",
    ],
)
def test_a_local_server_the_guard_refuses_receives_nothing(url: str) -> None:
    """Loopback is refused here (as in production); every name resolves to a public address. The
    local server must not see a single connection, whichever way the URL is read."""
    server = Listener("127.0.0.1")
    target = url.format(port=server.port)

    try:
        outcome = _run(TableDns(lambda _: "93.184.216.34"), _sender(target, allow_loopback=False))
    finally:
        server.close()
    assert server.take() == [], f"{target!r} reached the local server ({outcome})"
    assert outcome == "refused"


def test_proxy_environment_variables_do_not_take_requests_past_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy resolves and connects by itself, after the guard: HTTP_PROXY and friends from the
    environment must not be used. The request goes to the checked address, the proxy sees nothing."""
    proxy, endpoint = Listener("127.0.0.1"), Listener("::")
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    try:
        outcome = _run(TableDns(), _sender(f"http://endpoint.test:{endpoint.port}/", allow_loopback=True))
    finally:
        proxy.close()
        endpoint.close()
    assert proxy.take() == [], "the proxy from the environment was used"
    assert outcome == "answered" and endpoint.take() == [_table_address("endpoint.test")]
