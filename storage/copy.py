"""`kitchen-table db copy`: move a deployment's data from SQLite into PostgreSQL, checked.

Every table both schemas share is copied row for row, in SQLite's row order (so the
order answers were written in survives), into an empty PostgreSQL database at the
same schema version, in one transaction: all of it or none. Values are turned into
PostgreSQL's types by the target column's type (times, flags, bytes). Then the copy
is checked: each table's rows counted on both sides, and a digest of each table's
contents, made the same way from both sides, compared.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class CopyError(Exception):
    """The copy can't be made (or didn't check out): one line saying why."""


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int
    digest: str


async def copy_sqlite_to_postgres(source: Path, target_url: str) -> list[Copied]:
    """Copy every shared table; raise CopyError (with nothing written) if the source or
    the target is not as it must be, or if the check finds a difference."""
    import asyncpg

    from storage.postgres import PostgresStorage
    from storage.sqlite import SQLiteStorage

    if not source.is_file():  # noqa: ASYNC240 (one stat, before anything starts)
        raise CopyError(f"{source}: there is no such SQLite file")
    sqlite_state = await SQLiteStorage(source).schema_state()
    target = PostgresStorage(target_url, pool_size=2)
    await target.open()  # an empty database gets the latest schema here
    try:
        # Each backend numbers its own migrations: both must be at their latest.
        postgres_state = await target.schema_state()
        if sqlite_state[0] != sqlite_state[1]:
            raise CopyError(
                f"the SQLite file's schema is version {sqlite_state[0]}, behind this version's "
                f"{sqlite_state[1]}: run `kitchen-table db upgrade` with it first"
            )
        if postgres_state[0] != postgres_state[1]:
            raise CopyError("the PostgreSQL database's schema is not this version's")
        db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            async with target.pool.acquire() as connection:
                tables = await _shared_tables(db, connection)
                for table in tables:
                    if await connection.fetchval(f"SELECT count(*) FROM {table.name}"):
                        raise CopyError(
                            f"the PostgreSQL database already holds {table.name}: copy "
                            "into an empty one (createdb a new database)"
                        )
                async with connection.transaction():
                    for table in tables:
                        rows = [table.convert(row) for row in _sqlite_rows(db, table)]
                        if rows:
                            await connection.copy_records_to_table(
                                table.name, records=rows, columns=list(table.columns)
                            )
                copied = []
                for table in tables:
                    mine = _digest(_sqlite_rows(db, table), table)
                    theirs = _digest(
                        await connection.fetch(
                            f"SELECT {', '.join(table.columns)} FROM {table.name}"
                        ),
                        table,
                    )
                    if mine != theirs:
                        raise CopyError(
                            f"{table.name}: the copy differs from the original ({mine[0]:,} "
                            f"rows against {theirs[0]:,}); nothing else is wrong with SQLite"
                        )
                    copied.append(Copied(table.name, mine[0], mine[1]))
                return copied
        finally:
            db.close()
    except asyncpg.PostgresError as error:
        raise CopyError(f"PostgreSQL refused the copy: {error}") from None
    finally:
        await target.close()


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[str, ...]
    kinds: tuple[str, ...]  # each column's PostgreSQL type

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(_to_postgres(v, k) for v, k in zip(row, self.kinds, strict=True))


async def _shared_tables(db: sqlite3.Connection, connection: Any) -> list[Table]:
    """Tables in both, with the columns in both (a column PostgreSQL fills itself, such
    as an identity or a lease, is left to it)."""
    found = await connection.fetch(
        "SELECT table_name, column_name, data_type, is_identity, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, ordinal_position"
    )
    postgres: dict[str, list[tuple[str, str]]] = {}
    for row in found:
        if row["is_identity"] == "YES":
            continue
        postgres.setdefault(row["table_name"], []).append((row["column_name"], row["data_type"]))
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    tables = []
    for name in sorted(set(names) & set(postgres)):
        have = {r[1] for r in db.execute(f"PRAGMA table_info({name})")}
        pairs = [(c, k) for c, k in postgres[name] if c in have]
        tables.append(Table(name, tuple(c for c, _ in pairs), tuple(k for _, k in pairs)))
    return tables


def _sqlite_rows(db: sqlite3.Connection, table: Table) -> Iterable[tuple[Any, ...]]:
    order = "rowid" if _has_rowid(db, table.name) else ", ".join(table.columns)
    return db.execute(f"SELECT {', '.join(table.columns)} FROM {table.name} ORDER BY {order}")


def _has_rowid(db: sqlite3.Connection, name: str) -> bool:
    try:
        db.execute(f"SELECT rowid FROM {name} LIMIT 1")
    except sqlite3.OperationalError:
        return False
    return True


def _to_postgres(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind.startswith("timestamp"):
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if kind == "boolean":
        return bool(value)
    if kind == "bytea":
        return bytes(value) if not isinstance(value, str) else value.encode()
    if kind in ("integer", "bigint", "smallint"):
        return int(value)
    if kind in ("double precision", "real", "numeric"):
        return float(value)
    return value


def _canonical(value: Any, kind: str) -> str:
    """One value as both sides can write it alike."""
    value = _to_postgres(value, kind)
    if value is None:
        return "\x00null"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _digest(rows: Iterable[Sequence[Any]], table: Table) -> tuple[int, str]:
    """How many rows, and a SHA-256 of them in a fixed order (whatever order they came)."""
    lines = sorted(
        "\x1f".join(_canonical(v, k) for v, k in zip(row, table.kinds, strict=True)) for row in rows
    )
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8", "surrogatepass") + b"\x1e")
    return len(lines), digest.hexdigest()
