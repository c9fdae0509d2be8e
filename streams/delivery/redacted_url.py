"""A webhook URL as history and read-only readers may see it: `scheme://host[:port]/…`.

Webhook URLs are secrets too: receivers often put a capability token in the path or the query, so
whoever reads the URL can post forged events to it. Delivery attempts (ClickHouse `webhook_attempts`),
the audit log, and people who may read subscriptions but not manage them get the endpoint without
its path, query, fragment or credentials. Read with the HTTP client's parser, like every URL here.
"""

from __future__ import annotations

from functools import lru_cache

from pyreqwest.http import Url

UNREADABLE = "[redacted]"


@lru_cache(maxsize=4096)
def redacted_url(url: str) -> str:
    """Cached per URL: the dispatcher redacts every attempt it records."""
    try:
        parsed = Url(url)
    except ValueError:
        return UNREADABLE
    if not parsed.host_str:
        return UNREADABLE
    hidden = parsed.path not in ("", "/") or parsed.query_string is not None or parsed.fragment is not None
    return f"{parsed.origin_ascii}/…" if hidden else f"{parsed.origin_ascii}/"
