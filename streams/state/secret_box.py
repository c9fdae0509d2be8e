"""Encrypts secrets at rest (webhook and inbound-source signing secrets, CRM credentials) with Fernet.

Keys come as a list, newest first (DRIPPULSE_SECRET_KEY, comma-separated): the newest seals, every
key opens (MultiFernet). Rotating is adding a new key in front, re-sealing what is stored
(`drippulse secrets reseal`), then dropping the old key. The local stack, which has no configured
key, keeps one in a file under its home, created once even by processes starting together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBox:
    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a secret box needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with any key of DRIPPULSE_SECRET_KEY") from None

    def reseal(self, sealed: str) -> str:
        """The same secret sealed with the newest key (what lets the oldest key be dropped)."""
        return self._fernet.rotate(sealed.encode()).decode()


def configured_keys(value: str) -> list[bytes]:
    """DRIPPULSE_SECRET_KEY: one Fernet key, or several separated by commas, newest first."""
    return [key.strip().encode() for key in value.split(",") if key.strip()]


def local_key(path: Path) -> bytes:
    """The local stack's key: read, or created once. The new key is written to a file of its own and
    linked into place, which fails if another process got there first; then that one's key is read.
    So two processes starting together never end up with two keys, nor read a half-written one."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_bytes().strip()
