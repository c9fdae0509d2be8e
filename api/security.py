"""Credentials: API keys, session and invitation tokens, passwords.

Tokens are 256-bit random secrets, so a fast hash (SHA-256) is the right tool to store them: there is
nothing to brute-force, and every request pays for the lookup. Only the hash is stored; the token is
shown once. Passwords are chosen by people, so they get a slow, memory-hard hash: Argon2id through
argon2-cffi, with its recommended parameters, rehashed on login when those parameters change.

Argon2 costs tens of milliseconds of CPU and 64 MiB per call, and anyone may ask for one (a login
with any email). Run on the event loop, a stream of logins would stall every request of the process,
so the work goes to a small pool of its own threads (argon2-cffi releases the GIL): logins queue
behind each other there, never in front of other requests, and at most `PASSWORD_WORKERS` hashes
hold their memory at once. The queue is bounded: a login or acceptance first takes a place among
`PASSWORD_CHECKS` (`password_work`), and finding none it is answered 503 `busy` at once, before
anything is counted or read, instead of waiting behind a flood. Nor does it hold a database
connection while it waits (`api.control_plane.people`).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.problems import RETRY_AFTER, Problem

API_KEY_PREFIX = "dpk_"
SESSION_PREFIX = "dps_"
INVITATION_PREFIX = "dpi_"
_passwords = PasswordHasher()
_UNUSED_HASH = _passwords.hash("a password no account has")
"""Verified against when an email is unknown, so a login takes as long whether or not it exists."""
PASSWORD_WORKERS = 2
PASSWORD_CHECKS = 5 * PASSWORD_WORKERS
"""Password checks in flight at once: one per worker, and four times as many waiting."""
_password_work = ThreadPoolExecutor(PASSWORD_WORKERS, thread_name_prefix="argon2")
_places = threading.BoundedSemaphore(PASSWORD_CHECKS)
T = TypeVar("T")


@contextmanager
def password_work() -> Iterator[None]:
    """A place among the password checks in flight for the block, or 503 `busy` at once. Taken
    around everything a password check belongs to (counting the attempt included), so a refused
    request costs no attempt and no work."""
    if not _places.acquire(blocking=False):
        raise Problem(
            503,
            "busy",
            "Busy",
            "too many password checks are waiting; retry after Retry-After seconds",
            headers={"Retry-After": RETRY_AFTER},
        )
    try:
        yield
    finally:
        _places.release()


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


async def _beside_the_loop(work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_password_work, work)


async def hash_password(password: str) -> str:
    return await _beside_the_loop(lambda: _passwords.hash(password))


def _matches(password_hash: str | None, password: str) -> bool:
    try:
        return _passwords.verify(password_hash or _UNUSED_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def password_matches(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    return await _beside_the_loop(lambda: _matches(password_hash, password))


def needs_rehash(password_hash: str) -> bool:
    return _passwords.check_needs_rehash(password_hash)
