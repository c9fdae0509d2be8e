"""What the learned model sees of a lead: named binary features, hashed into a fixed space.

Every feature is an indicator (`country=us`, `employees=100-999`, `title~vp`), so a lead is the
set of its features and the model's score is the sum of their weights. Numbers become their
order of magnitude: one-hot buckets need no running scale (which an online scaler would move under
the model after each update) and let the model learn that 250 and 800 employees are alike while 5
and 12,000 are not.

Only what a lead *is* goes in: its contact, company and source fields and custom attributes. Never
its id, its name or its company's name (they identify a person or an account, they do not
describe one), and never an outcome: a feature is taken from the lead as it was before.

Names are hashed (CRC-32, stable across processes and builds, unlike `hash()`) into `BUCKETS`
buckets, which bounds a model's size whatever an organization's attributes hold; a collision merges
two features' weights, rare at the sizes CRM data has (a few thousand distinct features).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from zlib import crc32

from processors.free_mail import FREE_MAIL_DOMAINS, email_domain

BUCKETS = 1 << 18
_MASK = BUCKETS - 1
MAX_TEXT = 64
"""Longer values are cut: a feature names a category, not a document."""
MAX_ATTRIBUTES = 32
"""Attributes beyond the first (by name) are left out, so one lead cannot flood the model."""
MAX_TITLE_WORDS = 8
CATEGORIES = ("country", "industry", "lead_source")
MAGNITUDES = ("employees", "annual_revenue")
_WORD = re.compile(r"[a-z0-9]+")

Feature = tuple[int, str]
"""(bucket, name)."""


@lru_cache(maxsize=1 << 16)
def bucket(name: str) -> int:
    """Cached: the same few thousand names recur lead after lead."""
    return crc32(name.encode()) & _MASK


def _text(value: object) -> str:
    return " ".join(str(value).lower().split())[:MAX_TEXT]


def magnitude(value: float) -> str:
    """`0`, `1-9`, `10-99`, `100-999`, … by powers of ten; negative numbers are `negative`."""
    if value < 0:
        return "negative"
    if value < 1:
        return "0"
    exponent = min(int(math.log10(value)), 15)
    low = 10**exponent
    return f"{low}-{low * 10 - 1}"


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


@lru_cache(maxsize=1 << 14)
def _named(field: str, value: object) -> str:
    return f"{field}={_text(value)}"


@lru_cache(maxsize=4096)
def _title(title: str) -> tuple[str, ...]:
    """The whole title, and each of its words (`title~vp`), so `VP Sales` and `VP, Sales` share
    what they have in common. Cached: titles repeat."""
    words = dict.fromkeys(_WORD.findall(title.lower()[: MAX_TEXT * 2]))
    return (f"title={_text(title)}", *(f"title~{word}" for word in list(words)[:MAX_TITLE_WORDS]))


def feature_names(lead: Mapping[str, Any]) -> list[str]:
    """The lead's features, without duplicates, in a fixed order."""
    names: list[str] = []
    email = lead.get("email")
    if isinstance(email, str) and "@" in email:
        names.append("email=free_mail" if email_domain(email) in FREE_MAIL_DOMAINS else "email=business")
    title = lead.get("title")
    if isinstance(title, str) and title.strip():
        names += _title(title)
    for field in CATEGORIES:
        value = lead.get(field)
        if isinstance(value, str) and value.strip():
            names.append(_named(field, value))
    for field in MAGNITUDES:
        number = _number(lead.get(field))
        if number is not None:
            names.append(f"{field}={magnitude(number)}")
    attributes = lead.get("attributes")
    if isinstance(attributes, Mapping):
        for key, value in sorted(((str(k), v) for k, v in attributes.items()), key=_first)[:MAX_ATTRIBUTES]:
            field, number = f"attributes.{_text(key)}", _number(value)
            if number is not None:
                names.append(f"{field}={magnitude(number)}")
            elif isinstance(value, bool):
                names.append(f"{field}={'true' if value else 'false'}")
            elif isinstance(value, str) and value.strip():
                names.append(_named(field, value))
    return list(dict.fromkeys(names))


def _first(item: tuple[str, object]) -> str:
    return item[0]


def features(lead: Mapping[str, Any]) -> list[Feature]:
    """The lead's features with their buckets; two features in one bucket count once."""
    seen: set[int] = set()
    found: list[Feature] = []
    for name in feature_names(lead):
        index = bucket(name)
        if index not in seen:
            seen.add(index)
            found.append((index, name))
    return found


def buckets(lead: Mapping[str, Any]) -> list[int]:
    """Only the buckets: what a prediction needs."""
    return list({bucket(name): None for name in feature_names(lead)})
