"""PostgreSQL: commits that reach it together (answers from many people at once: one call
of `kt_commit_plain` or `kt_commit_many`), or go as one chunk of a scheduled prompt
(`commit_many`), end exactly as they would one after another, as SQLite's merged
writes do (tests/test_storage_merged.py draws the commits the same way)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.rows import Commit
from tests.storage_suite import (
    DATABASE_URL,
    SUITE_BACKENDS,
    drop_schemas,
    postgres_store,
    postgres_unreachable,
)
from tests.test_storage_merged import a_commit

pytestmark = pytest.mark.skipif(
    "postgres" not in SUITE_BACKENDS, reason="PostgreSQL's commits together: not this run's backend"
)

TABLES = {
    "participants": "SELECT * FROM participants ORDER BY id",
    "runs": "SELECT * FROM runs ORDER BY id",
    "answers": "SELECT run_id, step, participant, guide_id, guide_version, kind, value,"
    " answered_at FROM answers ORDER BY run_id, step",
    "consents": "SELECT participant, guide_id, guide_version, given, at FROM consents ORDER BY n",
    "outbox": "SELECT channel, participant, address, payload, not_before, attempts FROM outbox"
    " ORDER BY id",
    "guide_sources": "SELECT * FROM guide_sources ORDER BY hash",
    "inbound": "SELECT key FROM inbound ORDER BY key",
    "deliveries": "SELECT * FROM deliveries ORDER BY key",
    "members": "SELECT cohort, participant FROM members ORDER BY cohort, participant",
    "preferences": "SELECT * FROM preferences ORDER BY participant",
}


async def emptied(connection: asyncpg.Connection) -> None:
    """Every table of the store's schema emptied, as a new schema would be (the compared
    columns hold no serial numbers), in a fraction of the time PostgreSQL takes to make one."""
    tables = await connection.fetch(
        "SELECT quote_ident(tablename) AS name FROM pg_tables"
        " WHERE schemaname = current_schema() AND tablename <> 'schema_version'"
    )
    async with connection.transaction():
        for table in tables:
            await connection.execute(f"DELETE FROM {table['name']}")


async def write(
    folder: Path, before: list[Commit], commits: list[Commit], how: str
) -> tuple[list[bool], dict[str, Any]]:
    # The same three schemas serve every example; each starts empty.
    store = postgres_store(folder / f"{how}.db")
    await store.open()
    try:
        async with store.pool.acquire() as connection:
            await emptied(connection)
        written = [await store.commit(c) for c in before]
        if how == "together":
            written += await asyncio.gather(*(store.commit(c) for c in commits))
        elif how == "bulk":
            written += await store.commit_many(commits)
        else:
            written += [await store.commit(c) for c in commits]
        connection = await asyncpg.connect(
            DATABASE_URL, server_settings={"search_path": store.schema or ""}
        )
        try:
            tables = {name: [tuple(r) for r in await connection.fetch(sql)]
                      for name, sql in TABLES.items()}  # fmt: skip
        finally:
            await connection.close()
    finally:
        await store.close()
    return written, tables


@pytest.fixture(autouse=True)
def _drop_the_schemas_after_the_examples() -> Iterator[None]:
    yield
    asyncio.run(drop_schemas())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(a_commit(), max_size=3), st.lists(a_commit(), min_size=2, max_size=12))
def test_commits_written_together_end_as_one_after_another(
    tmp_path: Path, before: list[Commit], commits: list[Commit]
) -> None:
    async def compare() -> None:
        if await postgres_unreachable() is not None:
            pytest.skip(str(await postgres_unreachable()))
        one_by_one = await write(tmp_path, before, commits, "one")
        assert await write(tmp_path, before, commits, "together") == one_by_one
        # A chunk of a prompt refuses people gone since it was read (nobody here).
        assert await write(tmp_path, before, commits, "bulk") == one_by_one

    asyncio.run(compare())
