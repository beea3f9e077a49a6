"""Conversation locks that live in PostgreSQL: one person's messages are handled one at a
time, in order, across every instance on one database.

`PostgresConversationLocks` is the same shape as `bot.conversation.locks.ConversationLocks`
(storage never imports the bot: the protocol is structural). A lock is a session
advisory lock, taken on a connection of the locks' own pool and held for the block;
the connection goes back to its pool in `finally`, whose reset releases every
advisory lock it holds (asyncpg's default reset does), and a connection whose reset
fails is closed, which releases them as surely: a block that raises, or is
cancelled, or a process that dies, never leaves a lock behind.

Ids are 64-bit keyed hashes (BLAKE2b of the namespace and the key; never Python's
`hash`, which differs between processes), so two deployments on one database (a
schema each) do not share locks.

Why a lock pool of its own: a holder keeps its connection while its block runs, and
the block needs the storage's connections to load and commit. On one pool, as many
holders as connections would each wait for a connection none of them gives back.

Holding many keys at once (a chunk of a scheduled prompt's cohort, 10,000 people) is
bounded by PostgreSQL's lock table: with the default settings a server holds some
10,000-15,000 advisory locks in all (measured on PostgreSQL 15: 10,000 in one
session, but not 20,000). So locks are in two levels. Every key belongs to one of
`stripes` stripes; a holder of a few keys takes its stripes shared, then its keys;
a holder of more than `many` keys takes its stripes exclusively and no key at all.
Either way one holder takes at most about `stripes` locks (1,024 by default). The
price: a holder of many keys also holds back the others whose keys share its
stripes (with 10,000 keys, nearly everyone) until its block ends.

Everyone takes stripes before keys, and each in ascending order of id, all in one
statement: two holders can wait for each other only one way round, never deadlock.
An in-process lock per key (`local`, the bot's `KeyedLocks`) sits in front, so the
waiters of one process queue in memory and take at most one connection per key.
Order: those waiting in the database are let in in the order they asked it (its
lock queue), from any instance; those waiting in one instance's memory, in the order
they came there, each joining the database's queue once the one before it in its
instance is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from time import monotonic
from typing import Any, Protocol

from storage.postgres.quiet_cut import QUIET_CUT, SERVER_GIVES_UP, Pingable, ping

STRIPES = 1024
MANY = 512
# A trip of the kept session only tries locks, so it answers at once; one that has not
# answered in this long (seconds) is on a connection cut without a word, which would
# otherwise hang every turn of this instance until the system gave up on it (some
# fifteen minutes). It is ended: its locks' holders write nothing (`Held.check`), and
# the server lets go of the locks within SERVER_GIVES_UP.
TRIP_TIMEOUT = 10.0
# How long after the server last heard from its locks' connection a holder may write
# without asking again (seconds): the server gives a connection cut without a word up no
# sooner than SERVER_GIVES_UP after that, and nothing tells this side. A turn takes
# milliseconds; one that took longer (a big gathering's summary) asks its connection
# once more (a round trip) before writing.
HOLD_TRUST = SERVER_GIVES_UP * 2 / 3

# Locks taken in the order given: the shared ones (stripes) first, then the exclusive.
TAKE = (
    "SELECT count((CASE WHEN shared THEN pg_advisory_lock_shared(id)"
    " ELSE pg_advisory_lock(id) END)::text)"
    " FROM unnest($1::bigint[], $2::boolean[]) AS wanted (id, shared)"
)
# On the kept session: give back ($1, $2), then try to take ($3, $4), in order, each
# lock's answer in the second column.
TRY = (
    "SELECT (SELECT count((CASE WHEN shared THEN pg_advisory_unlock_shared(id)"
    " ELSE pg_advisory_unlock(id) END)::text)"
    " FROM unnest($1::bigint[], $2::boolean[]) AS given (id, shared)),"
    " ARRAY(SELECT CASE WHEN shared THEN pg_try_advisory_lock_shared(id)"
    " ELSE pg_try_advisory_lock(id) END"
    " FROM unnest($3::bigint[], $4::boolean[]) WITH ORDINALITY AS wanted (id, shared, n)"
    " ORDER BY n)"
)


class LockLost(ConnectionError):
    """The connection holding a conversation's locks was lost while its holder ran (the
    server restarted, or ended that session): another instance may be in the
    conversation now, so the holder writes nothing and is told to try again later (a
    storage failure: a webhook answers 503, and the platform sends the update again)."""


class Connection(Pingable, Protocol):
    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetchrow(self, query: str, *args: Any) -> Any: ...


class Pool(Protocol):
    """What this needs of an asyncpg pool: a connection for a while, or to keep."""

    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...


class LocalLocks(Protocol):
    """An in-process lock per key, in front of the database's."""

    def hold(self, key: str) -> AbstractAsyncContextManager[object]: ...

    def hold_many(self, keys: Iterable[str]) -> AbstractAsyncContextManager[object]: ...


class Held:
    """Locks as their holder has them: `check` before writing (see `LockLost`). A
    connection the server ended is seen closed as soon as the event loop has read that;
    one cut without a word is not seen at all, so the locks are trusted for HOLD_TRUST
    after the server last heard from their connection (when it took them, or answered
    `confirm`). What is left is the moment between the check and the commit's trip."""

    def __init__(
        self, still: Callable[[], bool], confirm: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        self._still = still  # whether the connection that took them still has them
        self._confirm = confirm  # a round trip on it: whether it answered (None: no need)
        self._heard = monotonic()  # when it was last asked something it answered

    async def check(self) -> None:
        if not self._still():
            raise LockLost("the connection holding this conversation's lock was lost")
        if self._confirm is None or monotonic() - self._heard < HOLD_TRUST:
            return
        asked = monotonic()
        if not await self._confirm() or not self._still():
            raise LockLost("the connection holding this conversation's lock did not answer")
        self._heard = asked


def still_open(connection: Connection) -> bool:
    """Whether a connection is still open, as far as its side knows."""
    try:
        return not connection.is_closed()
    except Exception:
        # A pool's connection that the server ended is taken back by its pool at once,
        # and asyncpg then refuses any call on it, this one too.
        return False


def lock_id(namespace: str, *parts: str) -> int:
    """A signed 64-bit id for an advisory lock, the same in every process."""
    text = "\x00".join((namespace, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


Locks = tuple[list[int], list[bool]]  # ids, and whether each is taken shared


class Session:
    """One connection, kept, on which this instance takes the locks nobody else holds:
    the takes and releases asked for while a trip is out go together as the next trip,
    one statement (`TRY`), so a turn costs no connection of its own and no round trip
    of its own. Only tries: a holder whose locks someone else holds (another instance)
    is told so and waits on a connection of its own, in the database's queue (a try
    also fails while another session waits for the lock, so it never goes ahead of
    that queue).

    The session's locks are all this process's: two of its holders never exclude each
    other there (a session's advisory locks are re-entrant), which is right, since the
    in-process locks in front already do. If the connection fails, the server has
    dropped its locks; the holders that had them find so when they `check` before
    writing (and write nothing), and the next trip opens another connection.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._kept: AbstractAsyncContextManager[Connection] | None = None
        self._connection: Connection | None = None
        self.generation = 0  # which connection: a release for a dropped one is moot
        self._takes: list[tuple[Locks, asyncio.Future[int | None]]] = []
        self._releases: list[tuple[int, Locks, asyncio.Future[None] | None]] = []
        self._trip: asyncio.Task[None] | None = None

    def take(self, wanted: Locks) -> asyncio.Future[int | None]:
        """Try to take them all: the session's generation, or None (someone else holds
        one, or the database failed; none of them is then held here)."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._takes.append((wanted, future))
        self._go()
        return future

    def held_on(self, generation: int) -> Held:
        """What a holder of locks `take` took in `generation` checks before writing: a
        failed trip gave that connection back (its locks went with it), and a connection
        the server ended is seen closed before any trip."""

        def still() -> bool:
            kept = self._connection
            return generation == self.generation and kept is not None and still_open(kept)

        async def confirm() -> bool:
            # A trip that takes nothing: answered on this connection, its locks are held.
            return await self.take(([], [])) == generation

        return Held(still, confirm)

    def release(self, generation: int, held: Locks) -> asyncio.Future[None]:
        """Give back what `take` took. Asked for at once, so a holder cancelled while it
        waits for the answer still gives them back."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._releases.append((generation, held, future))
        self._go()
        return future

    def _go(self) -> None:
        if self._trip is None or self._trip.done():
            self._trip = asyncio.create_task(self._trips())

    async def _trips(self) -> None:
        while self._takes or self._releases:
            takes, self._takes = self._takes, []
            releases = []
            for release in self._releases:
                if release[0] == self.generation:
                    releases.append(release)
                elif release[2] is not None and not release[2].done():
                    release[2].set_result(None)  # a dropped connection's are gone already
            self._releases = []
            try:
                taken = await self._trip_once(takes, releases)
            except Exception:
                await self._drop(failed=True)
                for _, future in takes:
                    if not future.done():
                        future.set_result(None)
                # The server dropped these with the connection: their holders were left
                # waiting for ever, and their turn's in-process lock with them (found by
                # review).
                for _, _, done in releases:
                    if done is not None and not done.done():
                        done.set_result(None)
                continue
            position = 0
            for (ids, shared), future in takes:
                got = taken[position : position + len(ids)]
                position += len(ids)
                if all(got) and not future.done():
                    future.set_result(self.generation)
                    continue
                if not future.done():
                    future.set_result(None)
                # Some held by someone else (or its taker gave up): give back what was.
                back = [(i, s) for i, s, ok in zip(ids, shared, got, strict=True) if ok]
                if back:
                    self._releases.append(
                        (self.generation, ([i for i, _ in back], [s for _, s in back]), None)
                    )

    async def _trip_once(
        self,
        takes: list[tuple[Locks, asyncio.Future[int | None]]],
        releases: list[tuple[int, Locks, asyncio.Future[None] | None]],
    ) -> list[bool]:
        if self._connection is None:
            self._kept = self._pool.acquire()
            self._connection = await self._kept.__aenter__()
        async with asyncio.timeout(TRIP_TIMEOUT):
            row = await self._connection.fetchrow(
                TRY,
                [i for _, (ids, _), _ in releases for i in ids],
                [s for _, (_, shared), _ in releases for s in shared],
                [i for (ids, _), _ in takes for i in ids],
                [s for (_, shared), _ in takes for s in shared],
            )
        for _, _, done in releases:
            if done is not None and not done.done():
                done.set_result(None)
        return list(row[1])

    async def _drop(self, *, failed: bool = False) -> None:
        """Give the connection back to its pool; a failed one is ended first, so that the
        server lets go of its locks (one whose trip timed out may still have them)."""
        kept, connection = self._kept, self._connection
        self._kept, self._connection = None, None
        self.generation += 1
        if failed and connection is not None:
            with contextlib.suppress(Exception):
                connection.terminate()
        if kept is not None:
            with contextlib.suppress(Exception):
                await kept.__aexit__(None, None, None)

    async def close(self) -> None:
        if self._trip is not None:
            with contextlib.suppress(Exception):
                await self._trip
        await self._drop()


class PostgresConversationLocks:
    """Conversation locks held in the database (see the module's docstring)."""

    def __init__(
        self,
        pool: Pool,
        *,
        namespace: str = "kitchen-table",
        local: LocalLocks | None = None,
        stripes: int = STRIPES,
        many: int = MANY,
        keep_session: bool = False,
    ) -> None:
        self._pool = pool
        self._namespace = namespace
        self._local = local
        self._many = many
        self._stripe_ids = [lock_id(namespace, "stripe", str(n)) for n in range(stripes)]
        self._owned: Any = None  # the pool `open` made, closed by `close`
        # Keeps one of the pool's connections until `close` (see `Session`).
        self._session = Session(pool) if keep_session else None

    @classmethod
    async def open(
        cls, url: str, *, size: int, namespace: str, local: LocalLocks | None = None
    ) -> PostgresConversationLocks:
        """Locks on a pool of their own (`size` connections: one kept for the locks
        nobody else holds, the others for waiting on those another instance holds;
        more waiters wait for a connection, in memory). `close` closes it."""
        import asyncpg

        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max(2, size),
            server_settings={"application_name": "kitchen-table locks", **QUIET_CUT},
        )  # fmt: skip
        locks = cls(pool, namespace=namespace, local=local, keep_session=True)
        locks._owned = pool
        return locks

    @property
    def pool(self) -> Pool:
        """The locks' pool (named leases may share it: each takes one connection)."""
        return self._pool

    async def close(self) -> None:
        """Give back the kept connection, and close the pool `open` made (a pool given to
        the constructor is the giver's)."""
        if self._session is not None:
            await self._session.close()
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.close()

    def _key_id(self, key: str) -> int:
        return lock_id(self._namespace, "conversation", key)

    def _stripe(self, key_id: int) -> int:
        return self._stripe_ids[key_id % len(self._stripe_ids)]

    def _plan(self, keys: set[str]) -> Locks:
        """Which locks to take for these keys, in the order to take them."""
        ids = {self._key_id(key) for key in keys}
        stripes = sorted({self._stripe(i) for i in ids})
        if len(ids) > self._many:
            return stripes, [False] * len(stripes)
        return stripes + sorted(ids), [True] * len(stripes) + [False] * len(ids)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[Held]:
        """Hold one conversation's lock for the block."""
        local = self._local.hold(key) if self._local is not None else nullcontext()
        async with local, self._held(self._plan({key})) as held:
            yield held

    @asynccontextmanager
    async def hold_many(self, keys: Iterable[str]) -> AsyncIterator[Held]:
        """Hold several together (a chunk of a cohort), never deadlocking another holder."""
        wanted = set(keys)
        if not wanted:
            yield Held(lambda: True)  # nothing held, nothing to lose
            return
        local = self._local.hold_many(wanted) if self._local is not None else nullcontext()
        async with local, self._held(self._plan(wanted)) as held:
            yield held

    @asynccontextmanager
    async def _held(self, wanted: Locks) -> AsyncIterator[Held]:
        """The database's locks for the block: on the kept session if nobody else holds
        them, else on a connection of their own, waiting in the database's queue."""
        if self._session is not None:
            asked = self._session.take(wanted)
            try:
                generation = await asked
            except asyncio.CancelledError:
                # Cancelled (a webhook's deadline) after the trip took them but before this
                # resumed: they were kept for the life of the connection (found by review).
                took = asked.result() if asked.done() and not asked.cancelled() else None
                if took is not None:
                    self._session.release(took, wanted)
                raise
            if generation is not None:
                try:
                    yield self._session.held_on(generation)
                finally:
                    await self._session.release(generation, wanted)
                return
        # A connection's reset, when it goes back to the pool, releases every advisory
        # lock it holds (asyncpg's default reset does); one whose reset fails is closed.
        async with self._pool.acquire() as connection:
            await connection.execute(TAKE, *wanted)

            async def confirm() -> bool:
                return await ping(connection, "holding a conversation's lock")

            yield Held(lambda: still_open(connection), confirm)
