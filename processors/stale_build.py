"""Refuses to import a compiled module whose source changed after it was compiled.

`make` compiles the hot path with mypyc into extension modules beside their sources (README, "The
hot path is compiled"), and Python imports an extension in preference to the source next to it. An
edit made after the build would silently not run; this check turns that into an error that says
what to do.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path


def refuse_stale_extensions(package_dir: str) -> None:
    folder = Path(package_dir)
    for suffix in EXTENSION_SUFFIXES:
        for extension in folder.glob(f"*{suffix}"):
            source = extension.with_name(extension.name.removesuffix(suffix) + ".py")
            if source.exists() and source.stat().st_mtime > extension.stat().st_mtime:
                raise ImportError(
                    f"{source} changed after it was compiled to {extension.name}; run `make compile` to rebuild "
                    "the hot path, or `make COMPILE=0 compile` to run it interpreted"
                )
