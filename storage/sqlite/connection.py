"""The SQLite backend's connections: one writer thread (group commit) and one reader.

Every concern's module (conversations, schedules, gatherings, records, rights,
reports) is a mixin of `Connections`: they share these two connections, the
timestamp format and the row decoders, so that splitting the backend by concern
changes neither a statement nor a trip to a thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from storage.rows import GatheringRow, RunRow
from storage.schema import NotOurs, SchemaAhead, SchemaBehind
from storage.sqlite.migrations import MIGRATIONS
from storage.sqlite.writer import GroupWriter

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # an acknowledged answer survives power loss, not just a crash
    "PRAGMA secure_delete=ON",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


# The writer's page cache: 16 MB rather than SQLite's 2 MB. A scheduled prompt updates
# people all over the participants table; with 2 MB nearly every one read its pages
# back from the OS (100,000 people: 2.5 s of the writer's 7 s; 1.6 s with 16 MB, and
# 1.3 s with 64 MB). It fills only as far as the database is used.
WRITER_CACHE = "PRAGMA cache_size=-16384"


def ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


LATEST = len(MIGRATIONS)


def _version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _empty(db: sqlite3.Connection) -> bool:
    return bool(db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0)


def migrate(db: sqlite3.Connection) -> tuple[int, int]:
    """Bring the schema up to date inside the writer's transaction: (before, after)."""
    current = _version(db)
    if current > LATEST:
        raise SchemaAhead(current, LATEST)
    if current == 0 and not _empty(db):
        raise NotOurs(db.execute("PRAGMA database_list").fetchone()[2])
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version={version}")
    return current, LATEST


def create_or_check(db: sqlite3.Connection) -> None:
    """What opening does to the schema: an empty file gets it whole, at the latest
    version; one whose schema is behind (or ahead) is refused, never changed without
    the operator's say (`kitchen-table db upgrade`, after a backup)."""
    current = _version(db)
    if current == 0:
        migrate(db)
    elif current < LATEST:
        raise SchemaBehind(current, LATEST)
    elif current > LATEST:
        raise SchemaAhead(current, LATEST)


MAX_MARKS = 500  # keys per `IN (...)` look-up, well inside SQLite's limit on parameters


def execute_in(db: sqlite3.Connection, sql: str, keys: Sequence[str]) -> Iterator[Any]:
    """Run `sql`, whose `{marks}` stands for an `IN` list, for all these keys: the rows
    it reads, if it reads any."""
    return db.execute(sql.format(marks=JSON_LIST), (json.dumps(list(keys)),))


# A list of any length as one parameter: the statement's text stays the same, so it is
# prepared once and stays in the connection's cache (128 statements) instead of
# pushing the writer's inserts out with a new text for every length.
JSON_LIST = "SELECT value FROM json_each(?)"


class Connections:
    """One SQLite file: the writer (`_w`) and the reader (`_r`), opened and closed together."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: GroupWriter | None = None
        self._reader: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Connect, creating the schema in a new file; SchemaBehind (or SchemaAhead) if the
        file's schema is not this version's."""
        await self._connect(create_or_check)

    async def upgrade(self) -> tuple[int, int]:
        """Open (if not open yet) and apply the migrations the file is behind on, in one
        transaction: (version before, version after)."""
        if self._writer is None:
            versions: tuple[int, int] = await self._connect(migrate)
            return versions
        upgraded: tuple[int, int] = await self._w.run(migrate)
        return upgraded

    async def schema_state(self) -> tuple[int, int]:
        """(the file's schema version, this code's latest), read from the file: open or
        not, and as a health check. A file that is not there is at version 0."""
        if self._reader is not None:
            row = await self._one("PRAGMA user_version", ())
            assert row is not None
            return int(row[0]), LATEST
        return await asyncio.to_thread(self._file_version), LATEST

    def _file_version(self) -> int:
        if not self.path.exists():
            return 0  # not made by looking at it
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return _version(db)
        finally:
            db.close()

    async def _connect(self, schema: Callable[[sqlite3.Connection], Any]) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            # Create the file private to its owner before SQLite writes anything into it.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        writer = GroupWriter(self.path, (*PRAGMAS, WRITER_CACHE))
        await writer.open()
        self._writer = writer
        try:
            result = await writer.run(schema)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in PRAGMAS[2:]:
                await self._reader.execute(pragma)
        except BaseException:
            await self.close()
            raise
        return result

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await self._writer.close()
        self._reader = self._writer = None

    @property
    def _w(self) -> GroupWriter:
        if self._writer is None:
            raise RuntimeError("storage is not open")
        return self._writer

    @property
    def _r(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("storage is not open")
        return self._reader

    async def _checkpoint(self) -> None:
        """Copy the journal into the database and empty it, so what was just erased
        lives on nowhere (secure_delete has zeroed the freed pages)."""
        # Outside any transaction, so from the reader's connection, not the writer's.
        await self._r.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    # One trip to the reader thread per query: under load, each trip waits for the
    # event loop, so a cursor's separate execute, fetch and close cost three waits.

    async def _one(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        return list(await self._r.execute_fetchall(sql, params))

    async def _packed(self, sql: str, params: tuple[object, ...], columns: int) -> list[Any]:
        """The rows of a query of `columns` plain columns, handed over as one JSON row.

        The reader thread takes the GIL back for every row it steps to, and while this
        process is busy in Python (a digest counts words as its figures are worked out)
        each take waits up to the switch interval, 5 ms: for an aggregate of many small
        rows that cost more than the query itself."""
        names = ", ".join(f"c{n}" for n in range(columns))
        row = await self._one(
            f"WITH q ({names}) AS ({sql}) SELECT json_group_array(json_array({names})) FROM q",
            params,
        )
        assert row is not None  # an aggregate always returns one row
        found: list[Any] = json.loads(row[0])
        return found

    @staticmethod
    def _run_row(row: sqlite3.Row | tuple[Any, ...]) -> RunRow:
        return RunRow(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], dt(row[7]), dt(row[8]),
            row[9],
        )  # fmt: skip

    _RUN_COLUMNS = (
        "id, participant, guide_id, guide_version, guide_hash, status, state,"
        " started_at, updated_at, gathering"
    )

    _GATHERING_COLUMNS = (
        "id, code, guide_id, title, facilitator, channel, address, private_address, paced,"
        " part, status, created_at, expires_at, closed_at, place"
    )

    @staticmethod
    def _gathering_row(row: sqlite3.Row | tuple[Any, ...]) -> GatheringRow:
        return GatheringRow(
            row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), bytes(row[7]),
            bool(row[8]), row[9], row[10], dt(row[11]), dt(row[12]),
            None if row[13] is None else dt(row[13]), row[14],
        )  # fmt: skip
