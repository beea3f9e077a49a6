"""Scheduled prompts to many people at once (`bot/fanout.py`): in chunks, each person
once under their key, each with their own run, the same rows as one at a time; a
crash part-way or a second process never prompts anyone twice."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from bot.conversation.locks import KeyedLocks
from bot.flows.events import Tap
from bot.messages import Inbound, Outbound
from bot.scheduling.scheduler import occurrence_key, prompt_key
from storage.rows import Commit, RunRow
from tests.test_pg_locks import until
from tests.town import Town, setup

MONDAY_9_CHICAGO = datetime(2026, 10, 19, 14, 0, tzinfo=UTC)
LEASE = timedelta(minutes=10)


def key(town: Town, who: str) -> str:
    return prompt_key(occurrence_key("s1", MONDAY_9_CHICAGO, "America/Chicago"), key_pid(town, who))


def questions(town: Town, who: str) -> list[Outbound]:
    """The guide's first question (the pulse asks no consent), as sent to someone."""
    return [m for a, m in town.channel.sent if a == who and m.step == "week"]


async def test_each_member_is_prompted_once_chunk_by_chunk(town: Town):
    people = {f"p{n}": None for n in range(7)}
    dispatcher, scheduler, deliverer = await setup(town, people)
    dispatcher.fanout.chunk = 3  # three chunks: 3 + 3 + 1
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 7
    assert (await scheduler.tick()).prompted == 0
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1] * 7
    deliveries = await scheduler.storage.deliveries("s1")
    assert sorted(d.key for d in deliveries) == sorted(key(town, who) for who in people)


async def test_each_person_gets_their_own_run_and_their_buttons_name_it(town: Town):
    people = {f"p{n}": None for n in range(4)}
    dispatcher, scheduler, deliverer = await setup(town, people)
    town.clock.now = MONDAY_9_CHICAGO
    await scheduler.tick()
    await deliverer.drain("terminal")
    runs = {d.participant: d.run_id for d in await scheduler.storage.deliveries("s1")}
    assert len(set(runs.values())) == 4
    for who in people:
        pid = town.identity.pseudonym("terminal", who)
        intro, question = [m for a, m in town.channel.sent if a == who][-2:]
        assert intro.text.startswith("Pulse") and intro.run == runs[pid]
        assert question.text == "How was your week?" and question.run == runs[pid]
        assert [b.value for b in question.buttons] == ["1", "2", "3", "4", "5"]
        run = await scheduler.storage.run(runs[pid])
        assert run is not None and run.participant == pid and run.status == "active"
        assert runs[pid] in run.state
        person = await scheduler.storage.participant(pid)
        assert person is not None and person.current_run == runs[pid]
    # A tap under someone else's question changes nothing; under their own, it counts.
    four = Tap("week", "4")
    await dispatcher.handle(
        Inbound("terminal", "p0", "p0", tap=four, tap_run=runs[key_pid(town, "p1")])
    )
    assert await scheduler.storage.answers(runs[key_pid(town, "p0")]) == []
    await dispatcher.handle(Inbound("terminal", "p0", "p0", tap=four, tap_run=runs[key_pid(town)]))
    await deliverer.drain("terminal")
    [answer] = await scheduler.storage.answers(runs[key_pid(town, "p0")])
    assert (answer.step, answer.value) == ("week", "4")
    assert town.texts("p0")[-1] == "One hope for next week?"
    assert await scheduler.storage.answers(runs[key_pid(town, "p1")]) == []


def key_pid(town: Town, who: str = "p0") -> str:
    return town.identity.pseudonym("terminal", who)


async def test_the_bulk_rows_are_what_one_at_a_time_writes(town: Town):
    dispatcher, _, _ = await setup(town, {"one": "Asia/Tokyo", "many": "Asia/Tokyo"})
    storage = dispatcher.storage
    town.clock.now = MONDAY_9_CHICAGO
    quiet = MONDAY_9_CHICAGO + timedelta(hours=9)  # the Tokyo morning after
    one, many = key_pid(town, "one"), key_pid(town, "many")
    assert await dispatcher.prompt(one, key(town, "one"), "s1", "pulse", quiet)
    assert await dispatcher.prompt_many([(many, key(town, "many"))], "s1", "pulse", quiet) == 1
    first, second = await storage.deliveries("s1")
    assert first.delivered_at == second.delivered_at == MONDAY_9_CHICAGO

    async def rows(pid: str, run_id: str) -> tuple[object, ...]:
        run = await storage.run(run_id)
        person = await storage.participant(pid)
        assert run is not None and person is not None
        owed = [r for r in await storage.claim_due("terminal", quiet, 100) if r.participant == pid]
        return (
            run.state.replace(run_id, "RUN"),
            run.status,
            run.started_at,
            person.current_run == run_id,
            person.language,
            [(r.payload.replace(run_id, "RUN"), r.not_before, r.address == person.address)
             for r in owed],
        )  # fmt: skip

    by = {d.participant: d.run_id for d in (first, second)}
    mine, theirs = await rows(one, by[one]), await rows(many, by[many])
    assert mine == theirs
    assert len(mine[-1]) == 2 and all(t == quiet and own for _, t, own in mine[-1])
    assert await storage.claim_due("terminal", quiet - timedelta(seconds=1), 100) == []
    assert await storage.inbound_seen(dispatcher._seen_key(key(town, "many")) or "")


async def test_someone_mid_run_is_welcomed_back_the_one_by_one_way(town: Town):
    people = {"busy": None, "free": None}
    dispatcher, scheduler, deliverer = await setup(town, people)
    town.clock.now = MONDAY_9_CHICAGO - timedelta(hours=1)
    await town.say(dispatcher, "busy", "/start pulse")
    busy = await scheduler.storage.open_run(key_pid(town, "busy"), "pulse")
    assert busy is not None
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 2
    await deliverer.drain("terminal")
    assert "Welcome back" in town.texts("busy")[-2]
    deliveries = {d.participant: d.run_id for d in await scheduler.storage.deliveries("s1")}
    assert deliveries[key_pid(town, "busy")] == busy.id  # the run they had, not a new one
    assert town.prompts("busy") == 2  # asked again where they were
    assert town.prompts("free") == 1


async def test_someone_whose_run_stayed_open_in_a_closed_gathering_is_prompted_afresh(
    town: Town,
):
    """A run joined through a gathering that has since closed is never carried on (see
    `Dispatcher._carry_on`): the chunk begins a new run for them, as one at a time does,
    rather than leaving them out of the prompt week after week (found by review)."""
    people = {"met": None, "free": None}
    dispatcher, scheduler, deliverer = await setup(town, people)
    invite = await town.houses[-1].roles.invite("facilitator", timedelta(days=7))
    await town.say(dispatcher, "host", f"/redeem {invite}")
    await town.say(dispatcher, "host", "/launch pulse Supper")
    await deliverer.drain("terminal")
    found = re.search(r"Join code: ([A-Z0-9]{6})", town.texts("host")[-1])
    assert found, town.texts("host")
    await town.say(dispatcher, "met", f"/join {found.group(1)}")
    await town.say(dispatcher, "met", "3")  # the pulse asks no consent: an answer
    await town.say(dispatcher, "host", "/close")
    left_open = await scheduler.storage.open_run(key_pid(town, "met"), "pulse")
    assert left_open is not None and left_open.gathering is not None
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 2
    await deliverer.drain("terminal")
    assert town.texts("met")[-2:] == [town.texts("free")[-2], "How was your week?"]
    deliveries = {d.participant: d.run_id for d in await scheduler.storage.deliveries("s1")}
    assert deliveries.keys() == {key_pid(town, "met"), key_pid(town, "free")}
    fresh = await scheduler.storage.run(deliveries[key_pid(town, "met")])
    assert fresh is not None and fresh.id != left_open.id and fresh.gathering is None


@pytest.mark.parametrize("where", ["mid_chunk", "between_chunks"])
async def test_a_crash_part_way_then_a_takeover_prompts_everyone_once(town: Town, where: str):
    people = {f"p{n}": None for n in range(6)}
    dispatcher, first, deliverer = await setup(town, people)
    _, second, _ = await town.process()
    storage = dispatcher.storage
    write = storage.commit_many
    calls = 0

    async def dies(commits: Sequence[Commit]) -> list[bool]:
        nonlocal calls
        calls += 1
        if where == "mid_chunk":
            await write(commits[:2])  # part of the chunk is on disk...
            raise RuntimeError("killed")  # ...and the process dies
        if calls > 1:
            raise RuntimeError("killed")  # the first chunk is on disk, the second is not
        return await write(commits)

    storage.commit_many = dies  # type: ignore[method-assign]
    dispatcher.fanout.chunk = 6 if where == "mid_chunk" else 3
    town.clock.now = MONDAY_9_CHICAGO
    assert (await first.tick()).prompted == 0  # it died before counting
    done = len(await storage.deliveries("s1"))
    assert done == (2 if where == "mid_chunk" else 3)
    assert (await second.tick()).prompted == 0  # the occurrence is still held
    town.clock.advance(minutes=11)
    assert (await second.tick()).prompted == 6 - done  # taken over: only the rest
    assert (await second.tick()).prompted == 0
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1] * 6
    assert len(await storage.deliveries("s1")) == 6


async def test_someone_erased_while_their_chunk_is_written_is_not_brought_back(town: Town):
    """An operator's `kitchen-table forget` that ends between a chunk's reads and its
    write: the chunk writes nothing of them, for someone mid-run (who goes in the chunk's
    transaction too) as for anyone else."""
    people = {"stays": None, "gone": None, "busy": None}
    dispatcher, scheduler, deliverer = await setup(town, people)
    town.clock.now = MONDAY_9_CHICAGO - timedelta(hours=1)
    await town.say(dispatcher, "busy", "/start pulse")
    storage = dispatcher.storage
    write = storage.commit_many

    async def erased_meanwhile(commits: Sequence[Commit]) -> list[bool]:
        for who in ("gone", "busy"):
            await storage.forget(key_pid(town, who), town.clock())
        return await write(commits)

    storage.commit_many = erased_meanwhile  # type: ignore[method-assign]
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 1
    storage.commit_many = write  # type: ignore[method-assign]
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1, 0, 0]  # nothing owed to the erased
    assert [d.participant for d in await storage.deliveries("s1")] == [key_pid(town, "stays")]
    for who in ("gone", "busy"):
        kept = await storage.conversation(key_pid(town, who), None)
        assert kept.participant is None and kept.run is None


@pytest.mark.postgres
async def test_an_erasure_under_way_while_a_chunk_is_written_is_not_undone(town: Town):
    """On PostgreSQL an operator's erasure is a transaction of its own: a chunk written
    while it was under way saw no tombstone yet, waited for the person's row, and wrote
    them back, prompted, once the erasure had deleted it (found by review)."""
    people = {"stays": None, "gone": None}
    dispatcher, scheduler, deliverer = await setup(town, people)
    storage = dispatcher.storage
    write = storage.commit_many
    gone = key_pid(town, "gone")

    async def erased_meanwhile(commits: Sequence[Commit]) -> list[bool]:
        async with storage.pool.acquire() as other, other.transaction():  # type: ignore[attr-defined]
            await other.execute("SELECT kt_erase($1, $2)", gone, town.clock())
            writing = asyncio.create_task(write(commits))

            async def chunk_waits() -> bool:
                return bool(await other.fetchval(
                    "SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                ))  # fmt: skip

            await until(chunk_waits, "the chunk waits for the erasure")
        return await writing

    storage.commit_many = erased_meanwhile  # type: ignore[method-assign]
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 1
    storage.commit_many = write  # type: ignore[method-assign]
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1, 0]
    assert (await storage.conversation(gone, None)).participant is None


async def test_two_processes_in_small_chunks_prompt_each_person_once(town: Town):
    people = {f"p{n}": None for n in range(9)}
    dispatcher, first, deliverer = await setup(town, people)
    other, second, _ = await town.process()
    dispatcher.fanout.chunk = other.fanout.chunk = 2
    town.clock.now = MONDAY_9_CHICAGO
    await asyncio.gather(first.tick(), second.tick(), first.tick(), second.tick())
    await deliverer.drain("terminal")
    assert len(await first.storage.deliveries("s1")) == 9
    assert [town.prompts(who) for who in people] == [1] * 9


async def test_a_message_while_a_chunk_is_prompted_waits_for_it(town: Town):
    people = {f"p{n}": None for n in range(5)}
    dispatcher, scheduler, deliverer = await setup(town, people)
    storage = dispatcher.storage
    read = storage.open_runs_of
    message: list[asyncio.Task[None]] = []

    async def meanwhile(participant_ids: Sequence[str], guide_id: str) -> dict[str, RunRow]:
        # p2 writes "/start pulse" after the chunk's read, before its commit: it must
        # wait for the chunk (and then carry on with the run it started), not start
        # a second run of the guide beside it.
        busy = await read(participant_ids, guide_id)
        if not message:
            message.append(asyncio.create_task(town.say(dispatcher, "p2", "/start pulse")))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(message[0]), 0.3)
        return busy

    storage.open_runs_of = meanwhile  # type: ignore[method-assign]
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 5
    await message[0]
    await deliverer.drain("terminal")
    for who in people:
        assert len(await storage.open_runs(key_pid(town, who))) == 1, who
    assert "Welcome back" in town.texts("p2")[-2]


async def test_holding_many_keys_at_once_never_deadlocks_and_leaves_nothing():
    locks = KeyedLocks()
    inside: set[str] = set()

    async def many(keys: list[str]) -> None:
        async with locks.hold_many(keys):  # the same key twice, too
            assert not inside & set(keys)
            inside.update(keys)
            await asyncio.sleep(0)
            inside.difference_update(keys)

    async def one(key: str) -> None:
        async with locks.hold(key):
            assert key not in inside
            await asyncio.sleep(0)

    # Opposite orders: taken one by one as given, these two could wait on each other.
    await asyncio.wait_for(
        asyncio.gather(many(["b", "a", "c"]), many(["c", "b", "a", "a"]), one("a"), many(["c"])),
        timeout=5,
    )
    assert len(locks) == 0


async def test_a_chunk_that_fails_while_another_is_written_begins_no_more(
    town: Town, caplog: pytest.LogCaptureFixture
):
    people = {f"p{n}": None for n in range(6)}
    dispatcher, scheduler, deliverer = await setup(town, people)
    storage = dispatcher.storage
    write, calls, second_failed = storage.commit_many, [], asyncio.Event()

    async def second_fails(commits: Sequence[Commit]) -> list[bool]:
        calls.append(len(commits))
        if len(calls) == 1:
            await second_failed.wait()  # the first chunk is still being written...
            return await write(commits)
        second_failed.set()
        raise RuntimeError("the second chunk failed")  # ...when the second fails

    storage.commit_many = second_fails  # type: ignore[method-assign]
    dispatcher.fanout.chunk = 2  # three chunks of two
    town.clock.now = MONDAY_9_CHICAGO
    await scheduler.tick()
    assert calls == [2, 2]  # the third never began
    assert "the second chunk failed" in caplog.text
    assert len(await storage.deliveries("s1")) == 2  # the first chunk's are written
    storage.commit_many = write  # type: ignore[method-assign]
    town.clock.advance(minutes=11)  # the occurrence is taken up again: only the rest
    assert (await scheduler.tick()).prompted == 4
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1] * 6


async def test_storage_failing_under_one_by_one_prompts_is_tried_again_later(town: Town):
    people = {f"p{n}": None for n in range(4)}
    dispatcher, scheduler, deliverer = await setup(town, people)
    storage = dispatcher.storage
    read, commit = storage.conversations, storage.commit

    async def damaged(wanted: Sequence[tuple[str, str | None]]) -> list[object]:
        raise ValueError("a damaged row")  # so the chunk goes one by one...

    async def full(c: Commit) -> bool:
        raise sqlite3.OperationalError("database or disk is full")  # ...and the disk is full

    storage.conversations, storage.commit = damaged, full  # type: ignore[method-assign, assignment]
    town.clock.now = MONDAY_9_CHICAGO
    assert (await scheduler.tick()).prompted == 0
    storage.conversations, storage.commit = read, commit  # type: ignore[method-assign]
    town.clock.advance(minutes=11)  # not finished as sent: taken up again
    assert (await scheduler.tick()).prompted == 4
    await deliverer.drain("terminal")
    assert [town.prompts(who) for who in people] == [1] * 4
