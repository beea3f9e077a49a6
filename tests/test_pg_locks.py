"""Conversation locks in PostgreSQL, held by two instances (two pools) on one database:
one's block keeps the other out, waiters go in the order they came, a block that fails
or is cancelled gives the lock back, and a whole cohort's chunk fits in the lock table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.conversation.locks import KeyedLocks
from storage.postgres.locks import PostgresConversationLocks, lock_id, still_open
from tests.coordination_pg import fresh_schema
from tests.storage_suite import DATABASE_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two() -> AsyncIterator[tuple[PostgresConversationLocks, PostgresConversationLocks, Any]]:
    """Two instances' locks, each on its own pool and keeping a connection of it as the
    bot's do, and a third pool to look with."""
    async with fresh_schema(pools=3) as (schema, (first, second, looking)):
        made = [
            PostgresConversationLocks(pool, namespace=schema, local=KeyedLocks(), keep_session=True)
            for pool in (first, second)
        ]
        try:
            yield made[0], made[1], looking
        finally:
            for locks in made:
                await locks.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for something the database will show soon (no timing is asserted)."""
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def waiting_for(looking: Any, locks: PostgresConversationLocks, key: str, count: int = 1):
    """A check: are `count` sessions waiting for `key`'s lock?"""
    ident = lock_id(locks._namespace, "conversation", key)

    async def check() -> bool:
        waiting = await looking.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            (ident >> 32) & 0xFFFFFFFF,
            ident & 0xFFFFFFFF,
        )
        return bool(waiting == count)

    return check


async def advisory_locks_held(looking: Any) -> set[int]:
    """The ids of every advisory lock granted (as 64-bit ids) on the server."""
    rows = await looking.fetch(
        "SELECT classid::bigint AS high, objid::bigint AS low FROM pg_locks"
        " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
    )
    return {
        int.from_bytes(((r["high"] << 32) | r["low"]).to_bytes(8, "big"), "big", signed=True)
        for r in rows
    }


def our_ids(locks: PostgresConversationLocks, keys: list[str]) -> set[int]:
    """Every lock id these keys could be held by: their own, and every stripe."""
    ids = {lock_id(locks._namespace, "conversation", key) for key in keys}
    return ids | set(locks._stripe_ids)


async def test_one_instances_block_keeps_the_others_out_until_it_ends(two):
    first, second, looking = two
    seen: list[str] = []
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def holding() -> None:
        async with first.hold("ana"):
            seen.append("first in")
            inside.set()
            await leave.wait()
            seen.append("first out")

    async def waiting() -> None:
        async with second.hold("ana"):
            seen.append("second in")

    held = asyncio.create_task(holding())
    await inside.wait()
    waiter = asyncio.create_task(waiting())
    await until(waiting_for(looking, second, "ana"), "the second instance waits")
    async with second.hold("ben"):  # someone else's conversation is not held up
        seen.append("ben")
    leave.set()
    await asyncio.gather(held, waiter)
    assert seen == ["first in", "ben", "first out", "second in"]


async def test_waiters_go_in_the_order_they_asked(two):
    """Those waiting in the database are let in in the order they asked it, from any
    instance; those waiting in one instance's memory, in the order they came there.
    (One of them joins the database's queue once the one before it in its instance is
    done: it follows those already waiting there.)"""
    first, second, looking = two
    third = PostgresConversationLocks(looking, namespace=first._namespace, local=KeyedLocks())
    seen: list[str] = []
    leave = asyncio.Event()
    inside = asyncio.Event()

    async def hold(locks: PostgresConversationLocks, name: str) -> None:
        async with locks.hold("ana"):
            seen.append(name)
            if name == "m1":
                inside.set()
                await leave.wait()

    tasks = [asyncio.create_task(hold(first, "m1"))]
    await inside.wait()
    for number, locks in ((2, second), (3, third)):
        tasks.append(asyncio.create_task(hold(locks, f"m{number}")))
        await until(waiting_for(looking, locks, "ana", number - 1), f"m{number} waits")
    # m4 and m5 wait behind m2 in the second instance's memory.
    tasks += [asyncio.create_task(hold(second, "m4")), asyncio.create_task(hold(second, "m5"))]
    await asyncio.sleep(0)
    leave.set()
    await asyncio.gather(*tasks)
    assert seen == ["m1", "m2", "m3", "m4", "m5"]


async def test_a_block_that_fails_or_is_cancelled_gives_the_lock_back(two):
    first, second, looking = two
    with pytest.raises(RuntimeError):
        async with first.hold("ana"):
            raise RuntimeError("a broken turn")
    async with second.hold("ana"):
        pass

    inside = asyncio.Event()

    async def forever() -> None:
        async with first.hold("ana"):
            inside.set()
            await asyncio.Event().wait()

    stuck = asyncio.create_task(forever())
    await inside.wait()
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    async with second.hold("ana"):  # taken at once: nothing was left behind
        pass
    assert not await advisory_locks_held(looking) & our_ids(first, ["ana"])


async def test_a_waiter_cancelled_while_waiting_leaves_nothing_behind(two):
    first, second, looking = two
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def holding() -> None:
        async with first.hold("ana"):
            inside.set()
            await leave.wait()

    async def waiting() -> None:
        async with second.hold("ana"):
            raise AssertionError("a cancelled waiter must never get in")

    held = asyncio.create_task(holding())
    await inside.wait()
    waiter = asyncio.create_task(waiting())
    await until(waiting_for(looking, second, "ana"), "the second instance waits")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await until(waiting_for(looking, second, "ana", 0), "the cancelled wait is gone")
    leave.set()
    await held
    async with first.hold("ana"):  # not held by a ghost of the cancelled waiter
        pass
    async with second.hold("ana"):
        pass
    assert not await advisory_locks_held(looking) & our_ids(first, ["ana"])


async def test_several_keys_at_once_in_any_order_never_deadlock(two):
    first, second, _ = two
    people = [f"p{n}" for n in range(40)]
    done: list[str] = []

    async def chunk(locks: PostgresConversationLocks, keys: list[str], name: str) -> None:
        for _ in range(5):
            async with locks.hold_many(keys):
                await asyncio.sleep(0)
        done.append(name)

    async def one_by_one(locks: PostgresConversationLocks, name: str) -> None:
        for person in reversed(people):
            async with locks.hold(person):
                await asyncio.sleep(0)
        done.append(name)

    await asyncio.wait_for(
        asyncio.gather(
            chunk(first, people, "forwards"),
            chunk(second, list(reversed(people)), "backwards"),
            chunk(second, people[10:30], "middle"),
            one_by_one(first, "first alone"),
            one_by_one(second, "second alone"),
        ),
        timeout=60,
    )
    assert sorted(done) == ["backwards", "first alone", "forwards", "middle", "second alone"]


async def test_a_cohorts_chunk_holds_everyone_in_it_with_a_bounded_number_of_locks(two):
    """10,000 keys twice at once is 20,000 advisory locks, more than PostgreSQL's lock
    table holds by default ("out of shared memory"): a chunk takes stripes instead."""
    first, second, looking = two
    chunk = [f"person{n}" for n in range(10_000)]
    inside = asyncio.Event()
    leave = asyncio.Event()
    seen: list[str] = []

    async def big(locks: PostgresConversationLocks, name: str) -> None:
        async with locks.hold_many(chunk):
            seen.append(name)
            if name == "first chunk":
                inside.set()
                await leave.wait()

    async def one(locks: PostgresConversationLocks, key: str) -> None:
        async with locks.hold(key):
            seen.append(key)

    held = asyncio.create_task(big(first, "first chunk"))
    await inside.wait()
    assert 0 < len(await advisory_locks_held(looking) & our_ids(first, chunk)) <= 1024
    third = PostgresConversationLocks(looking, namespace=first._namespace)  # a third instance
    others = [
        asyncio.create_task(big(second, "second chunk")),
        asyncio.create_task(one(third, "person42")),
    ]
    await until(
        lambda: looking.fetchval(
            "SELECT count(*) >= 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        ),
        "both wait for the chunk",
    )
    assert seen == ["first chunk"]
    leave.set()
    await asyncio.gather(held, *others)
    assert sorted(seen[1:]) == ["person42", "second chunk"]


async def test_many_peoples_turns_run_at_once_however_small_the_pool(two):
    """Twenty people's turns inside their blocks together, on an instance whose pool has
    four connections: a conversation nobody else holds takes no connection of its own
    (each taking one, the fifth would wait for the first to end, which waits for all)."""
    first, second, looking = two
    everyone_in = asyncio.Event()
    inside: list[str] = []

    async def turn(key: str) -> None:
        async with first.hold(key):
            inside.append(key)
            if len(inside) == 20:
                everyone_in.set()
            await everyone_in.wait()

    await asyncio.wait_for(asyncio.gather(*(turn(f"p{n}") for n in range(20))), 30)
    async with second.hold("p7"):  # and all of them were given back
        pass
    assert not await advisory_locks_held(looking) & our_ids(first, [f"p{n}" for n in range(20)])


async def test_the_kept_connection_lost_is_replaced_and_its_locks_are_gone(two):
    first, second, looking = two
    async with first.hold("ana"):
        pass
    kept = first._session._connection  # the server ends it, as a restart or a proxy would
    await looking.execute("SELECT pg_terminate_backend($1)", kept.get_server_pid())
    for _ in range(3):  # the first may find the connection gone; then it waits its turn
        async with first.hold("ana"):
            pass
    async with second.hold("ana"):
        pass
    assert not await advisory_locks_held(looking) & our_ids(first, ["ana"])


async def test_a_holder_whose_kept_connection_is_lost_meanwhile_still_gets_out(two):
    """The release rode a trip that failed with the connection: its holder waited for an
    answer for ever, and the person's in-process lock with it (found by review)."""
    first, second, looking = two

    async def turn() -> None:
        async with first.hold("ana"):
            kept = first._session._connection
            await looking.execute("SELECT pg_terminate_backend($1)", kept.get_server_pid())

    await asyncio.wait_for(turn(), 10)
    await asyncio.wait_for(_one_turn(first, "ana"), 10)
    await asyncio.wait_for(_one_turn(second, "ana"), 10)
    assert not await advisory_locks_held(looking) & our_ids(first, ["ana"])


async def test_a_turn_cancelled_just_as_its_locks_are_taken_gives_them_back(two):
    """Cancelled between the trip that took its locks and its own next step (a webhook's
    deadline), a turn kept them on the kept connection: nobody else could ever take
    them (found by review)."""
    first, second, looking = two
    session = first._session
    take = session.take
    turn: asyncio.Task[None] | None = None

    def taken_then_cancelled(wanted: Any) -> asyncio.Future[int | None]:
        asked = take(wanted)
        asked.add_done_callback(lambda _: turn.cancel() if turn else None)  # before it resumes
        return asked

    session.take = taken_then_cancelled  # type: ignore[method-assign]
    turn = asyncio.create_task(_one_turn(first, "ana"))
    with pytest.raises(asyncio.CancelledError):
        await turn
    session.take = take  # type: ignore[method-assign]
    await asyncio.wait_for(_one_turn(second, "ana"), 10)  # not kept by the cancelled turn
    await until(
        lambda: _none_held(looking, first, ["ana"]), "the cancelled turn's locks given back"
    )


async def _one_turn(locks: PostgresConversationLocks, key: str) -> None:
    async with locks.hold(key):
        pass


async def _none_held(looking: Any, locks: PostgresConversationLocks, keys: list[str]) -> bool:
    return not await advisory_locks_held(looking) & our_ids(locks, keys)


async def test_two_deployments_on_one_database_do_not_share_locks():
    async with fresh_schema(pools=2) as (_, (first_pool, second_pool)):
        ours = PostgresConversationLocks(first_pool, namespace="ours")
        theirs = PostgresConversationLocks(second_pool, namespace="theirs")
        async with ours.hold("ana"), theirs.hold("ana"):
            pass  # both at once: different locks


async def test_locks_on_a_pool_of_their_own_open_and_close():
    async with fresh_schema(pools=1) as (schema, (other,)):
        locks = await PostgresConversationLocks.open(
            DATABASE_URL, size=2, namespace=schema, local=KeyedLocks()
        )
        theirs = PostgresConversationLocks(other, namespace=schema)
        try:
            async with locks.hold("ana"):
                held = asyncio.create_task(_enter(theirs, "ana"))
                await until(waiting_for(other, theirs, "ana"), "the other instance waits")
            await asyncio.wait_for(held, 10)
        finally:
            await locks.close()
        await locks.close()  # twice is harmless


async def test_a_long_turn_asks_its_kept_connection_before_it_writes(two, monkeypatch):
    """Past HOLD_TRUST, a holder on the kept session confirms with a trip that takes
    nothing; a trip that finds the connection gone says the lock was lost."""
    from storage.postgres import locks as module
    from storage.postgres.locks import LockLost

    first, _, looking = two
    real = module.monotonic
    async with first.hold("ana") as held:
        monkeypatch.setattr(module, "monotonic", lambda: real() + module.HOLD_TRUST)
        await held.check()  # answered: still ana's turn's lock
        kept = first._session._connection
        await looking.execute("SELECT pg_terminate_backend($1)", kept.get_server_pid())
        monkeypatch.setattr(module, "monotonic", lambda: real() + 2 * module.HOLD_TRUST)
        with pytest.raises(LockLost):
            await held.check()
    monkeypatch.setattr(module, "monotonic", real)


async def test_a_kept_connection_cut_without_a_word_holds_up_no_turn_for_long(monkeypatch):
    """The network forgets the locks' kept connection without a word (a NAT's idle
    timeout). Every turn's trip on it hung until the system gave up, some fifteen
    minutes: the whole instance stood still. Now a trip that does not answer ends it; the
    turns that held locks on it are told so before they write; the next turn goes on; a
    turn that ran long asks its connection before writing; and the server, told to give
    up on a quiet client within 30 seconds, lets another instance have the lock the cut
    one held (found while reading what a silent cut does)."""
    from storage.postgres import locks as module
    from storage.postgres import quiet_cut
    from storage.postgres.locks import LockLost
    from tests.pg_relay import Relay

    async with fresh_schema(pools=1) as (schema, (other,)):
        relay = await Relay(DATABASE_URL).start()
        cut_off = await PostgresConversationLocks.open(
            relay.url, size=3, namespace=schema, local=KeyedLocks()
        )
        theirs = PostgresConversationLocks(other, namespace=schema)
        try:
            async with cut_off.hold("ana") as held:
                kept = cut_off._session._connection
                # Asked of the server for every connection: give up on a silent client soon.
                assert await kept.fetchval("SHOW tcp_keepalives_idle") == "10"
                relay.go_silent()
                monkeypatch.setattr(module, "TRIP_TIMEOUT", 0.2)
                monkeypatch.setattr(quiet_cut, "PING_TIMEOUT", 0.2)
                async with asyncio.timeout(10), cut_off.hold("ben") as ben:  # not held up
                    await ben.check()
                    # A turn that took longer than HOLD_TRUST asks its connection again
                    # before it writes: answered, it writes (a big gathering's summary
                    # is not refused for its length)...
                    real = module.monotonic
                    monkeypatch.setattr(module, "monotonic", lambda: real() + module.HOLD_TRUST)
                    await ben.check()
                    # ...silent, it does not: the server may have let go by then, and
                    # nothing told this side.
                    relay.go_silent()
                    later = 2 * module.HOLD_TRUST
                    monkeypatch.setattr(module, "monotonic", lambda: real() + later)
                    with pytest.raises(LockLost):
                        await ben.check()
                    monkeypatch.setattr(module, "monotonic", real)
                with pytest.raises(LockLost):
                    await held.check()
                waiting = asyncio.create_task(_enter(theirs, "ana"))
                await until(waiting_for(other, theirs, "ana"), "the other instance waits")
                relay.server_gives_up()
                await asyncio.wait_for(waiting, 10)
        finally:
            await relay.cut()
            await cut_off.close()


async def _enter(locks: PostgresConversationLocks, key: str) -> None:
    async with locks.hold(key):
        pass


GUIDE = """
guide: many
version: 1
title: Many questions
steps:
""" + "".join(f"  - id: q{n}\n    ask: Question {n}?\n" for n in range(1, 9))


async def test_two_dispatchers_take_one_persons_burst_one_turn_at_a_time(tmp_path):
    """Eight messages from one person reach two instances at once: with the locks in the
    database, each turn sees the one before it, so every question is answered once.
    (With each instance's own in-memory locks, two turns read the same step and one
    answer overwrites the other.)"""
    from bot.conversation.dispatcher import Dispatcher
    from bot.library import GuideLibrary
    from bot.locales import load_phrasebook
    from bot.messages import Inbound
    from bot.privacy import Identity
    from tests.conftest import FakeClock, load
    from tests.storage_suite import drop_schemas, postgres_store

    library = GuideLibrary()
    library.add(load(GUIDE, "many.yaml"))
    identity = Identity(b"locks-dispatcher-secret")
    stores = [postgres_store(tmp_path / "one.db"), postgres_store(tmp_path / "one.db")]
    locks: list[PostgresConversationLocks] = []
    try:
        for store in stores:
            await store.open()
            locks.append(
                await PostgresConversationLocks.open(
                    DATABASE_URL, size=4, namespace=str(store.schema), local=KeyedLocks()
                )
            )
        instances = [
            Dispatcher(storage=store, library=library, identity=identity,
                       phrases=load_phrasebook(), clock=FakeClock(), locks=lock)
            for store, lock in zip(stores, locks, strict=True)
        ]  # fmt: skip
        await instances[0].handle(Inbound("terminal", "ana", "ana", "/start many", key="0"))
        await asyncio.gather(
            *(
                instances[n % 2].handle(Inbound("terminal", "ana", "ana", f"a{n}", key=f"{n}"))
                for n in range(1, 9)
            )
        )
        person = await stores[1].participant(identity.pseudonym("terminal", "ana"))
        assert person is not None and person.current_run is not None
        run = await stores[1].run(person.current_run)
        assert run is not None and run.status == "finished"
        answers = await stores[1].answers(run.id)
        assert sorted(a.step for a in answers) == [f"q{n}" for n in range(1, 9)]
        assert sorted(a.value for a in answers) == sorted(f'"a{n}"' for n in range(1, 9))
    finally:
        for lock in locks:
            await lock.close()
        for store in stores:
            await store.close()
        await drop_schemas()


async def end_kept_connection(locks: PostgresConversationLocks, looking: Any) -> None:
    """The server ends the locks' kept connection (as a restart or a proxy would), and
    the locks' side of it hears so."""
    kept = locks._session._connection
    await looking.execute("SELECT pg_terminate_backend($1)", kept.get_server_pid())

    async def closed() -> bool:
        return not still_open(kept)

    await until(closed, "the kept connection is seen closed")


@pytest.mark.parametrize("many", [False, True], ids=["a turn", "a cohort's chunk"])
async def test_a_holder_whose_kept_connection_is_lost_is_told_so_before_it_writes(two, many):
    """The server ends the kept connection while a turn (or a chunk of a scheduled
    prompt) holds its lock: another instance may take the lock at once, so the holder
    must not write as if it still had it."""
    from storage.postgres.locks import LockLost

    first, second, looking = two
    holding = first.hold_many(["ana", "ben"]) if many else first.hold("ana")
    async with holding as held:
        await held.check()
        await end_kept_connection(first, looking)
        async with second.hold("ana") as theirs:  # someone else's turn, under way
            await theirs.check()
            with pytest.raises(LockLost):
                await held.check()


async def test_a_holder_waiting_on_its_own_connection_is_told_when_it_is_lost(two):
    """The same for a holder that waited in the database's queue on a connection of its
    own (the lock was another instance's when it asked)."""
    from storage.postgres.locks import LockLost

    first, second, looking = two
    first_in, first_out, second_out = asyncio.Event(), asyncio.Event(), asyncio.Event()
    second_holds: list[Any] = []

    async def first_turn() -> None:
        async with first.hold("ana"):
            first_in.set()
            await first_out.wait()

    async def second_turn() -> None:
        async with second.hold("ana") as held:
            second_holds.append(held)
            await second_out.wait()

    async with asyncio.timeout(20):
        turns = [asyncio.create_task(first_turn())]
        await first_in.wait()
        turns.append(asyncio.create_task(second_turn()))
        await until(waiting_for(looking, second, "ana"), "the second waits in the queue")
        first_out.set()
        await until(lambda: _true(bool(second_holds)), "the second holds the lock")
        await second_holds[0].check()
        ident = lock_id(second._namespace, "conversation", "ana")
        await looking.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            " AND granted AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            (ident >> 32) & 0xFFFFFFFF,
            ident & 0xFFFFFFFF,
        )

        async def lost() -> bool:
            try:
                await second_holds[0].check()
            except LockLost:
                return True
            return False

        await until(lost, "the holder is told its lock is lost")
        second_out.set()
        await asyncio.gather(*turns)


async def _true(value: bool) -> bool:
    return value


@contextlib.asynccontextmanager
async def one_instance(tmp_path: Any) -> AsyncIterator[tuple[Any, Any, PostgresConversationLocks]]:
    """A dispatcher on PostgreSQL with its locks in the database, as `run` makes it: the
    dispatcher, its store and its locks."""
    from bot.conversation.dispatcher import Dispatcher
    from bot.library import GuideLibrary
    from bot.locales import load_phrasebook
    from bot.privacy import Identity
    from tests.conftest import FakeClock, load
    from tests.storage_suite import drop_schemas, postgres_store

    library = GuideLibrary()
    library.add(load(GUIDE, "many.yaml"))
    store = postgres_store(tmp_path / "one.db")
    locks: PostgresConversationLocks | None = None
    try:
        await store.open()
        locks = await PostgresConversationLocks.open(
            DATABASE_URL, size=4, namespace=str(store.schema), local=KeyedLocks()
        )
        bot = Dispatcher(storage=store, library=library, identity=Identity(b"locks-test-secret"),
                         phrases=load_phrasebook(), clock=FakeClock(), locks=locks)  # fmt: skip
        yield bot, store, locks
    finally:
        if locks is not None:
            await locks.close()
        await store.close()
        await drop_schemas()


def cut_after_first(store: Any, read: str, locks: PostgresConversationLocks) -> None:
    """The first time the store's `read` is asked, the server ends the locks' kept
    connection once it has answered (as a restart or a proxy would)."""
    reading = getattr(store, read)
    cut = asyncio.Event()

    async def read_then_cut(*args: Any) -> Any:
        loaded = await reading(*args)
        if not cut.is_set():
            cut.set()
            async with store.pool.acquire() as looking:
                await end_kept_connection(locks, looking)
        return loaded

    setattr(store, read, read_then_cut)


async def test_a_turn_whose_lock_is_lost_writes_nothing_and_is_taken_again(tmp_path):
    """The server ends the locks' kept connection while a turn of ana's is under way on
    one instance: the turn writes nothing and says storage failed (a webhook answers
    503), and the platform's retry of the same message is answered once."""
    from bot.messages import Inbound, NotStored

    async with one_instance(tmp_path) as (bot, store, locks):
        await bot.handle(Inbound("terminal", "ana", "ana", "/start many", key="0"))
        cut_after_first(store, "conversation", locks)
        with pytest.raises(NotStored):
            await bot.handle(Inbound("terminal", "ana", "ana", "a1", key="1"))
        person = await store.participant(bot.identity.pseudonym("terminal", "ana"))
        assert person is not None and person.current_run is not None
        assert await store.answers(person.current_run) == []
        await bot.handle(Inbound("terminal", "ana", "ana", "a1", key="1"))  # sent again
        await bot.handle(Inbound("terminal", "ana", "ana", "a2", key="2"))
        answers = await store.answers(person.current_run)
        assert [(a.step, a.value) for a in answers] == [("q1", '"a1"'), ("q2", '"a2"')]


async def test_a_cohorts_chunk_whose_lock_is_lost_writes_nothing_and_is_taken_again(tmp_path):
    """The same for a chunk of a scheduled prompt: its kept connection ended while it
    read everyone, it writes no one's prompt and says storage failed (the occurrence is
    taken up again), and taken again it prompts each of them once."""
    from storage.postgres.locks import LockLost
    from storage.rows import Commit, ParticipantRow

    async with one_instance(tmp_path) as (bot, store, locks):
        people = {bot.identity.pseudonym("terminal", who): who for who in ("ana", "ben", "cy")}
        for pid, who in people.items():
            sealed = bot.identity.seal(who)
            await store.commit(Commit(participant=ParticipantRow(pid, "terminal", sealed)))
        prompts = [(pid, f"prompt:s1:2026-10-19T09:00:00:{pid}") for pid in people]
        cut_after_first(store, "conversations", locks)
        with pytest.raises(LockLost):
            await bot.prompt_many(prompts, "s1", "many", None)
        for pid in people:
            assert await store.open_runs(pid) == []
        assert await bot.prompt_many(prompts, "s1", "many", None) == 3
        for pid in people:
            assert len(await store.open_runs(pid)) == 1
