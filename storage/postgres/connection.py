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

import asyncio
import hashlib
import logging
import os
import secrets
import socket
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from time import monotonic
from typing import Any

import asyncpg

from storage.postgres.growth import Growth
from storage.postgres.migrations import migrations
from storage.postgres.quiet_cut import QUIET_CUT, SERVER_GIVES_UP, keep_pinging, ping, stop
from storage.rows import GatheringRow, RunRow
from storage.schema import NotOurs, SchemaAhead, SchemaBehind

log = logging.getLogger(__name__)

# How long a claimed message is the claimant's alone (see `conversations.claim_due`).
# An instance that died holds its messages back this long, then another sends them: a
# minute, so a crash delays a reply by a minute at most. A round of delivery can take
# longer than that (up to 500 people's messages within the platform's limits, shared by
# every instance), so while its claimant sends, its leases are renewed (`RENEW`): a
# lease runs out only when its holder has sent nothing for a whole lease.
LEASE = timedelta(minutes=1)
# After queueing this many messages in a short while, an instance analyzes the outbox
# (then again at twice as many, and so on): without statistics the claim sorts every
# due row (measured at 137,000 rows due: 561 ms a claim, 9 ms after `ANALYZE outbox`),
# and autovacuum may be off, or not yet round.
ANALYZE_AFTER = 5_000
# Queueing that stops for this long (seconds) has ended; the next is counted afresh.
QUEUEING_ENDS = 60.0
# After this many turns committed by an instance, and again at each doubling, the tables
# turns read are ANALYZEd. A prepared statement's plan is made once per connection, and
# made while they were empty (a new deployment; autovacuum off or not yet round) it
# reads them whole: the conversation read scanned every participant, run and message
# key at each call (measured in the inbound benchmark: 2.3 ms a call, 0.1 ms after).
# Once analyzed, the planner scales their statistics with their size.
ANALYZE_TURNS_AFTER = 1_000
TURN_TABLES = "participants, runs, inbound, answers, consents"


# The pool's connections that took a session-level lock (reaping, erasure): given back,
# they let go of every advisory lock, whatever became of their own unlock.
_SESSION_LOCKED: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()


def session_locking(connection: Any) -> None:
    """Note that this pool connection (as `acquire` gives it) takes a session lock."""
    _SESSION_LOCKED.add(getattr(connection, "_con", connection))  # the proxy's connection


async def _given_back(connection: asyncpg.Connection) -> None:
    """What a connection's return to the storage's pool does beyond asyncpg's own clean-up
    (a transaction left open is rolled back): nothing, unless it took a session lock.
    asyncpg's full reset (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) was
    a second round trip after every query, and the storage sets none of these."""
    if connection in _SESSION_LOCKED:
        _SESSION_LOCKED.discard(connection)
        await connection.execute("SELECT pg_advisory_unlock_all()")


# How an instance's connection that holds its claimant lock is named, and said in the log.
ALIVE_PREFIX = "kitchen-table alive "
ALIVE_WHAT = "saying this instance is alive"

# This instance trusts its alive connection only while a ping sent less than this long
# ago (seconds) was answered: well inside SERVER_GIVES_UP, so that an instance cut off
# stops sending what it claimed before the server can let go of its alive lock (when
# others take its leases). Its side alone would not know of the cut for hours.
ALIVE_TRUST = SERVER_GIVES_UP / 3


class AliveLockHeld(Exception):
    """The lock that says this instance is alive is still held by an earlier session."""


def claimant_lock(claimant: str) -> int:
    """The advisory lock an instance holds while alive (64 bits of a hash of its name)."""
    digest = hashlib.blake2b(f"kitchen-table claimant {claimant}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


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
        analyze_turns_after: int = ANALYZE_TURNS_AFTER,
    ) -> None:
        self.url = url
        self.pool_size = pool_size
        self.schema = schema
        self.lease = lease
        # This instance, as the outbox's leases name it: unique per storage object, so
        # two in one process (tests) are as two processes. The random part first: the
        # server keeps 63 bytes of a connection's name (`_alive_name`), and a long host
        # name cut it off, so a container restarted under the same name and process id
        # looked like the dead one, whose messages then waited out its leases (found by
        # review).
        self.claimant = f"{secrets.token_hex(4)}:{os.getpid()}:{socket.gethostname()}"
        self._pool: asyncpg.Pool | None = None
        self._alive: asyncpg.Connection | None = None  # holds this claimant's lock
        self._saying_alive = asyncio.Lock()  # held by whatever uses that connection
        # When the alive connection was asked for (monotonic; what this instance claimed
        # before then may have been taken by others meanwhile), when the last ping it
        # answered was sent, and what keeps pinging it.
        self._alive_since = float("inf")
        self._alive_confirmed = float("-inf")
        self._pinging: asyncio.Task[None] | None = None
        # Who to wake when another instance queues many messages (NOTIFY, heard on the
        # connection `_alive` keeps), and this instance's own queueing: how many lately
        # (and when to analyze the outbox), and when it was last counted.
        self._watchers: list[Callable[[], None]] = []
        self._queued = Growth(ANALYZE_AFTER)
        self._last_queued = float("-inf")
        self._reaped = float("-inf")  # when dead claimants' leases were last looked for
        # Per channel, the instances seen alive when dead ones' leases were last looked for.
        self._alive_seen: dict[str, frozenset[str]] = {}
        # Turns this instance committed, and when to analyze their tables next.
        self._turns = Growth(analyze_turns_after)

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
        pinging, self._pinging = self._pinging, None
        await stop(pinging)
        if self._alive is not None:
            # Ended, not closed: closing waits for the server's answer, which a connection
            # cut without a word never gives. Ending it lets go of the lock all the same.
            alive, self._alive = self._alive, None
            alive.terminate()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _alive_held(self) -> bool:
        """Whether this instance holds its claimant lock, as far as it knows: its
        connection is open (one the server ended is closed as soon as the event loop
        reads that) and answered a ping sent within ALIVE_TRUST (one cut without a word
        never says so)."""
        return (
            self._alive is not None
            and not self._alive.is_closed()
            and monotonic() - self._alive_confirmed < ALIVE_TRUST
        )

    async def _say_alive(self) -> None:
        """Hold this claimant's lock on a connection of its own for as long as the store
        is open: while it is held, this instance is alive; once its process dies, the
        server drops the connection and the lock, and another instance takes over its
        leases at once (`reap_dead`) instead of waiting for them to run out. Returns
        with the connection open and its last ping answered within ALIVE_TRUST."""
        # One at a time: a second would wait for ever behind the first's lock, which is
        # the same claimant's (found by review).
        async with self._saying_alive:
            alive = self._alive
            if alive is not None and not alive.is_closed():
                if monotonic() - self._alive_confirmed < ALIVE_TRUST:
                    return
                # Not heard from lately (a busy event loop, a slow server): asked now.
                if await ping(alive, ALIVE_WHAT, self._heard_alive):
                    return
            # The database went away and took the lock, or the connection is silent: hold
            # it again (meanwhile another instance may have taken this one's leases, and
            # sent those messages).
            self._alive = None
            # Named after the claimant, so others see who is alive (`reap_dead`).
            named = self._settings() | {"application_name": self._alive_name}
            asked = monotonic()
            connection = await asyncpg.connect(self.url, server_settings=named)
            try:
                # Tried, not waited for: held, it is held by this instance's own earlier
                # session that the server has not let go yet (up to SERVER_GIVES_UP after a
                # cut without a word), and waiting hung delivery unheard.
                lock = claimant_lock(self.claimant)
                if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", lock):
                    raise AliveLockHeld(
                        "this instance's earlier connection still holds its alive lock"
                    )
                await connection.add_listener(self._news_channel, self._heard)
            except BaseException:
                # Kept only once it holds the lock: kept before, a lock that failed (held
                # still, a cancel) left a connection that said alive and held nothing
                # (found by review). Closed at once, and the lock with it if it got it.
                connection.terminate()
                raise
            self._alive, self._alive_since, self._alive_confirmed = connection, asked, asked
            await stop(self._pinging)  # the old connection's, ended by now
            self._pinging = asyncio.create_task(
                keep_pinging(
                    connection, ALIVE_WHAT, answered=self._heard_alive, guard=self._saying_alive
                )
            )

    def _heard_alive(self, sent: float) -> None:
        self._alive_confirmed = max(self._alive_confirmed, sent)

    # Messages queued by many at once ---------------------------------------------------

    def watch_outbox(self, wake: Callable[[], None]) -> None:
        self._watchers.append(wake)

    def _heard(self, *_: object) -> None:
        for wake in self._watchers:
            wake()

    @property
    def _news_channel(self) -> str:
        """What instances on this database (and schema) NOTIFY after queueing many."""
        return f"kitchen-table outbox {self.schema or ''}"[:63]

    async def _after_turns(self, count: int) -> None:
        """`count` turns were just committed: keep their tables' statistics up with their
        growth (see `ANALYZE_TURNS_AFTER`). Not the commit, which stands: a failure here
        is only logged."""
        if not self._turns.add(count):
            return
        self._turns.done()  # before the wait: the turns meanwhile don't ask
        try:
            await self._execute(f"ANALYZE {TURN_TABLES}")
        except Exception as error:
            log.warning("could not analyze the conversations' tables (%s)", error)

    async def _after_queueing(self, count: int) -> None:
        """`count` messages were just queued together (a chunk of a scheduled prompt):
        wake every instance's delivery (one NOTIFY, not one per turn: a notification
        takes a lock every committing transaction would wait for), and keep the outbox's
        statistics up with its growth. Neither is the commit, which stands: a failure
        here is only logged."""
        moment = monotonic()
        if moment - self._last_queued > QUEUEING_ENDS:
            self._queued.restart()
        self._last_queued = moment
        due = self._queued.add(count)
        try:
            async with self.pool.acquire() as connection:
                await connection.execute("SELECT pg_notify($1, '')", self._news_channel)
                if due:
                    self._queued.done()
                    await connection.execute("ANALYZE outbox")
        except Exception as error:  # the commit stands; delivery still looks by itself
            log.warning("could not announce or analyze queued messages (%s)", error)

    @property
    def _alive_name(self) -> str:
        """The application name of the connection that holds this claimant's lock (at
        most 63 bytes, as the server keeps it)."""
        return f"{ALIVE_PREFIX}{self.claimant}"[:63]

    async def reap_dead(self, channel: str) -> int:
        """Give up the leases of claimants whose instance is gone (their lock is free);
        how many messages were freed. Asked now and then by `claim_due`.

        Finding the claimants means reading every leased row of the channel (a scan of
        the outbox: 65 ms a time at 200,000 rows owed, every 2 s per instance during a
        fan-out), so it is done only the first time and when an instance seen alive the
        time before (its named connection) is gone. One that started and died between
        two looks is not seen: its leases run out instead (`LEASE`)."""
        freed = 0
        async with self.pool.acquire() as connection:
            alive = frozenset(
                name
                for (name,) in await connection.fetch(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE starts_with(application_name, $1)",
                    ALIVE_PREFIX,
                )
            )
            seen, self._alive_seen[channel] = self._alive_seen.get(channel), alive
            if seen is not None and seen <= alive:
                return 0  # nobody seen alive before has gone
            holders = await connection.fetch(
                "SELECT DISTINCT claimed_by FROM outbox WHERE channel = $1"
                " AND claimed_by IS NOT NULL AND claimed_by <> $2",
                channel,
                self.claimant,
            )
            for (holder,) in holders:
                lock = claimant_lock(holder)
                session_locking(connection)
                if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", lock):
                    continue  # alive: its leases are its own
                try:
                    status = await connection.execute(
                        "UPDATE outbox SET claimed_until = NULL, claimed_by = NULL"
                        " WHERE claimed_by = $1",
                        holder,
                    )
                    freed += int(status.split()[-1])
                finally:
                    await connection.fetchval("SELECT pg_advisory_unlock($1)", lock)
        return freed

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
            reset=_given_back,
        )
        try:
            async with pool.acquire() as connection:
                versions = await _migrate(connection, self._lock_name, upgrade=upgrade)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        if not upgrade:
            try:
                await self._say_alive()
            except BaseException:
                await self.close()
                raise
        return versions

    def _settings(self) -> dict[str, str]:
        settings = {"application_name": "kitchen-table", **QUIET_CUT}
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
