"""A database made by an earlier version opens in this one with everything in it kept."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
    await store.open()
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
