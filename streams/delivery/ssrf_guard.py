"""Refuses destinations that would let a customer make DripPulse call into private networks.

Checked when a webhook subscription or a CRM connection is saved, and again at send time: DNS can
change between the two, so the second check is the one that protects. At send time
`streams.delivery.outbound_http` resolves, checks and pins the address it connects to, so there is
no window for DNS rebinding between check and connect. Redirects are not followed. Only public
unicast addresses pass; loopback can be allowed explicitly for local development and tests, nothing
else can.

One parse: a URL is read once, by the HTTP client's own parser (pyreqwest's `Url`, the WHATWG URL
standard, IDNA by UTS 46), and that reading is what is checked, resolved and sent. Python's
`urlsplit` reads some URLs differently (`http://10.0.0.1\\@example.com/` is `example.com` to it and
`10.0.0.1` to the client; `straße.de` is `strasse.de` to Python's IDNA 2003 and `xn--strae-oqa.de`
to UTS 46), and checking one reading while connecting to the other is how a guard is bypassed. URLs
that readers disagree on are refused outright rather than silently rewritten: a backslash,
whitespace or a control character anywhere, and credentials in the URL (`user:pw@`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from functools import lru_cache

from pyreqwest.http import Url

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_AMBIGUOUS = re.compile(r"[\\\x00-\x20\x7f]")
"""A backslash (a `/` to WHATWG, a plain character to RFC 3986), C0 controls and space (WHATWG drops
tabs and newlines anywhere and trims the rest; other readers keep them)."""
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeDestination(ValueError):
    """The URL cannot be read one way only, or its host is, or resolves to, an address DripPulse will
    not call."""


@dataclass(frozen=True, slots=True)
class Destination:
    url: Url
    """The client's reading of the URL: what is sent."""
    host: str
    """The name the client looks up (ASCII, as UTS 46 maps it), or the IP literal (no brackets)."""
    port: int
    literal: bool


@lru_cache(maxsize=4096)
def destination(url: str) -> Destination:
    """The URL as the HTTP client reads it, or UnsafeDestination. Cached per URL: a webhook's URL is
    read once, not once per delivery."""
    if _AMBIGUOUS.search(url):
        raise UnsafeDestination("the URL has a backslash, a space or a control character, which URL readers differ on")
    try:
        parsed = Url(url)
    except ValueError as exc:
        raise UnsafeDestination(f"the URL cannot be read: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host_str:
        raise UnsafeDestination("the URL must be http(s) with a host")
    if parsed.username or parsed.password is not None:
        raise UnsafeDestination("the URL carries credentials (user:password@), which URL readers differ on")
    port = parsed.port_or_known_default
    if not port:
        raise UnsafeDestination("the URL's port must not be 0")
    domain = parsed.domain
    host = domain if domain is not None else parsed.host_str.strip("[]")
    return Destination(parsed, host, port, literal=domain is None)


def refusal(address: Address, allow_loopback: bool) -> str | None:
    """Why DripPulse will not connect to this address; None when it may. The one policy: every check
    ends here. An IPv4 address embedded in IPv6 (mapped, or NAT64's well-known prefix) is judged as
    the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(embedded, allow_loopback)
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT address"
    if address.is_private or address.is_reserved or address.is_unspecified or not address.is_global:
        return "a private or reserved address"
    return None


def check_addresses(host: str, addresses: list[str], allow_loopback: bool) -> None:
    """UnsafeDestination unless every address of `host` may be connected to."""
    for text in addresses:
        reason = refusal(ipaddress.ip_address(text.split("%", 1)[0]), allow_loopback)
        if reason is not None:
            raise UnsafeDestination(f"{host} is {reason}" if text == host else f"{host} resolves to {text}, {reason}")


def check_destination(url: str, allow_loopback: bool = False) -> list[str]:
    """The checked addresses of a URL's host (resolved now, blocking), or UnsafeDestination."""
    target = destination(url)
    if target.literal:
        check_addresses(target.host, [target.host], allow_loopback)
        return [target.host]
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeDestination(f"{target.host} does not resolve: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    check_addresses(target.host, addresses, allow_loopback)
    return addresses
