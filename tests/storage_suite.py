"""The per-backend storage suite's machinery: one factory per backend, and a record of
which protocol methods the suite called.

Every test that takes the `store` fixture (tests/test_storage*.py) runs once per
entry of `BACKENDS`: a second backend runs the whole suite by adding its factory
here. The store the tests get is a `Recording` of the backend, which notes each
protocol method asked for; tests/test_storage_coverage.py runs after the suite and
fails if a method of `storage.protocol` was never called, so a method added to a
protocol comes with a test that every backend must pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage.protocol import CONCERNS, Storage
from storage.sqlite import SQLiteStorage

# A backend: how to make an unopened store whose data lives in a test's own folder.
BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "sqlite": lambda folder: SQLiteStorage(folder / "suite.db"),
}


def protocol_methods() -> set[str]:
    """Every method a backend must provide: each concern's, and opening and closing."""
    names = {"open", "close"}
    for concern in CONCERNS:
        names |= {
            name
            for name, member in vars(concern).items()
            if not name.startswith("_") and inspect.isfunction(member)
        }
    return names


METHODS = protocol_methods()

# Per backend, the protocol methods the suite has called so far in this session.
CALLED: dict[str, set[str]] = {name: set() for name in BACKENDS}
# How many suite tests got a store, per backend.
SERVED: dict[str, int] = dict.fromkeys(BACKENDS, 0)


class Recording:
    """A backend as the suite sees it: the same methods, each noted when asked for."""

    def __init__(self, backend: Storage, name: str) -> None:
        self._backend = backend
        self._called = CALLED[name]

    def __getattr__(self, name: str) -> Any:
        if name in METHODS:
            self._called.add(name)
        return getattr(self._backend, name)


def suite_files(root: Path) -> list[Path]:
    """The files of the per-backend suite (the coverage check's own file apart)."""
    return sorted(p for p in root.glob("test_storage*.py") if p.name != COVERAGE_FILE)


COVERAGE_FILE = "test_storage_coverage.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The coverage check goes last, after every suite test it counts."""
    last = [item for item in items if item.path.name == COVERAGE_FILE]
    if last:
        items[:] = [item for item in items if item.path.name != COVERAGE_FILE] + last
