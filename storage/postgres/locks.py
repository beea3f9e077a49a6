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

import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Protocol

STRIPES = 1024
MANY = 512

# Locks taken in the order given: the shared ones (stripes) first, then the exclusive.
TAKE = (
    "SELECT count((CASE WHEN shared THEN pg_advisory_lock_shared(id)"
    " ELSE pg_advisory_lock(id) END)::text)"
    " FROM unnest($1::bigint[], $2::boolean[]) AS wanted (id, shared)"
)


class Connection(Protocol):
    async def execute(self, query: str, *args: Any) -> str: ...


class Pool(Protocol):
    """What this needs of an asyncpg pool: a connection for a while."""

    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...


class LocalLocks(Protocol):
    """An in-process lock per key, in front of the database's."""

    def hold(self, key: str) -> AbstractAsyncContextManager[None]: ...

    def hold_many(self, keys: Iterable[str]) -> AbstractAsyncContextManager[None]: ...


def lock_id(namespace: str, *parts: str) -> int:
    """A signed 64-bit id for an advisory lock, the same in every process."""
    text = "\x00".join((namespace, *parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


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
    ) -> None:
        self._pool = pool
        self._namespace = namespace
        self._local = local
        self._many = many
        self._stripe_ids = [lock_id(namespace, "stripe", str(n)) for n in range(stripes)]
        self._owned: Any = None  # the pool `open` made, closed by `close`

    @classmethod
    async def open(
        cls, url: str, *, size: int, namespace: str, local: LocalLocks | None = None
    ) -> PostgresConversationLocks:
        """Locks on a pool of their own (`size` connections: as many conversations at once
        in this process; more wait for a connection, in memory). `close` closes it."""
        import asyncpg

        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=size,
            server_settings={"application_name": "kitchen-table locks"},
        )  # fmt: skip
        locks = cls(pool, namespace=namespace, local=local)
        locks._owned = pool
        return locks

    @property
    def pool(self) -> Pool:
        """The locks' pool (named leases may share it: each takes one connection)."""
        return self._pool

    async def close(self) -> None:
        """Close the pool `open` made (a pool given to the constructor is the giver's)."""
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.close()

    def _key_id(self, key: str) -> int:
        return lock_id(self._namespace, "conversation", key)

    def _stripe(self, key_id: int) -> int:
        return self._stripe_ids[key_id % len(self._stripe_ids)]

    def _plan(self, keys: set[str]) -> tuple[list[int], list[bool]]:
        """Which locks to take for these keys, in the order to take them."""
        ids = {self._key_id(key) for key in keys}
        stripes = sorted({self._stripe(i) for i in ids})
        if len(ids) > self._many:
            return stripes, [False] * len(stripes)
        return stripes + sorted(ids), [True] * len(stripes) + [False] * len(ids)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold one conversation's lock for the block."""
        ids, shared = self._plan({key})
        local = self._local.hold(key) if self._local is not None else nullcontext()
        async with local, self._pool.acquire() as connection:
            await connection.execute(TAKE, ids, shared)
            yield

    @asynccontextmanager
    async def hold_many(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold several together (a chunk of a cohort), never deadlocking another holder."""
        wanted = set(keys)
        if not wanted:
            yield
            return
        ids, shared = self._plan(wanted)
        local = self._local.hold_many(wanted) if self._local is not None else nullcontext()
        async with local, self._pool.acquire() as connection:
            await connection.execute(TAKE, ids, shared)
            yield
