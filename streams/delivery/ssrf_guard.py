"""Refuses webhook destinations that would let a customer make DripPulse call into private networks.

Checked when a subscription is saved and again at send time: DNS can change between the two, so
the second check is the one that protects. At send time `streams.outbound_http` resolves, checks and
pins the address it connects to, so there is no window for DNS rebinding between check and connect.
Redirects are not followed. Only public unicast addresses pass; loopback can be allowed explicitly
for local development and tests, nothing else can.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeDestination(ValueError):
    """The URL's host is, or resolves to, an address DripPulse will not call."""


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> str | None:
    if address in _METADATA:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"):
        return "a carrier-grade NAT address"
    if address.is_private or address.is_reserved or address.is_unspecified or not address.is_global:
        return "a private or reserved address"
    return None


def check_destination(url: str, allow_loopback: bool = False) -> list[str]:
    """The resolved addresses of a URL's host, or UnsafeDestination saying why it is refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeDestination("the URL must be http(s) with a host")
    try:
        infos = socket.getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeDestination(f"{parts.hostname} does not resolve: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    check_addresses(parts.hostname, addresses, allow_loopback)
    return addresses


def check_addresses(host: str, addresses: list[str], allow_loopback: bool) -> None:
    for text in addresses:
        reason = _refusal(ipaddress.ip_address(text.split("%", 1)[0]), allow_loopback)
        if reason is not None:
            raise UnsafeDestination(f"{host} resolves to {text}, {reason}")


def refuse_unsafe_literal(address: str, allow_loopback: bool) -> None:
    """The send-time check for an IP-literal host, which is connected to without a lookup."""
    reason = _refusal(ipaddress.ip_address(address), allow_loopback)
    if reason is not None:
        raise UnsafeDestination(f"{address} is {reason}")
