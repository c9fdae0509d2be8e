"""API key format and hashing.

Keys are 256-bit random secrets, so a fast hash (SHA-256) is the right tool: there is nothing to
brute-force, and every request pays for the lookup. Only the hash is stored; the key is shown once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

KEY_PREFIX = "dpk_"


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    secret: str

    @property
    def display_prefix(self) -> str:
        return self.secret[: len(KEY_PREFIX) + 8]


def generate_api_key() -> NewApiKey:
    key_id = "key_" + secrets.token_hex(8)
    return NewApiKey(key_id=key_id, secret=KEY_PREFIX + secrets.token_urlsafe(32))


def hash_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
