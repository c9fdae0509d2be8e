"""Secrets at rest: key rotation, the local stack's key made once, and no silent per-host key."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from drippulse.settings import MissingSecretKey, Settings, secret_box
from streams.state.secret_box import SecretBox, configured_keys, local_key


def test_a_rotated_box_opens_old_secrets_and_reseals_them_with_the_new_key() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    sealed_before = SecretBox([old]).seal("whsec_abc")
    rotated = SecretBox(configured_keys(f"{new.decode()}, {old.decode()}"))
    assert rotated.open(sealed_before) == "whsec_abc"
    resealed = rotated.reseal(sealed_before)
    assert SecretBox([new]).open(resealed) == "whsec_abc", "the old key can now be dropped"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox([new]).open(sealed_before)


def _key_of(path: str) -> bytes:
    return local_key(Path(path))


def test_processes_starting_together_share_one_local_key(tmp_path: Path) -> None:
    path = tmp_path / "home" / "secret.key"
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        keys = pool.map(_key_of, [str(path)] * 12)
    assert len(set(keys)) == 1 and keys[0] == path.read_bytes().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"], "no draft left behind"


def test_a_shared_database_without_a_configured_key_is_refused(tmp_path: Path) -> None:
    shared = Settings(DATABASE_URL="postgresql://db.internal/drippulse", DRIPPULSE_HOME=tmp_path)
    with pytest.raises(MissingSecretKey, match="DRIPPULSE_SECRET_KEY is required"):
        secret_box(shared)
    key = Fernet.generate_key().decode()
    configured = Settings(DATABASE_URL="postgresql://db.internal/drippulse", DRIPPULSE_SECRET_KEY=key)
    assert configured.secret_key and secret_box(configured).open(SecretBox([key.encode()]).seal("x")) == "x"
    assert not (tmp_path / "secret.key").exists()
