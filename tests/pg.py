"""Whole PostgreSQL databases for tests that run `kitchen-table` processes on one (a
schema is enough for a store in this process: tests/storage_suite.py).

Each test gets a database of its own, made empty and dropped after the run; it is
skipped where PostgreSQL can't be reached, or fails if KT_REQUIRE_POSTGRES=1 says it
must be there (`need`).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.storage_suite import DATABASE_URL, need

# Databases made in this run, dropped at its end (`drop_databases`).
MADE: list[str] = []


def url_of(database: str) -> str:
    parts = urlsplit(DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def fresh_database() -> str:
    """The URL of a new, empty database (skips or fails the test without PostgreSQL)."""
    await need("postgres")
    name = f"kt_test_{secrets.token_hex(6)}"
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    MADE.append(name)
    return url_of(name)


async def drop_databases() -> None:
    """Drop every database made so far, whoever is still connected to it."""
    if not MADE:
        return
    names, MADE[:] = list(MADE), []
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        for name in names:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
