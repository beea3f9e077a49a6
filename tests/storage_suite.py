"""The tests' backends: one factory per backend, the run's choice of backend, and a record
of which protocol methods the per-backend suite called.

Every test that takes the `store` fixture (tests/test_storage*.py) runs once per
backend of the suite (`SUITE_BACKENDS`). The store the tests get is a `Recording` of
the backend, which notes each protocol method asked for; tests/test_storage_coverage.py
runs after the suite and fails if a method of `storage.protocol` was never called, so
a method added to a protocol comes with a test that every backend must pass.

The rest of the tests (the Harness, the `storage` fixture, tests/town.py) run on one
backend for the whole run: `KT_TEST_BACKEND=sqlite|postgres` (sqlite when unset), so
that the whole suite runs on PostgreSQL too. A test of something SQLite alone has
(its file, backups, its faults, merged writes) is marked `sqlite_only` and skipped on
the PostgreSQL run.

PostgreSQL is at `KT_TEST_DATABASE_URL` (postgresql://postgres@127.0.0.1:5432/test by
default); each store gets a schema of its own, dropped after its test. Where it can't
be reached its tests are skipped, saying so, unless `KT_REQUIRE_POSTGRES=1` (CI),
where they fail.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from storage.postgres import PostgresStorage
from storage.protocol import CONCERNS, Storage
from storage.sqlite import SQLiteStorage

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE_URL = os.environ.get("KT_TEST_DATABASE_URL", DEFAULT_URL)
REQUIRE_POSTGRES = os.environ.get("KT_REQUIRE_POSTGRES") == "1"

# The backend of this run, for everything but the per-backend suite.
RUN_BACKEND = os.environ.get("KT_TEST_BACKEND", "sqlite")
if RUN_BACKEND not in ("sqlite", "postgres"):
    raise SystemExit(f"KT_TEST_BACKEND={RUN_BACKEND}: it is sqlite or postgres")

# One salt per run: a schema's name comes from its test's folder, which pytest may give
# again in a later run (or in a run beside this one).
_SALT = secrets.token_hex(4)
# Schemas made and not yet dropped (`drop_schemas`).
MADE: list[str] = []


def schema_for(path: Path) -> str:
    """The PostgreSQL schema that stands for a SQLite file: the same path (a store opened
    again, or two instances on one database) gives the same schema."""
    digest = hashlib.sha256(f"{_SALT}:{path.resolve()}".encode()).hexdigest()[:20]
    name = f"kt_test_{digest}"
    if name not in MADE:
        MADE.append(name)
    return name


def postgres_store(path: Path) -> PostgresStorage:
    return PostgresStorage(DATABASE_URL, pool_size=4, schema=schema_for(path))


# A backend: how to make an unopened store whose data is at a path in the test's folder
# (SQLite's file; for PostgreSQL, a schema named after it).
BACKENDS: dict[str, Callable[[Path], Storage]] = {
    "sqlite": SQLiteStorage,
    "postgres": postgres_store,
}

# The backends the per-backend suite runs on: the run's own when one was chosen (make
# test runs one process per backend), else every one.
SUITE_BACKENDS = [RUN_BACKEND] if "KT_TEST_BACKEND" in os.environ else sorted(BACKENDS)


def new_storage(path: Path) -> Storage:
    """An unopened store of this run's backend, its data at `path` (see `BACKENDS`)."""
    asking_for_the_run_store()
    return BACKENDS[RUN_BACKEND](path)


# Tests marked `same_on_every_backend` never use a store of the run's backend (the
# engine, guide checks, the command line's own processes, which keep to SQLite), so
# running them in both of `make test`'s runs proves nothing twice. With
# KT_TEST_SHARE=1 (make test) the two runs take turns: the first such test collected
# runs on the SQLite run, the next on the PostgreSQL run, and so on, so each does half.
SHARE = os.environ.get("KT_TEST_SHARE") == "1"
SAME_ON_EVERY_BACKEND = "same_on_every_backend"
# The marked test under way, if any: asking for the run's store then fails it, so the
# mark can't hide a test that PostgreSQL's run would need.
MARKED_TEST_UNDER_WAY: list[str] = []


def asking_for_the_run_store() -> None:
    if MARKED_TEST_UNDER_WAY:
        pytest.fail(
            f"{MARKED_TEST_UNDER_WAY[0]} is marked {SAME_ON_EVERY_BACKEND}, but it asks for "
            "a store of the run's backend: take the mark off",
            pytrace=False,
        )


def where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


_unreachable: list[str] = []  # why, once found out (empty: not asked yet)


async def postgres_unreachable() -> str | None:
    """Why PostgreSQL can't be used for tests, or None: asked once per run."""
    if not _unreachable:
        try:
            connection = await asyncpg.connect(DATABASE_URL, timeout=5)
            await connection.close()
            _unreachable.append("")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            _unreachable.append(
                f"PostgreSQL not reachable at {where(DATABASE_URL)} ({error}) "
                "(set KT_TEST_DATABASE_URL)"
            )
    return _unreachable[0] or None


async def need(backend: str) -> None:
    """Skip the test (or fail it, where PostgreSQL is required) if its backend can't be had."""
    if backend != "postgres":
        return
    reason = await postgres_unreachable()
    if reason is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(f"{reason}; KT_REQUIRE_POSTGRES=1 says it must be", pytrace=False)
    pytest.skip(reason)


async def drop_schemas() -> None:
    """Drop every schema the tests made so far (their stores are closed by now)."""
    if not MADE:
        return
    names, MADE[:] = list(MADE), []
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        for name in names:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await connection.close()


def protocol_methods() -> set[str]:
    """Every method a backend must provide: each concern's, and `Storage`'s own (opening,
    upgrading, the schema's state, closing)."""
    names: set[str] = set()
    for concern in (*CONCERNS, Storage):
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

# Whole files that test something SQLite alone has, and why: marked `sqlite_only` here,
# so the PostgreSQL run skips them (a test elsewhere says so with the marker itself).
SQLITE_ONLY_FILES = {
    "test_backup.py": "backup and restore copy SQLite's file",
    "test_faults_sqlite.py": "faults made with SQLite's own switches",
    "test_migrations.py": "SQLite's migration files (PostgreSQL's: test_storage_schema.py)",
    "test_storage_merged.py": "SQLite's merged writes",
}


# Tests in files this machinery does not own that read or change SQLite's file by hand
# (sqlite3.connect on the store's path): SQLite only until they go through the store.
SQLITE_ONLY_TESTS = {
    "test_dispatcher.py::test_a_run_on_a_guide_that_later_checks_refuse_still_carries_on": (
        "rewrites a stored guide in SQLite's file"
    ),
    "test_exports.py::test_eighty_thousand_answers_export_in_flat_memory": (
        "writes its answers into SQLite's file"
    ),
    "test_redeem_limits.py::test_the_overall_limit_answers_wrong_codes_later_and_never_refuses_a_right_one": (
        "counts rows in SQLite's file"
    ),
    "test_week_after_week.py::test_one_persons_damaged_row_does_not_stop_everyone_elses_prompt": (
        "damages a row in SQLite's file"
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The coverage check goes last, after every suite test it counts; on the PostgreSQL
    run, tests of SQLite alone are skipped, saying why; the two runs of `make test` share
    the tests that are the same on every backend."""
    for item in items:
        reason = SQLITE_ONLY_FILES.get(item.path.name) or SQLITE_ONLY_TESTS.get(
            f"{item.path.name}::{item.name}"
        )
        if reason is not None and item.get_closest_marker("sqlite_only") is None:
            item.add_marker(pytest.mark.sqlite_only(reason=reason))
    if RUN_BACKEND == "sqlite" and "KT_TEST_BACKEND" in os.environ:
        # `make test` runs a PostgreSQL process beside this one: tests of PostgreSQL
        # alone (processes on a database, its faults, its erasure) run there, once.
        for item in items:
            if item.get_closest_marker("postgres") is not None:
                item.add_marker(pytest.mark.skip(reason="PostgreSQL only: in the PostgreSQL run"))
    if RUN_BACKEND == "postgres":
        for item in items:
            marker = item.get_closest_marker("sqlite_only")
            if marker is not None:
                why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
                item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))
    if SHARE and "KT_TEST_BACKEND" in os.environ:
        shared = [
            item
            for item in items
            if item.get_closest_marker(SAME_ON_EVERY_BACKEND) is not None
            and item.get_closest_marker("sqlite_only") is None
            and item.get_closest_marker("postgres") is None
        ]
        mine = 0 if RUN_BACKEND == "sqlite" else 1
        other = "PostgreSQL" if RUN_BACKEND == "sqlite" else "SQLite"
        for index, item in enumerate(shared):
            if index % 2 != mine:
                item.add_marker(
                    pytest.mark.skip(reason=f"the same on every backend: in the {other} run")
                )
    last = [item for item in items if item.path.name == COVERAGE_FILE]
    if last:
        items[:] = [item for item in items if item.path.name != COVERAGE_FILE] + last
