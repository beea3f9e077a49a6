"""Named leases: something only one process on the database may do at a time.

Telegram gives a bot's updates by long polling to one caller only; two instances
polling would take updates from each other. The instance that polls holds the
lease "telegram-polling"; another asking for it is told no at once, and can say so.

A lease is a session advisory lock on a connection kept for the holder's life. If
the holder's process dies, or its connection is cut, PostgreSQL ends the session
and the lease is free at once: no expiry to wait for, no row to clean up. A holder
hears that it lost its connection (and with it the lease) through `lost`. A
connection cut without a word tells neither end: it is pinged, and ended when it
does not answer, well before the server gives it up (storage/postgres/quiet_cut.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any, Protocol

from storage.postgres.locks import lock_id
from storage.postgres.quiet_cut import Pingable, keep_pinging, stop


class Connection(Pingable, Protocol):
    def add_termination_listener(self, callback: Any) -> None: ...

    def remove_termination_listener(self, callback: Any) -> None: ...


class Pool(Protocol):
    """What this needs of an asyncpg pool: a connection for as long as a lease is held."""

    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...


class Lease:
    """A lease held: release it (or let the process end) to let another take it."""

    def __init__(self, name: str, connection: Connection, kept: AsyncExitStack) -> None:
        self.name = name
        # Set when the connection that holds the lease is gone (the database restarted,
        # the network broke): the lease may be someone else's now.
        self.lost = asyncio.Event()
        self._connection: Connection | None = connection
        self._kept = kept
        connection.add_termination_listener(self._on_lost)
        self._pinging = asyncio.create_task(self._ping(connection))

    def _on_lost(self, *_: object) -> None:
        self.lost.set()

    async def _ping(self, connection: Connection) -> None:
        await keep_pinging(connection, f"holding the lease {self.name}")
        if connection.is_closed():
            self.lost.set()  # ended for silence (its listener may have gone with it)

    async def release(self) -> None:
        """Give the lease up (the connection's reset releases its advisory locks)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        await stop(self._pinging)
        if not self.lost.is_set():
            # A connection that is gone took its listeners with it (and its pool already
            # has it back), which asyncpg reports as an error here: nothing to undo.
            with contextlib.suppress(Exception):
                connection.remove_termination_listener(self._on_lost)
        await self._kept.aclose()


class PostgresLeases:
    """Named leases on one database, in `namespace` (the deployment's schema)."""

    def __init__(self, pool: Pool, *, namespace: str = "kitchen-table") -> None:
        self._pool = pool
        self._namespace = namespace

    async def try_hold(self, name: str) -> Lease | None:
        """Take the lease `name` if nobody holds it; None, at once, if somebody does."""
        kept = AsyncExitStack()
        try:
            connection = await kept.enter_async_context(self._pool.acquire())
            held = await connection.fetchval(
                "SELECT pg_try_advisory_lock($1)", lock_id(self._namespace, "lease", name)
            )
        except BaseException:
            await kept.aclose()
            raise
        if not held:
            await kept.aclose()
            return None
        return Lease(name, connection, kept)
