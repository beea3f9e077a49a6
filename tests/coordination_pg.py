"""A fresh PostgreSQL schema with the coordination tables, and pools on it as separate
instances would have them, for the tests of locks, leases and shared send limits.

PostgreSQL is the storage suite's (KT_TEST_DATABASE_URL): where it can't be reached
the tests are skipped, saying why, or fail where KT_REQUIRE_POSTGRES=1 says it must be
there (tests/storage_suite.py's `need`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from storage.postgres.coordination_schema import COORDINATION_SCHEMA, RESERVE_MANY
from tests.storage_suite import DATABASE_URL, need


@asynccontextmanager
async def fresh_schema(pools: int = 2, size: int = 4) -> AsyncIterator[tuple[str, list[Any]]]:
    """(schema, pools): a new schema with COORDINATION_SCHEMA applied, and `pools` pools
    whose connections have it as their search path; all dropped afterwards."""
    await need("postgres")
    admin = await asyncpg.connect(DATABASE_URL)
    schema = f"coord_{secrets.token_hex(6)}"
    made: list[Any] = []
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        await admin.execute(f"SET search_path TO {schema}")
        await admin.execute(COORDINATION_SCHEMA)
        await admin.execute(RESERVE_MANY)
        for _ in range(pools):
            made.append(
                await asyncpg.create_pool(
                    DATABASE_URL, min_size=1, max_size=size, server_settings={"search_path": schema}
                )
            )
        yield schema, made
    finally:
        for pool in made:
            try:  # a test that failed may have left a block holding a connection
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
