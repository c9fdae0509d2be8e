"""Credentials: API keys, session and invitation tokens, passwords.

Tokens are 256-bit random secrets, so a fast hash (SHA-256) is the right tool to store them: there is
nothing to brute-force, and every request pays for the lookup. Only the hash is stored; the token is
shown once. Passwords are chosen by people, so they get a slow, memory-hard hash: Argon2id through
argon2-cffi, with its recommended parameters, rehashed on login when those parameters change.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "dpk_"
SESSION_PREFIX = "dps_"
INVITATION_PREFIX = "dpi_"
_passwords = PasswordHasher()
_UNUSED_HASH = _passwords.hash("a password no account has")
"""Verified against when an email is unknown, so a login takes as long whether or not it exists."""


@dataclass(frozen=True)
class NewToken:
    secret: str
    hash: str

    @property
    def display_prefix(self) -> str:
        """Enough of the key to recognise it in a list, not enough to use it."""
        return self.secret[:12]


def new_token(prefix: str) -> NewToken:
    secret = prefix + secrets.token_urlsafe(32)
    return NewToken(secret, hash_token(secret))


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    try:
        return _passwords.verify(password_hash or _UNUSED_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _passwords.check_needs_rehash(password_hash)
