import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

from processors.stale_build import refuse_stale_extensions


def _build(folder: Path, source_age_s: int, extension_age_s: int) -> None:
    now = 1_800_000_000
    source, extension = folder / "routing.py", folder / f"routing{EXTENSION_SUFFIXES[0]}"
    source.write_text("")
    extension.write_bytes(b"")
    os.utime(source, (now - source_age_s, now - source_age_s))
    os.utime(extension, (now - extension_age_s, now - extension_age_s))


def test_a_source_edited_after_its_build_is_refused(tmp_path: Path) -> None:
    _build(tmp_path, source_age_s=10, extension_age_s=60)
    with pytest.raises(ImportError, match=r"routing\.py changed after it was compiled.*make compile"):
        refuse_stale_extensions(str(tmp_path))


def test_a_build_newer_than_its_source_is_accepted(tmp_path: Path) -> None:
    _build(tmp_path, source_age_s=60, extension_age_s=10)
    refuse_stale_extensions(str(tmp_path))


HOT_PATH = ("streams.qualifier", "processors.compiler", "processors.routing", "streams.runtime.records")
REPOSITORY = Path(__file__).resolve().parents[2]


def _built_as() -> str | None:
    """What `make` was asked for (its stamp in the virtualenv): "1", "0", "auto", or None outside make."""
    stamps = sorted(Path(sys.prefix).glob(".compiled-*-stamp"))
    return stamps[-1].name.removeprefix(".compiled-").removesuffix("-stamp") if stamps else None


def test_the_hot_path_imports_outside_the_repository_as_built(tmp_path: Path) -> None:
    """Workers run as the `drippulse` console script, whose path has no repository root: a
    compiled build must not depend on it (mypyc's default puts its shared runtime there). Each
    module must load from its extension when one was built, and `COMPILE=1` must have built them."""
    script = "import importlib, sys; print(*(importlib.import_module(m).__file__ for m in sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", script, *HOT_PATH],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 0, result.stderr
    loaded = dict(zip(HOT_PATH, result.stdout.split(), strict=True))
    for module, path in loaded.items():
        source = REPOSITORY / (module.replace(".", "/") + ".py")
        built = [source.with_name(source.stem + suffix) for suffix in EXTENSION_SUFFIXES]
        if any(extension.exists() for extension in built):
            assert path.endswith(tuple(EXTENSION_SUFFIXES)), f"{module} loaded from {path}, not its extension"
        else:
            assert _built_as() != "1", f"COMPILE=1, yet {module} has no compiled extension"
            assert path == str(source), f"{module} loaded from {path}"
