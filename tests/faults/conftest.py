"""The fault suite's fixtures (tests/faults/layout.py) and marks: every test here is a
``faults`` and a ``docker`` test; a failed one shows every process's and server's log."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.layout import FaultLayout, fault_layout

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["fault_layout"]

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.docker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    layout = getattr(item, "funcargs", {}).get("fault_layout")
    if report.failed and isinstance(layout, FaultLayout):
        report.sections.append(("fault layout logs", layout.logs()))


@pytest.fixture(scope="module")
def fresh_layout(fault_layout: FaultLayout) -> Iterator[FaultLayout]:
    """The fault layout reset (nothing running, no host drained) at a module's start and
    end: a module's notebooks never take the room the next module's need."""
    fault_layout.reset()
    yield fault_layout
    fault_layout.reset()
