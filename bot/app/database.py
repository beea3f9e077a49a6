"""Which database the bot keeps its data in, and the `kitchen-table db` commands.

SQLite (one file in the data folder) unless KT_DATABASE_URL names a PostgreSQL
database, which several instances can share. Only here, in the composition root,
is a backend chosen; everything else asks for the storage protocols.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from bot.app.usage import UsageError
from bot.config import ConfigError, Settings
from bot.conversation.locks import KeyedLocks
from bot.delivery.ratelimit import RateLimits, SendLimits
from storage.postgres.leases import PostgresLeases
from storage.postgres.limits import PostgresSendLimits
from storage.postgres.locks import PostgresConversationLocks
from storage.protocol import STORAGE_FAILURES, Storage
from storage.sqlite import SQLiteStorage

# A record that says which secret wrote this database: instances (or a restore) with
# another secret would give everyone new pseudonyms and could reply to nobody.
log = logging.getLogger("kitchen_table")

SECRET_CHECK = ("secret-check", "v1")
# How often an instance looks for erasures to clear from PostgreSQL's files.
MAINTAIN_EVERY = 60.0
# How long /healthz waits for the database before calling it unreachable.
HEALTH_TIMEOUT = 3.0


@dataclass
class Shared:
    """What several instances on one PostgreSQL database decide together: conversation
    locks, a lease (only one may poll Telegram), and send limits for the bot as a whole.
    None of it exists on SQLite, which one process has to itself."""

    locks: PostgresConversationLocks
    leases: PostgresLeases
    pool: Any
    secret: bytes

    def limits(self, channel: str, alone: RateLimits) -> SendLimits:
        """`alone`'s limits, counted in the database for every instance together."""
        return PostgresSendLimits(
            self.pool, channel, overall=alone.overall, per_chat=alone.per_chat,
            per_group=alone.per_group, secret=self.secret,
        )  # fmt: skip

    async def close(self) -> None:
        await self.locks.close()


async def share(storage: Storage, settings: Settings, secret: bytes) -> Shared | None:
    """The pieces instances share, on PostgreSQL (None on SQLite)."""
    from storage.postgres import PostgresStorage

    if not isinstance(storage, PostgresStorage):
        return None
    assert settings.postgres_url is not None
    namespace = storage.schema or "public"
    # The locks have a pool of their own: a holder keeps its connection while its turn
    # loads and commits through storage's pool (one pool for both could deadlock).
    locks = await PostgresConversationLocks.open(
        settings.postgres_url, size=settings.db_pool_size, namespace=namespace, local=KeyedLocks()
    )
    return Shared(locks, PostgresLeases(locks.pool, namespace=namespace), storage.pool, secret)


def make_storage(settings: Settings) -> Storage:
    """The configured backend, not yet opened."""
    url = settings.postgres_url
    if url is None:
        return SQLiteStorage(settings.database_path)
    from storage.postgres import PostgresStorage

    return PostgresStorage(url, pool_size=settings.db_pool_size)


def where(settings: Settings) -> str:
    """The database in words for a log line: never its password."""
    url = settings.postgres_url
    if url is None:
        return f"SQLite at {settings.database_path}"
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL at {host}{port}{parts.path or ''}"


async def reachable(storage: Storage) -> bool:
    """For /healthz: whether the database answers, within a few seconds."""
    try:
        await asyncio.wait_for(storage.schema_state(), HEALTH_TIMEOUT)
    except Exception as error:  # whatever keeps it from answering: a probe says no
        log.debug("health check: the database did not answer (%s)", error)
        return False
    return True


def secret_mark(secret: bytes) -> bytes:
    """What the secret-check record holds: a MAC of a fixed text, which says whether two
    secrets are the same without holding either."""
    return hmac.new(secret, b"kitchen-table secret check", hashlib.sha256).digest()


async def check_secret(storage: Storage, secret: bytes, now: datetime) -> None:
    """Refuse to go on with a secret other than the one the database was written with;
    note it on first use."""
    mark = secret_mark(secret)
    kept = await storage.record(*SECRET_CHECK, now)
    if kept is None:
        # Written only if still absent: two first instances with different keys both
        # wrote theirs, the last one winning unseen (found by review).
        if await storage.replace_record(*SECRET_CHECK, None, mark):
            return
        kept = await storage.record(*SECRET_CHECK, now)
    if kept is None or not hmac.compare_digest(kept, mark):
        raise ConfigError(
            "KT_SECRET_KEY: this database was written with another secret key. Every "
            "instance sharing a database needs the same KT_SECRET_KEY (copy it from the "
            "first one's environment, or its data folder's secret file)"
        )


async def command(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """`kitchen-table db upgrade | status | maintain`."""
    storage = make_storage(settings)
    action = args.db_command
    if action == "upgrade":
        before, after = await storage.upgrade()
        await storage.close()
        if before == after:
            out.write(f"{where(settings)}: the schema is up to date (version {after}).\n")
        else:
            out.write(f"{where(settings)}: upgraded the schema from version {before} to {after}.\n")
        return 0
    if action == "status":
        current, latest = await storage.schema_state()
        await storage.close()
        if current == latest:
            state = "up to date"
        elif current < latest:
            state = "behind: run `kitchen-table db upgrade`"
        else:
            state = "newer than this version of Kitchen Table: upgrade the bot"
        out.write(f"{where(settings)}: schema version {current} of {latest}, {state}.\n")
        return 0 if current == latest else 1
    if action == "maintain":
        await storage.open()
        try:
            lines = await maintain(storage, at_once=True)
        finally:
            await storage.close()
        for line in lines:
            out.write(f"{line}\n")
        return 0
    if action == "copy":
        return await _copy(args.source, args.target, out)
    raise AssertionError(action)


async def maintain(storage: Storage, at_once: bool = False) -> list[str]:
    """Clear erased words from the database's files (see storage/postgres/erasure.py):
    on PostgreSQL, rewrite the tables and cycle the log if anyone was forgotten since
    the last round (or `at_once`); on SQLite, deleted rows are overwritten as they are
    deleted (secure_delete)."""
    from storage.postgres import PostgresStorage
    from storage.postgres.erasure import clear

    if isinstance(storage, PostgresStorage):
        async with storage.pool.acquire() as connection:
            return (await clear(connection, at_once=at_once)).lines
    return ["SQLite overwrites what it deletes as it deletes it (secure_delete): nothing to clear"]


async def keep_clearing(storage: Storage, every: float = MAINTAIN_EVERY) -> None:
    """Soon after anyone is forgotten, clear their words from the files (PostgreSQL;
    one instance at a time). Runs until cancelled; a failing database is tried again."""
    from storage.postgres import PostgresStorage

    if not isinstance(storage, PostgresStorage):
        return  # SQLite overwrites deleted rows as it deletes them
    while True:
        await asyncio.sleep(every)
        try:
            lines = await maintain(storage)
        except STORAGE_FAILURES as error:
            log.warning("could not clear erased rows from the database's files (%s)", error)
            continue
        if lines and not lines[0].startswith("nothing was erased"):
            log.info("erasure: %s", "; ".join(lines))


async def _copy(source: str, target: str, out: TextIO) -> int:
    from pathlib import Path

    from storage.copy import CopyError, copy_sqlite_to_postgres

    if not source.startswith("sqlite:///"):
        raise UsageError("--from: give the SQLite file as sqlite:///path/to/kitchen-table.db")
    if not target.startswith(("postgresql://", "postgres://")):
        raise UsageError("--to: give the PostgreSQL database as postgresql://user@host/db")
    try:
        copied = await copy_sqlite_to_postgres(Path(source.removeprefix("sqlite:///")), target)
    except CopyError as error:
        out.write(f"Nothing was copied: {error}\n")
        return 1
    width = max(len(c.table) for c in copied)
    for c in copied:
        out.write(f"  {c.table:<{width}}  {c.rows:>9,} rows  sha256 {c.digest[:16]}\n")
    total = sum(c.rows for c in copied)
    out.write(
        f"Copied {total:,} rows in {len(copied)} tables; each table's count and digest "
        "match on both sides. Set KT_DATABASE_URL to the PostgreSQL database and start the bot.\n"
    )
    return 0


def add_commands(command: object) -> None:
    """Add `db` and its actions to the command line (`command` makes a subcommand)."""
    db = command(  # type: ignore[operator]
        "db", "the database: bring its schema up to date, or say where it stands"
    )
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser(
        "upgrade", help="apply the schema changes this version needs (back up first)"
    )
    actions.add_parser("status", help="the schema's version, and whether it is behind")
    actions.add_parser(
        "maintain", help="clear erased words from the database's files now (the bot does "
        "it by itself soon after each erasure)",
    )  # fmt: skip
    copy = actions.add_parser(
        "copy", help="copy a SQLite database into an empty PostgreSQL one, and check it"
    )
    copy.add_argument("--from", dest="source", required=True, metavar="sqlite:///FILE")
    copy.add_argument("--to", dest="target", required=True, metavar="postgresql://...")
