"""A database made by an earlier version is brought up to date by `upgrade()` (the
`kitchen-table db upgrade` command) with everything in it kept; opening one whose
schema is behind, or ahead, refuses and says what to do. SQLite's files; the
PostgreSQL side is in tests/test_storage_schema.py, run on every backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.failures import NotOurs, SchemaAhead, SchemaBehind
from storage.rows import ParticipantRow
from storage.sqlite import SQLiteStorage
from storage.sqlite.migrations import MIGRATIONS


def older(path: Path, version: int) -> None:
    """A database as version `version` of the schema left it."""
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:version]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version={version}")
    db.close()


async def test_people_and_seen_keys_survive_the_move_to_key_ordered_tables(tmp_path: Path):
    path = tmp_path / "kt.db"
    older(path, 6)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO participants (id, channel, address, language, current_run, unreachable)"
            " VALUES ('p1', 'telegram', x'00ff', 'es', 'r1', 1)"
        )
        db.execute("INSERT INTO inbound (key, at) VALUES ('k1', '2026-11-01T00:00:00+00:00')")
    db.close()
    store = SQLiteStorage(path)
    assert await store.upgrade() == (6, len(MIGRATIONS))
    try:
        assert await store.participant("p1") == ParticipantRow(
            "p1", "telegram", b"\x00\xff", "es", "r1", True
        )
        assert await store.inbound_seen("k1")
        assert not await store.inbound_seen("k2")
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = dict(db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'"))
    db.close()
    assert version == len(MIGRATIONS)
    assert "WITHOUT ROWID" in tables["participants"] and "WITHOUT ROWID" in tables["inbound"]


async def test_a_file_behind_is_refused_untouched_until_upgraded(tmp_path: Path):
    path = tmp_path / "kt.db"
    older(path, 8)
    store = SQLiteStorage(path)
    assert await store.schema_state() == (8, len(MIGRATIONS))  # without opening it
    with pytest.raises(SchemaBehind) as refused:
        await store.open()
    message = str(refused.value)
    assert "\n" not in message
    assert "version 8" in message and f"needs {len(MIGRATIONS)}" in message
    assert "kitchen-table db upgrade" in message and "backup" in message
    assert await store.schema_state() == (8, len(MIGRATIONS))  # nothing was changed
    await store.close()  # closing what failed to open is harmless
    assert await store.upgrade() == (8, len(MIGRATIONS))
    assert await store.schema_state() == (len(MIGRATIONS), len(MIGRATIONS))
    await store.close()
    again = SQLiteStorage(path)
    await again.open()
    assert await again.upgrade() == (len(MIGRATIONS), len(MIGRATIONS))  # nothing to do
    await again.close()


async def test_a_file_from_a_newer_version_is_refused(tmp_path: Path):
    path = tmp_path / "kt.db"
    older(path, len(MIGRATIONS))
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.close()
    store = SQLiteStorage(path)
    for attempt in (store.open, store.upgrade):
        with pytest.raises(SchemaAhead) as refused:
            await attempt()
        assert "newer" in str(refused.value) and "\n" not in str(refused.value)
    assert isinstance(refused.value, SchemaBehind)  # refused wherever a schema behind is


async def test_a_new_file_is_made_at_the_latest_version_and_anothers_is_left_alone(
    tmp_path: Path,
):
    store = SQLiteStorage(tmp_path / "new.db")
    assert await store.schema_state() == (0, len(MIGRATIONS))
    assert not (tmp_path / "new.db").exists()  # looking made nothing
    await store.open()
    assert await store.schema_state() == (len(MIGRATIONS), len(MIGRATIONS))
    await store.close()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    with pytest.raises(NotOurs):
        await SQLiteStorage(other).open()
