"""Messages queued in bulk on PostgreSQL, with several instances: the others' delivery hears
of them at once, and the outbox's statistics keep up, so claiming stays quick on a
server whose autovacuum is off (as CI's is) or not round yet."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.postgres import PostgresStorage
from storage.rows import Commit, OutboxRow, ParticipantRow
from tests.storage_suite import drop_schemas, postgres_store

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two instances' stores on one database (one schema)."""
    stores = [postgres_store(tmp_path / "shared.db"), postgres_store(tmp_path / "shared.db")]
    try:
        for store in stores:
            await store.open()
        yield stores[0], stores[1]
    finally:
        for store in stores:
            await store.close()
        await drop_schemas()


def prompts(start: int, count: int) -> list[Commit]:
    """A chunk of a scheduled prompt, as the fan-out writes it: a message owed to each."""
    return [
        Commit(
            inbound_key=f"prompt-{n}",
            participant=ParticipantRow(f"{n:032x}", "telegram", b"sealed", "es"),
            outbox=[OutboxRow("telegram", f"{n:032x}", b"sealed", '{"text": "hi"}', NOW)],
        )
        for n in range(start, start + count)
    ]


async def test_a_prompt_queued_by_one_instance_wakes_the_others_delivery(two):
    queueing, idle = two
    woken = asyncio.Event()
    idle.watch_outbox(woken.set)
    assert all(await queueing.commit_many(prompts(0, 20)))
    await asyncio.wait_for(woken.wait(), 10)  # not at its next look, a minute later


async def test_queueing_many_keeps_the_outboxs_statistics_up(two):
    queueing, looking = two

    async def rows_known() -> float:
        async with looking.pool.acquire() as connection:
            found = await connection.fetchval(
                "SELECT reltuples FROM pg_class WHERE oid = 'outbox'::regclass"
            )
            return float(found)

    assert await rows_known() < 1  # never analyzed: the planner knows nothing
    for start in range(0, 6_000, 1_000):
        assert all(await queueing.commit_many(prompts(start, 1_000)))
    assert await rows_known() >= 5_000


async def test_turns_keep_their_tables_statistics_up(tmp_path: Path):
    """A prepared statement's plan made while the tables were empty read them whole at
    every turn (2.3 ms a conversation read at 5,000 messages): an instance analyzes the
    tables turns read after its first turns and at each doubling."""
    store = PostgresStorage(
        postgres_store(tmp_path / "turns.db").url, pool_size=4,
        schema=postgres_store(tmp_path / "turns.db").schema, analyze_turns_after=30,
    )  # fmt: skip
    await store.open()
    try:

        async def rows_known() -> float:
            async with store.pool.acquire() as connection:
                found = await connection.fetchval(
                    "SELECT reltuples FROM pg_class WHERE oid = 'participants'::regclass"
                )
                return float(found)

        async def turns(start: int, count: int) -> None:
            written = await asyncio.gather(*(store.commit(c) for c in prompts(start, count)))
            assert all(written)

        await turns(0, 20)
        assert await rows_known() < 1  # never analyzed
        await turns(20, 20)
        first = await rows_known()
        assert 30 <= first <= 40  # analyzed at the 30th turn, and next at twice that
        await turns(40, 10)
        assert await rows_known() == first
        await turns(50, 10)
        assert await rows_known() == 60
    finally:
        await store.close()
        await drop_schemas()


async def one_claimed_by(holder: PostgresStorage, seen_alive_by: PostgresStorage) -> None:
    """Both open; a message queued and claimed by `holder`, which the other sees alive."""
    await seen_alive_by.open()
    await holder.open()
    assert all(await holder.commit_many(prompts(0, 1)))
    assert len(await holder.claim_due("telegram", NOW, 10)) == 1
    assert await seen_alive_by.reap_dead("telegram") == 0  # its holder is alive


async def test_a_dead_instance_restarted_under_the_same_long_name_is_seen_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A container restarted with the same host name (a long one) and process id: the
    dead instance's messages are freed at the next look, not when its leases run out."""
    shared = tmp_path / "shared.db"
    survivor = postgres_store(shared)
    with monkeypatch.context() as same:
        same.setattr(
            socket, "gethostname", lambda: "kitchen-table-bot-7d9f8c6b5-x2x4q.prod.example"
        )
        same.setattr(os, "getpid", lambda: 1)
        dying, reborn = postgres_store(shared), postgres_store(shared)
    try:
        await one_claimed_by(dying, seen_alive_by=survivor)
        await dying.close()
        await reborn.open()
        assert await survivor.reap_dead("telegram") == 1
    finally:
        for store in (survivor, dying, reborn):
            await store.close()
        await drop_schemas()


async def test_a_dead_instances_messages_are_taken_over_when_it_is_seen_gone(tmp_path: Path):
    """Another instance frees a dead one's leases at its next look, without waiting the
    lease out, and without reading the whole outbox when nobody it saw alive is gone:
    one that started and died between its looks is left to its leases' end."""
    shared = tmp_path / "shared.db"
    survivor, dying, brief = (postgres_store(shared) for _ in range(3))
    try:
        await one_claimed_by(dying, seen_alive_by=survivor)
        assert await survivor.claim_due("telegram", NOW, 10) == []
        await dying.close()  # its process dies: its connections and its lock go
        assert await survivor.reap_dead("telegram") == 1
        assert len(await survivor.claim_due("telegram", NOW, 10)) == 1
        # One that starts after that look and dies before the next: not seen, not read for.
        await brief.open()
        assert all(await brief.commit_many(prompts(1, 1)))
        assert len(await brief.claim_due("telegram", NOW, 10)) == 1
        await brief.close()
        assert await survivor.reap_dead("telegram") == 0
    finally:
        for store in (survivor, dying, brief):
            await store.close()
        await drop_schemas()
