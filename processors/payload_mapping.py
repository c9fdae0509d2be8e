"""How an inbound webhook's payload becomes a DripPulse event: copy values from dotted paths in the
payload to dotted paths in the event, as the source's mapping says. Missing source paths are skipped
(the event's own validation then says what is required), so a sender adding fields never breaks it."""

from __future__ import annotations

from typing import Any

_MISSING = object()


def value_at(document: Any, path: str) -> Any:
    """The value at a dotted path (`data.contact.email`; list items by index, `items.0.id`), or _MISSING."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isascii() and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def nested_target(mapping: dict[str, str]) -> tuple[str, str] | None:
    """Two targets of which one holds the other (`lead` and `lead.email`), if any: the first would be
    both a value and an object, so such a mapping is refused when it is configured."""
    for target in mapping:
        parts = target.split(".")
        for end in range(1, len(parts)):
            parent = ".".join(parts[:end])
            if parent in mapping:
                return parent, target
    return None


def map_payload(payload: Any, mapping: dict[str, str]) -> dict[str, Any]:
    """The event fields a mapping yields from a payload; nested targets (`lead.email`) become objects."""
    event: dict[str, Any] = {}
    for target, source in sorted(mapping.items()):
        value = value_at(payload, source)
        if value is _MISSING or value is None:
            continue
        node = event
        *parents, leaf = target.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return event
