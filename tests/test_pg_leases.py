"""Named leases in PostgreSQL (only one instance may poll Telegram): one holder at a time,
free again once released or once the holder's connection is gone, which it hears."""

from __future__ import annotations

import asyncio

import pytest

from storage.postgres.leases import PostgresLeases
from storage.postgres.locks import lock_id
from tests.coordination_pg import fresh_schema

pytestmark = pytest.mark.postgres


async def test_only_one_instance_holds_a_lease_until_it_lets_go():
    async with fresh_schema(pools=2) as (schema, (first_pool, second_pool)):
        first = PostgresLeases(first_pool, namespace=schema)
        second = PostgresLeases(second_pool, namespace=schema)
        polling = await first.try_hold("telegram-polling")
        assert polling is not None
        assert await second.try_hold("telegram-polling") is None  # told at once
        assert await first.try_hold("telegram-polling") is None  # the same process too
        other = await second.try_hold("something-else")
        assert other is not None
        await polling.release()
        await polling.release()  # twice is harmless
        again = await second.try_hold("telegram-polling")
        assert again is not None
        await again.release()
        await other.release()


async def test_a_holder_whose_connection_dies_loses_the_lease_and_hears_it():
    async with fresh_schema(pools=3) as (schema, (first_pool, second_pool, admin)):
        first = PostgresLeases(first_pool, namespace=schema)
        second = PostgresLeases(second_pool, namespace=schema)
        polling = await first.try_hold("telegram-polling")
        assert polling is not None
        # The process dies, or the network breaks: its session ends.
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
            " AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = $1",
            lock_id(schema, "lease", "telegram-polling"),
            timeout=10,
        )
        assert killed == 1
        await asyncio.wait_for(polling.lost.wait(), 10)
        taken = None
        for _ in range(100):  # the server ends the session as soon as it sees the signal
            taken = await second.try_hold("telegram-polling")
            if taken is not None:
                break
            await asyncio.sleep(0.02)
        assert taken is not None
        await taken.release()
        await polling.release()  # after the loss: nothing to do, no error


async def test_a_holder_cut_off_without_a_word_hears_it_lost_the_lease(monkeypatch):
    """The network forgets the polling instance's connection without a word: nothing
    told it (the server, now told to give a silent client up within 30 seconds, would
    let another instance poll too). Its connection is pinged, ended when it does not
    answer, and the holder hears the lease is lost (found while reading what a silent
    cut does)."""
    import asyncpg

    from storage.postgres import quiet_cut
    from tests.pg_relay import Relay
    from tests.storage_suite import DATABASE_URL

    monkeypatch.setattr(quiet_cut, "PING_EVERY", 0.05)
    monkeypatch.setattr(quiet_cut, "PING_TIMEOUT", 0.2)
    async with fresh_schema(pools=0) as (schema, _):
        relay = await Relay(DATABASE_URL).start()
        pool = await asyncpg.create_pool(relay.url, min_size=1, max_size=2)
        try:
            polling = await PostgresLeases(pool, namespace=schema).try_hold("telegram-polling")
            assert polling is not None
            relay.go_silent()
            await asyncio.wait_for(polling.lost.wait(), 10)
            await polling.release()
        finally:
            await relay.cut()
            pool.terminate()


async def test_two_deployments_on_one_database_hold_their_own_leases():
    async with fresh_schema(pools=2) as (_, (first_pool, second_pool)):
        ours = await PostgresLeases(first_pool, namespace="ours").try_hold("telegram-polling")
        theirs = await PostgresLeases(second_pool, namespace="theirs").try_hold("telegram-polling")
        assert ours is not None and theirs is not None
        await ours.release()
        await theirs.release()
