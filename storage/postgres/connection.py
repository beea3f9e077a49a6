"""The PostgreSQL backend's connections: one asyncpg pool, its schema, and its migrations.

Every concern's module (conversations, schedules, gatherings, records, rights,
reports) is a mixin of `Connections`: they share the pool and the row decoders. Each
query is a prepared statement (asyncpg keeps the latest hundred per connection, by
their text), and a commit is one call of a function on the server (`commits.py`):
few round trips, each cheap to prepare.

Several instances share one database: what one instance must not do twice (claim a
message, create the schema) is decided in the database. `claimant` names this
instance in the outbox's leases.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from storage.postgres.migrations import migrations
from storage.rows import GatheringRow, RunRow
from storage.schema import NotOurs, SchemaAhead, SchemaBehind

# How long a claimed message is the claimant's alone (see `conversations.claim_due`).
# An instance that died holds its messages back this long, then another sends them: a
# minute, so a crash delays a reply by a minute at most. A round of delivery can take
# longer than that (up to 500 people's messages within the platform's limits, shared by
# every instance), so while its claimant sends, its leases are renewed (`RENEW`): a
# lease runs out only when its holder has sent nothing for a whole lease.
LEASE = timedelta(minutes=1)


def utc(moment: datetime) -> datetime:
    """A moment as it is written: in UTC (a naive one is taken as local time, as
    SQLite's `ts` does). None is no moment, and fails here as it does there."""
    return moment.astimezone(UTC)


def maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def ts(moment: datetime) -> str:
    """A moment as text, as SQLite stores it: what export pages are sorted and followed
    by (`ExportRow.answered_at`), the same on every backend."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class Connections:
    """One PostgreSQL database (and schema): the pool, opened and closed together."""

    def __init__(
        self,
        url: str,
        pool_size: int = 10,
        schema: str | None = None,
        *,
        lease: timedelta = LEASE,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.schema = schema
        self.lease = lease
        # This instance, as the outbox's leases name it: unique per storage object, so
        # two in one process (tests) are as two processes.
        self.claimant = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._pool: asyncpg.Pool | None = None

    # Opening, upgrading, closing --------------------------------------------------------

    async def open(self) -> None:
        """Connect, creating the schema in an empty database; SchemaBehind (or
        SchemaAhead) if the database's schema is not this version's."""
        await self._connect(upgrade=False)

    async def upgrade(self) -> tuple[int, int]:
        """Open (if not open yet) and apply the migrations the database is behind on, in
        one transaction: (version before, version after)."""
        if self._pool is None:
            return await self._connect(upgrade=True)
        async with self._pool.acquire() as connection:
            return await _migrate(connection, self._lock_name, upgrade=True)

    async def schema_state(self) -> tuple[int, int]:
        """(the database's schema version, this code's latest): one query, open or not,
        so it is also the health check. A database without our tables is at 0."""
        latest = len(migrations())
        if self._pool is not None:
            async with self._pool.acquire() as connection:
                return await _version(connection), latest
        connection = await asyncpg.connect(self.url, server_settings=self._settings())
        try:
            return await _version(connection), latest
        finally:
            await connection.close()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for the pieces beside storage that keep their own state in
        the same database (locks, shared send limits, leases)."""
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._pool

    async def _connect(self, *, upgrade: bool) -> tuple[int, int]:
        if self.schema is not None:
            # A schema of its own (a test's, or a deployment's beside others'): made on
            # first use, before anything is created in it.
            connection = await asyncpg.connect(self.url)
            try:
                await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quoted(self.schema)}")
            except asyncpg.UniqueViolationError:
                pass  # another instance made it at the same moment
            finally:
                await connection.close()
        pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            server_settings=self._settings(),
        )
        try:
            async with pool.acquire() as connection:
                versions = await _migrate(connection, self._lock_name, upgrade=upgrade)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        return versions

    def _settings(self) -> dict[str, str]:
        settings = {"application_name": "kitchen-table"}
        if self.schema is not None:
            settings["search_path"] = _quoted(self.schema)
        return settings

    @property
    def _lock_name(self) -> str:
        return f"kitchen-table schema {self.schema or ''}"

    # Reading ---------------------------------------------------------------------------

    async def _one(self, sql: str, *params: Any) -> asyncpg.Record | None:
        async with self.pool.acquire() as connection:
            row: asyncpg.Record | None = await connection.fetchrow(sql, *params)
            return row

    async def _all(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire() as connection:
            rows: list[asyncpg.Record] = await connection.fetch(sql, *params)
            return rows

    async def _value(self, sql: str, *params: Any) -> Any:
        async with self.pool.acquire() as connection:
            return await connection.fetchval(sql, *params)

    async def _execute(self, sql: str, *params: Any) -> str:
        async with self.pool.acquire() as connection:
            status: str = await connection.execute(sql, *params)
            return status

    @staticmethod
    def _run_row(row: asyncpg.Record | tuple[Any, ...]) -> RunRow:
        return RunRow(
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9]
        )

    _RUN_COLUMNS = (
        "id, participant, guide_id, guide_version, guide_hash, status, state,"
        " started_at, updated_at, gathering"
    )

    _GATHERING_COLUMNS = (
        "id, code, guide_id, title, facilitator, channel, address, private_address, paced,"
        " part, status, created_at, expires_at, closed_at, place"
    )

    @staticmethod
    def _gathering_row(row: asyncpg.Record) -> GatheringRow:
        return GatheringRow(*row)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _version(connection: asyncpg.Connection) -> int:
    """The schema version recorded in the schema first on the search path, or 0."""
    if await connection.fetchval("SELECT to_regclass('schema_version') IS NULL"):
        return 0
    found = await connection.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
    return int(found)


async def _migrate(connection: asyncpg.Connection, lock: str, *, upgrade: bool) -> tuple[int, int]:
    """Check the schema (open) or bring it up to date (upgrade), in one transaction under
    an advisory lock: instances starting together on an empty database make it once,
    and nobody reads a schema half made. (before, after)."""
    steps = migrations()
    latest = len(steps)
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", lock)
        current = await _version(connection)
        if current > latest:
            raise SchemaAhead(current, latest)
        if current == 0:
            if not await _empty(connection):
                raise NotOurs(f"The schema {await _schema_name(connection)}")
        elif current < latest and not upgrade:
            raise SchemaBehind(current, latest)
        if current < latest:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            for version, script in enumerate(steps[current:], start=current + 1):
                await connection.execute(script)
                await connection.execute(
                    "INSERT INTO schema_version (version) VALUES ($1)", version
                )
    return current, latest


async def _empty(connection: asyncpg.Connection) -> bool:
    """Whether the schema first on the search path holds no table (nor view, sequence)."""
    found = await connection.fetchval(
        "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
    )
    return int(found) == 0


async def _schema_name(connection: asyncpg.Connection) -> str:
    return str(await connection.fetchval("SELECT current_schema()"))
