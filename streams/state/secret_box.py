"""Encrypts secrets at rest (webhook signing secrets, integration credentials) with Fernet.

The key comes from DRIPPULSE_SECRET_KEY. Without it (local development), a key is generated once
into $DRIPPULSE_HOME/secret.key, readable by its owner only, so restarts can still decrypt.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from drippulse.settings import Settings


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise ValueError("secret cannot be decrypted with this DRIPPULSE_SECRET_KEY") from None


def secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key:
        return SecretBox(settings.secret_key.encode())
    path = settings.home.resolve() / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(Fernet.generate_key())
    return SecretBox(Path(path).read_bytes().strip())
