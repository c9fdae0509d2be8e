"""The fault suite's stack: its own, started once for the suite's module and stopped after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import FaultStack


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(tmp_path_factory.mktemp("faults"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
