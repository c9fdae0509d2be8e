"""One benchmark section on its own embedded stack (`python -m bench.<section>`), for measuring it
without the rest of `make bench`."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def alone(name: str, measure: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """`measure(settings)` against a fresh embedded stack with its own home and free ports, stopped
    afterwards."""
    from drippulse.devstack import EmbeddedStack, isolated_env
    from drippulse.settings import Settings

    home = Path(tempfile.mkdtemp(prefix=f"drippulse-bench-{name}-"))
    os.environ.update(isolated_env(home))
    os.environ["DRIPPULSE_TOPIC_PREFIX"] = f"bench-{uuid.uuid4().hex[:6]}."
    settings = Settings()
    stack = EmbeddedStack(settings, attached=True)
    stack.start()
    try:
        return measure(settings)
    finally:
        stack.stop()
