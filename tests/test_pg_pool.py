"""The storage's pool on PostgreSQL gives connections back without asyncpg's full reset
(a second round trip after every query): what that reset was for still holds where the
storage needs it. A transaction left open is rolled back, and a connection that took a
session lock (reaping a dead instance's leases, clearing erasures) lets go of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage.postgres.connection import session_locking
from tests.storage_suite import drop_schemas, postgres_store

pytestmark = pytest.mark.postgres

LOCK = 7_020_020


async def test_a_connection_given_back_keeps_no_lock_and_no_transaction(tmp_path: Path):
    store = postgres_store(tmp_path / "pool.db")
    await store.open()
    try:
        started = asyncio.Event()

        async def cut_short() -> None:
            async with store.pool.acquire() as connection:
                session_locking(connection)
                await connection.execute("SELECT pg_advisory_lock($1)", LOCK)
                transaction = connection.transaction()
                await transaction.start()
                await connection.execute("CREATE TABLE half_made (n int)")
                started.set()
                await asyncio.Event().wait()  # cancelled here: no unlock, no commit

        task = asyncio.create_task(cut_short())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with store.pool.acquire() as first, store.pool.acquire() as second:
            for connection in (first, second):  # whichever one it was, it is clean
                assert await connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK)
                assert await connection.fetchval("SELECT to_regclass('half_made')") is None
                await connection.execute("SELECT pg_advisory_unlock_all()")
    finally:
        await store.close()
        await drop_schemas()
