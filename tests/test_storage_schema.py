"""The schema's version on every backend: an open store is at the latest, `upgrade()`
of an up-to-date one changes nothing, and `schema_state()` answers with or without
`open()`. Then PostgreSQL's migrations, as tests/test_migrations.py does SQLite's: a
schema behind is refused on open and brought up to date by `upgrade()` (the
`kitchen-table db upgrade` command), one ahead is refused, another program's is left
alone, and instances opening an empty database at once make it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage.failures import NotOurs, SchemaAhead, SchemaBehind
from storage.postgres import PostgresStorage
from storage.postgres.migrations import migrations
from storage.protocol import Storage
from storage.rows import Commit, ParticipantRow
from tests.storage_suite import DATABASE_URL, SUITE_BACKENDS, drop_schemas, need, schema_for

LATEST = len(migrations())


async def test_an_open_store_is_at_the_latest_schema_and_upgrading_it_changes_nothing(
    store: Storage,
) -> None:
    current, latest = await store.schema_state()
    assert current == latest > 0
    assert await store.upgrade() == (latest, latest)
    assert await store.commit(Commit(participant=ParticipantRow("p1", "terminal", b"s")))
    assert await store.schema_state() == (latest, latest)


postgres_only = pytest.mark.skipif(
    "postgres" not in SUITE_BACKENDS, reason="PostgreSQL's migrations: not this run's backend"
)


@pytest.fixture
async def schema(tmp_path: Path) -> AsyncIterator[str]:
    """An empty schema of the test's own, and a connection's worth of access to it."""
    await need("postgres")
    name = schema_for(tmp_path / "kt.db")
    yield name
    await drop_schemas()


async def raw(schema: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(DATABASE_URL, server_settings={"search_path": schema})
    await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return connection


async def older(schema: str, version: int) -> None:
    """A schema as version `version` of the migrations left it."""
    connection = await raw(schema)
    try:
        await connection.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for n, script in enumerate(migrations()[:version], start=1):
            await connection.execute(script)
            await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", n)
    finally:
        await connection.close()


@postgres_only
async def test_a_schema_behind_is_refused_untouched_until_upgraded(schema: str) -> None:
    await older(schema, 1)
    store = PostgresStorage(DATABASE_URL, schema=schema)
    assert await store.schema_state() == (1, LATEST)  # without opening it
    with pytest.raises(SchemaBehind) as refused:
        await store.open()
    message = str(refused.value)
    assert "\n" not in message and "version 1" in message and f"needs {LATEST}" in message
    assert "kitchen-table db upgrade" in message and "backup" in message
    assert await store.schema_state() == (1, LATEST)
    await store.close()  # closing what failed to open is harmless
    assert await store.upgrade() == (1, LATEST)
    assert await store.commit(Commit(participant=ParticipantRow("p1", "terminal", b"s")))
    await store.close()
    again = PostgresStorage(DATABASE_URL, schema=schema)
    await again.open()
    assert await again.participant("p1") is not None
    assert await again.schema_state() == (LATEST, LATEST)
    await again.close()


@postgres_only
async def test_a_schema_from_a_newer_version_is_refused(schema: str) -> None:
    await older(schema, LATEST)
    connection = await raw(schema)
    await connection.execute("INSERT INTO schema_version (version) VALUES ($1)", LATEST + 1)
    await connection.close()
    store = PostgresStorage(DATABASE_URL, schema=schema)
    for attempt in (store.open, store.upgrade):
        with pytest.raises(SchemaAhead) as refused:
            await attempt()
        assert "newer" in str(refused.value) and "\n" not in str(refused.value)
    assert isinstance(refused.value, SchemaBehind)  # refused wherever a schema behind is
    await store.close()


@postgres_only
async def test_an_empty_schema_is_made_once_by_instances_opening_together(schema: str) -> None:
    first = PostgresStorage(DATABASE_URL, schema=schema)
    assert await first.schema_state() == (0, LATEST)  # looking makes nothing
    instances = [first, *(PostgresStorage(DATABASE_URL, schema=schema) for _ in range(3))]
    await asyncio.gather(*(s.open() for s in instances))
    connection = await raw(schema)
    versions = await connection.fetch("SELECT version FROM schema_version ORDER BY version")
    await connection.close()
    assert [v[0] for v in versions] == list(range(1, LATEST + 1))
    for instance in instances:
        assert await instance.schema_state() == (LATEST, LATEST)
        await instance.close()


@postgres_only
async def test_another_programs_schema_is_left_alone(schema: str) -> None:
    connection = await raw(schema)
    await connection.execute("CREATE TABLE notes (text TEXT)")
    await connection.close()
    store = PostgresStorage(DATABASE_URL, schema=schema)
    for attempt in (store.open, store.upgrade):
        with pytest.raises(NotOurs):
            await attempt()
    assert await store.schema_state() == (0, LATEST)


@postgres_only
async def test_a_database_that_is_away_is_a_storage_failure(tmp_path: Path) -> None:
    from storage.failures import STORAGE_FAILURES

    nowhere = PostgresStorage("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(STORAGE_FAILURES):
        await nowhere.schema_state()
    with pytest.raises(STORAGE_FAILURES):
        await nowhere.open()
