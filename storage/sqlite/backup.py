"""Copy a Kitchen Table SQLite database out, and put a copy back, safely.

A backup goes through SQLite's online backup API in one step, inside one read
transaction: a consistent copy while the bot goes on writing (WAL lets it). The
copy is a single self-contained file (journal mode DELETE, no -wal beside it),
written under a temporary name and renamed, so a half-written backup never looks
like a whole one, and created private (0600): it holds everything people said.

A restore checks first that the file is a Kitchen Table database of a schema this
version knows (older ones are brought up to date when the bot next opens them),
refuses to replace a database the bot has open, and replaces an existing one only
when asked; it hands back the erasures (tombstones) the replaced database held, so
the caller can make sure nobody who asked to be forgotten comes back with an older
backup. Neither holds the secret key: that is the caller's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from storage.sqlite.migrations import MIGRATIONS

# Tables every schema version has had since the first: a file without them is some
# other program's database.
_REQUIRED = {"participants", "runs", "answers", "outbox"}


class BackupError(Exception):
    """A backup or restore that can't be done, explained for the operator in a sentence or two."""


@dataclass(frozen=True)
class Contents:
    """What a database holds, enough to tell the operator and check the secret."""

    schema_version: int
    participants: int
    answers: int
    sealed_address: bytes | None  # one participant's sealed address, or None if nobody


async def backup(database: Path, out: Path, *, force: bool = False) -> Contents:
    """Copy `database` to `out` (0600) while the bot may be running."""
    return await asyncio.to_thread(_backup, database, out, force)


async def inspect(path: Path) -> Contents:
    """What a backup file holds; BackupError unless it is a Kitchen Table database we know."""
    return await asyncio.to_thread(_inspect_file, path)


async def restore(
    source: Path, database: Path, *, force: bool = False
) -> tuple[Contents, list[tuple[str, str]]]:
    """Put the backup `source` in place of `database` (which the bot must not have open).

    Returns what the backup holds, and the tombstones (pseudonym, when) of the
    database it replaced, if any.
    """
    return await asyncio.to_thread(_restore, source, database, force)


def _contents(db: sqlite3.Connection, name: Path) -> Contents:
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        raise BackupError(f"{name} is not a Kitchen Table database (not SQLite at all).") from None
    if version == 0 or not _REQUIRED.issubset(tables):
        raise BackupError(f"{name} is an SQLite database, but not Kitchen Table's.")
    if version > len(MIGRATIONS):
        raise BackupError(
            f"{name} was made by a newer Kitchen Table (schema {version}; this one knows up "
            f"to {len(MIGRATIONS)}). Upgrade Kitchen Table first, then restore it."
        )
    check = db.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise BackupError(f"{name} is damaged ({check}); use another backup.")
    participants = int(db.execute("SELECT count(*) FROM participants").fetchone()[0])
    answers = int(db.execute("SELECT count(*) FROM answers").fetchone()[0])
    sample = db.execute("SELECT address FROM participants LIMIT 1").fetchone()
    return Contents(version, participants, answers, bytes(sample[0]) if sample else None)


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    """Open an existing file only: a mistyped path must not become a new empty database."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None)
    db.execute("PRAGMA busy_timeout=10000")
    return db


def _private_file(path: Path) -> None:
    """Create `path` empty and readable by its owner only, before anything is written in it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """Write a self-contained copy of `source` at `target` (a new private file)."""
    _private_file(target)
    copy = sqlite3.connect(target, isolation_level=None)
    try:
        source.backup(copy)  # pages=-1: every page in one step, so one consistent snapshot
        # The copy inherits WAL from its source's header; one file is what a backup should be.
        copy.execute("PRAGMA journal_mode=DELETE")
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"the copy did not check out ({check}); nothing was kept")
    finally:
        copy.close()
    with open(target, "rb") as written:
        os.fsync(written.fileno())


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _backup(database: Path, out: Path, force: bool) -> Contents:
    if not database.is_file():
        raise BackupError(f"There is no database at {database}: nothing to back up.")
    if out.exists() and not force:
        raise BackupError(f"{out} already exists; name a new file, or add --force to replace it.")
    if out.exists() and out.resolve() == database.resolve():
        raise BackupError("The backup can't be the database itself; name another file.")
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)  # left by a backup that was interrupted
    source = _connect(database, "rw")
    try:
        contents = _contents(source, database)
        _copy(source, partial)
        os.replace(partial, out)
        _sync_folder(out.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        source.close()
    return contents


def _inspect_file(path: Path) -> Contents:
    if not path.is_file():
        raise BackupError(f"There is no file at {path}.")
    try:
        db = _connect(path, "ro")
    except sqlite3.Error as error:
        raise BackupError(f"{path} can't be read as a database ({error}).") from None
    try:
        return _contents(db, path)
    finally:
        db.close()


def _claim(database: Path) -> sqlite3.Connection:
    """Lock an existing database for replacing, or say that the bot has it open.

    Leaving WAL mode needs the only connection to the file, and the bot keeps its
    connections open while it runs, even idle: so this fails exactly while a bot
    (or another tool) is using it. The exclusive lock then keeps anyone from
    starting to write until the new file is in place.
    """
    db = _connect(database, "rw")
    db.execute("PRAGMA busy_timeout=0")
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("BEGIN EXCLUSIVE")
    except sqlite3.OperationalError as error:
        db.close()
        if "locked" in str(error) or "busy" in str(error):
            raise BackupError(
                f"The database at {database} is in use: stop the bot first "
                "(sudo systemctl stop kitchen-table), then restore again."
            ) from None
        raise
    return db


def _tombstones(db: sqlite3.Connection) -> list[tuple[str, str]]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'tombstones'").fetchone() is None:
        return []  # a schema from before erasures left tombstones
    return [(str(p), str(at)) for p, at in db.execute("SELECT participant, at FROM tombstones")]


def _restore(source: Path, database: Path, force: bool) -> tuple[Contents, list[tuple[str, str]]]:
    contents = _inspect_file(source)
    erased: list[tuple[str, str]] = []
    if database.exists() and source.resolve() == database.resolve():
        raise BackupError("That file is the database itself; name a backup file.")
    held: sqlite3.Connection | None = None
    if database.exists() and database.stat().st_size > 0:
        if not force:
            raise BackupError(
                f"There is already a database at {database}. Restoring replaces it: back it "
                "up first (kitchen-table backup --out FILE), then restore again with --force."
            )
        held = _claim(database)
        erased = _tombstones(held)
    partial = database.with_name(f".{database.name}.restoring")
    partial.unlink(missing_ok=True)
    try:
        reader = _connect(source, "ro")
        try:
            _copy(reader, partial)
        finally:
            reader.close()
        # A journal left beside the old file would be replayed into the new one.
        for leftover in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                database.with_name(database.name + leftover).unlink()
        os.replace(partial, database)
        _sync_folder(database.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        if held is not None:
            held.close()
    return contents, erased
