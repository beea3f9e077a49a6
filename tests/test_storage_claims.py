"""The outbox claimed by several instances on one PostgreSQL database: two claimants
never get the same message, a person's later message is never claimed while an
earlier one of theirs is leased to someone else, and a crashed claimant's lease runs
out and its messages are claimed again. (SQLite is one process's alone: there,
claiming is reading, tested with the rest of the suite.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from storage.postgres import PostgresStorage
from storage.rows import Commit, OutboxRow
from tests.conftest import START
from tests.storage_suite import SUITE_BACKENDS, drop_schemas, need, postgres_store

pytestmark = pytest.mark.skipif(
    "postgres" not in SUITE_BACKENDS, reason="PostgreSQL's leases: not this run's backend"
)

LEASE = timedelta(minutes=1)
Waiting = Callable[[str], Awaitable[None]]


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two instances on one database."""
    await need("postgres")
    first, second = postgres_store(tmp_path / "kt.db"), postgres_store(tmp_path / "kt.db")
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()
    await drop_schemas()


def message(text: str, who: str, seconds: int = 0) -> OutboxRow:
    return OutboxRow(
        "terminal", who, b"sealed", json.dumps({"text": text}), START + timedelta(seconds=seconds)
    )


def texts(rows: list[OutboxRow]) -> list[str]:
    return [json.loads(r.payload)["text"] for r in rows]


async def test_two_instances_never_claim_the_same_message(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = two
    await a.commit_many([Commit(outbox=[message(f"m{n}", f"p{n % 7}") for n in range(40)])])
    mine = await a.claim_due("terminal", START, 3)
    theirs = await b.claim_due("terminal", START, 100)
    assert {r.participant for r in mine} == {"p0", "p1", "p2"}
    assert {r.participant for r in theirs} == {"p3", "p4", "p5", "p6"}
    assert len(mine) + len(theirs) == 40
    # Each may claim again what it holds (a round of delivery that stopped early), and
    # nothing of the other's.
    assert [r.id for r in await a.claim_due("terminal", START, 100)] == [r.id for r in mine]
    assert [r.id for r in await b.claim_due("terminal", START, 100)] == [r.id for r in theirs]


async def test_instances_delivering_at_once_send_each_message_once_in_order(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = two
    await a.commit_many([Commit(outbox=[message(f"m{n}", f"p{n % 50}") for n in range(300)])])
    sent: list[tuple[str, int]] = []

    async def deliver(store: PostgresStorage) -> None:
        # As a deliverer drains: claim a few people's messages, send them, claim again.
        while batch := await store.claim_due("terminal", START, 7):
            sent.extend((row.participant, row.id or 0) for row in batch)
            await store.outbox_sent([row.id or 0 for row in batch])

    await asyncio.gather(deliver(a), deliver(b))
    ids = [i for _, i in sent]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 300  # each once, none lost
    for person in {who for who, _ in sent}:
        theirs = [i for who, i in sent if who == person]
        assert theirs == sorted(theirs)
    assert await b.next_due("terminal") is None


async def test_a_turns_replies_are_sent_by_the_instance_that_committed_it(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """What a turn's commit queues is claimed by its instance as it is written (a
    scheduled prompt's chunks, `commit_many`, are anyone's: the tests above)."""
    a, b = two
    await a.commit(Commit(outbox=[message("hello", "ana"), message("again", "ana")]))
    await b.commit(Commit(outbox=[message("hi", "ben")]))
    [hi] = await b.claim_due("terminal", START, 10)  # its own, not ana's
    assert texts([hi]) == ["hi"]
    await b.outbox_sent([hi.id or 0])
    assert await b.next_due("terminal") == START + LEASE  # ana's are a's till then
    assert texts(await a.claim_due("terminal", START, 10)) == ["hello", "again"]
    # Leased as `claim_due` leases, from when they were due: if a dies without sending
    # them (and is not seen gone), b takes them over once the lease runs out.
    assert await b.claim_due("terminal", START + LEASE - timedelta(seconds=1), 10) == []
    assert texts(await b.claim_due("terminal", START + LEASE, 10)) == ["hello", "again"]


async def test_a_persons_later_message_waits_while_an_earlier_one_is_leased_elsewhere(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = two
    await a.commit(Commit(outbox=[message("first", "ana"), message("second", "ana")]))
    [first, second] = await a.claim_due("terminal", START, 10)
    await a.outbox_sent([first.id or 0])
    assert await b.claim_due("terminal", START, 10) == []  # ana's second is still a's
    # a is put off on the first (the platform said wait): it lets go of ana altogether,
    # and whoever claims next takes her messages in order.
    await a.commit(Commit(outbox=[message("third", "ana")]))
    await a.outbox_retry(second.id or 0, START + timedelta(seconds=30), 1)
    assert await b.claim_due("terminal", START, 10) == []  # the second must wait first
    later = START + timedelta(seconds=31)
    assert texts(await b.claim_due("terminal", later, 10)) == ["second", "third"]
    assert await a.claim_due("terminal", later, 10) == []


async def test_many_put_off_at_once_each_wait_their_own_time_and_are_let_go(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """A fan-out's second messages wait for their chats' rate all at once: each keeps its
    own time and attempts, and its holder lets go of each person's later messages."""
    a, b = two
    people = [f"p{n}" for n in range(20)]
    await a.commit(
        Commit(outbox=[message(f"{step} {who}", who) for who in people for step in (1, 2)])
    )
    held = await a.claim_due("terminal", START, 100)
    firsts = [r for r in held if texts([r])[0].startswith("1 ")]
    await asyncio.gather(
        *(
            a.outbox_retry(r.id or 0, START + timedelta(seconds=n), n)
            for n, r in enumerate(firsts, start=1)
        )
    )
    assert await b.claim_due("terminal", START, 100) == []  # each must wait first
    due = await b.claim_due("terminal", START + timedelta(seconds=5), 100)
    assert sorted(texts(due)) == sorted(f"{s} {who}" for who in people[:5] for s in (1, 2))
    assert {r.attempts for r in due} == {0, 1, 2, 3, 4, 5}


async def test_a_crashed_claimants_lease_runs_out_and_another_sends_its_messages(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = two
    await a.commit(Commit(outbox=[message("hello", "ana"), message("again", "ana")]))
    claimed = await a.claim_due("terminal", START, 10)
    assert len(claimed) == 2
    # a dies here. Until its lease runs out, its messages are nobody else's to send...
    just_before = START + LEASE - timedelta(seconds=1)
    assert await b.claim_due("terminal", just_before, 10) == []
    assert await b.next_due("terminal") == START + LEASE  # ...and b knows when to look
    # ...then b takes them over, in order, and they leave once sent.
    taken = await b.claim_due("terminal", START + LEASE, 10)
    assert [r.id for r in taken] == [r.id for r in claimed]
    await b.outbox_sent([r.id or 0 for r in taken])
    assert await a.claim_due("terminal", START + 2 * LEASE, 10) == []


async def test_someone_unreachable_is_dropped_whoever_holds_their_messages(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    a, b = two
    await a.commit(Commit(outbox=[message("x", "ana"), message("y", "ben")]))
    await a.claim_due("terminal", START, 10)
    await b.mark_unreachable("ana")
    assert texts(await a.claim_due("terminal", START, 10)) == ["y"]


async def test_a_claimant_still_sending_keeps_what_it_holds_past_its_first_lease(
    two: tuple[PostgresStorage, PostgresStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage.postgres import conversations

    a, b = two
    await a.commit(Commit(outbox=[message("hi ana", "ana"), message("hi ben", "ben")]))
    [to_ana, to_ben] = await a.claim_due("terminal", START, 10)
    # A long round: 25 seconds later a has got as far as ana's message...
    real = conversations.monotonic
    monkeypatch.setattr(conversations, "monotonic", lambda: real() + 25)
    assert a.claim_holds(to_ana.id or 0)
    await a.outbox_sent([to_ana.id or 0])
    # ...which renews what it still holds: 50 seconds after the claim, 25 after the
    # renewal, ben's is still a's to send (not renewed, half a lease would be past).
    monkeypatch.setattr(conversations, "monotonic", lambda: real() + 50)
    assert a.claim_holds(to_ben.id or 0)
    # ...and in the database ben's is a's after the first lease, and a lease more.
    assert await b.claim_due("terminal", START + LEASE + timedelta(seconds=1), 10) == []
    assert texts(await b.claim_due("terminal", START + 2 * LEASE, 10)) == ["hi ben"]


async def end_alive_connection(store: PostgresStorage) -> None:
    """The server ends the connection that says `store`'s instance is alive (a restart, a
    proxy, an operator), and the store's side of it hears so."""
    import asyncpg

    from tests.storage_suite import DATABASE_URL
    from tests.test_pg_locks import until

    alive = store._alive
    assert alive is not None
    looking = await asyncpg.connect(DATABASE_URL)
    try:
        await looking.execute("SELECT pg_terminate_backend($1)", alive.get_server_pid())
    finally:
        await looking.close()

    async def closed() -> bool:
        return alive.is_closed()

    await until(closed, "the connection is seen closed")


async def test_a_claimant_that_lost_its_alive_connection_holds_nothing_it_claimed(
    two: tuple[PostgresStorage, PostgresStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the server has ended the connection saying a is alive, b takes a's leases at
    once (as a's death): a must not go on sending what it claimed (found by review)."""
    from storage.postgres import conversations

    a, b = two
    await a.commit_many([Commit(outbox=[message("hi ana", "ana"), message("hi ben", "ben")])])
    claimed = await a.claim_due("terminal", START, 10)
    assert all(a.claim_holds(r.id or 0) for r in claimed)
    await end_alive_connection(a)
    assert not any(a.claim_holds(r.id or 0) for r in claimed)
    await a.commit_many([Commit(outbox=[message("hi cy", "cy")])])
    assert await a.claim_due("terminal", START, 10) == []  # not alive: claims nothing
    taken = await b.claim_due("terminal", START, 10)
    assert texts(taken) == ["hi ana", "hi ben", "hi cy"]
    # Alive again at its next try, a claims nothing b holds; what it claims anew is its own.
    real = conversations.monotonic
    monkeypatch.setattr(conversations, "monotonic", lambda: real() + conversations.REAP_EVERY)
    assert await a.claim_due("terminal", START, 10) == []
    await a.commit_many([Commit(outbox=[message("hi dee", "dee")])])
    [fresh] = await a.claim_due("terminal", START, 10)
    assert a.claim_holds(fresh.id or 0)
    assert not any(a.claim_holds(r.id or 0) for r in claimed)


async def test_what_was_claimed_before_the_alive_connection_was_lost_stays_untrusted(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """The alive connection lost and held again within one call (a ping that failed,
    then a new connection that took the lock at once): between the two, another instance
    may have taken over what was claimed, so none of it is sent from memory (found by
    review)."""
    a, _ = two
    await a.commit_many([Commit(outbox=[message("hi ana", "ana")])])
    [row] = await a.claim_due("terminal", START, 10)
    await end_alive_connection(a)
    await a._say_alive()  # alive again at once, `_held` as it was
    assert a._alive_held()
    assert not a.claim_holds(row.id or 0)
    [again] = await a.claim_due("terminal", START, 10)  # claimed anew: a's again
    assert again.id == row.id and a.claim_holds(row.id or 0)


async def test_an_instance_that_could_not_take_its_alive_lock_claims_nothing_till_it_does(
    two: tuple[PostgresStorage, PostgresStorage],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its lock still held by its earlier session, which the server had not let go: the
    instance waited for it without a word, hanging delivery, and a wait cut short kept
    a connection that said alive and held nothing, so another could reap its leases
    while it sent (found by review). Now it says so, and claims nothing until it holds
    the lock."""
    import asyncpg

    from storage.postgres import conversations
    from storage.postgres.connection import claimant_lock
    from storage.postgres.conversations import REAP_EVERY
    from tests.storage_suite import DATABASE_URL

    real = conversations.monotonic
    a, _ = two
    await a.commit_many([Commit(outbox=[message("hi ana", "ana")])])
    await a.claim_due("terminal", START, 10)  # alive, and holding what it claimed
    await end_alive_connection(a)
    zombie = await asyncpg.connect(DATABASE_URL)  # a's old session, not yet let go
    try:
        await zombie.execute("SELECT pg_advisory_lock($1)", claimant_lock(a.claimant))
        monkeypatch.setattr(conversations, "monotonic", lambda: real() + 2 * REAP_EVERY)
        with caplog.at_level(logging.ERROR):
            assert await asyncio.wait_for(a.claim_due("terminal", START, 10), 10) == []
        assert "sends nothing until it can" in caplog.text  # said, not hung
        assert not a._alive_held()
        assert await a.claim_due("terminal", START, 10) == []  # tried lately: nothing
    finally:
        await zombie.close()
    monkeypatch.setattr(conversations, "monotonic", lambda: real() + 3 * REAP_EVERY)
    assert texts(await a.claim_due("terminal", START, 10)) == ["hi ana"]
    assert a._alive_held()


async def test_a_claim_not_renewed_for_half_a_lease_is_not_sent_from_memory(
    two: tuple[PostgresStorage, PostgresStorage], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that stalls (slow platform calls in front of it) must not send what
    another instance may claim once the lease runs out; claimed again, it may."""
    from storage.postgres import conversations

    a, _ = two
    await a.commit(Commit(outbox=[message("hi ana", "ana")]))
    [row] = await a.claim_due("terminal", START, 10)
    real = conversations.monotonic
    monkeypatch.setattr(conversations, "monotonic", lambda: real() + 29)
    assert a.claim_holds(row.id or 0)
    monkeypatch.setattr(conversations, "monotonic", lambda: real() + 31)
    assert not a.claim_holds(row.id or 0)
    assert [r.id for r in await a.claim_due("terminal", START, 10)] == [row.id]
    assert a.claim_holds(row.id or 0)


async def test_delivery_that_lost_its_alive_connection_mid_round_leaves_the_rest(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """a's round is sending ana's first message when the server ends a's alive
    connection; b takes over and sends everything. a sends nothing more: only the
    message whose call was already out goes twice (as after a crash)."""
    from bot.delivery.channel import Capabilities, SendResult, Sent
    from bot.delivery.deliverer import Deliverer
    from bot.messages import Outbound
    from bot.privacy import Identity
    from tests.conftest import FakeClock

    identity = Identity(b"claims-test-secret")

    class Recorded:
        name = "terminal"
        capabilities = Capabilities()

        def __init__(self, hold_first: bool) -> None:
            self.sent: list[str] = []
            self.out = asyncio.Event()
            self.go_on = asyncio.Event()
            if not hold_first:
                self.go_on.set()

        async def send(self, address: str, message: Outbound) -> SendResult:
            self.out.set()
            await self.go_on.wait()
            self.sent.append(message.text)
            return Sent()

    owed = [("ana", "ana 1"), ("ana", "ana 2"), ("ben", "ben 1")]
    await a_commit_owed(two[0], identity, owed)
    clock = FakeClock(START)
    on_a, on_b = Recorded(hold_first=True), Recorded(hold_first=False)
    a = Deliverer(two[0], identity, {"terminal": on_a}, clock, concurrency=1)
    b = Deliverer(two[1], identity, {"terminal": on_b}, clock)
    draining = asyncio.create_task(a.drain("terminal"))
    await asyncio.wait_for(on_a.out.wait(), 10)  # ana's first call is out
    await end_alive_connection(two[0])
    await b.drain("terminal")
    on_a.go_on.set()
    await draining
    assert on_a.sent == ["ana 1"]
    assert sorted(on_b.sent) == ["ana 1", "ana 2", "ben 1"]


async def test_an_instance_cut_off_without_a_word_stops_sending_before_others_take_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """a reaches the database through a relay that falls silent: a NAT that forgot its
    connections. a's side hears nothing, for hours as far as its system goes; the
    server (its keepalive settings) gives a's sessions up within 30 seconds and lets go
    of a's alive lock, and b then takes a's leases at once. a must have stopped sending
    what it claimed by then: it trusts its alive connection only while a recent ping was
    answered (found while reading what a silent cut does)."""
    from storage.postgres import connection, quiet_cut
    from storage.postgres.connection import ALIVE_TRUST, AliveLockHeld
    from tests.pg_relay import Relay
    from tests.storage_suite import DATABASE_URL, schema_for
    from tests.test_pg_locks import until

    await need("postgres")
    relay = await Relay(DATABASE_URL).start()
    schema = schema_for(tmp_path / "kt.db")
    a = PostgresStorage(relay.url, pool_size=4, schema=schema)
    b = postgres_store(tmp_path / "kt.db")
    await a.open()
    await b.open()
    try:
        await a.commit_many([Commit(outbox=[message("hi ana", "ana")])])
        [row] = await a.claim_due("terminal", START, 10)
        assert a.claim_holds(row.id or 0)
        relay.go_silent()
        # Nothing said: the alive connection looks open, and the last ping was lately.
        assert a._alive is not None and not a._alive.is_closed()
        real = connection.monotonic
        monkeypatch.setattr(connection, "monotonic", lambda: real() + ALIVE_TRUST)
        assert not a.claim_holds(row.id or 0)  # no ping answered for ALIVE_TRUST
        # Asked to say it is alive, a pings, hears nothing, and ends that connection; its
        # new one finds the alive lock still held by the silent session, and says so.
        monkeypatch.setattr(quiet_cut, "PING_TIMEOUT", 0.2)
        with caplog.at_level(logging.ERROR), pytest.raises(AliveLockHeld):
            await a._say_alive()
        assert "did not answer" in caplog.text
        assert not a.claim_holds(row.id or 0)
        # Meanwhile b sees a alive, and waits for a's lease.
        assert await b.claim_due("terminal", START, 10) == []
        relay.server_gives_up()

        async def taken_by_b() -> bool:
            return texts(await b.claim_due("terminal", START, 10)) == ["hi ana"]

        await until(taken_by_b, "b takes over the message a claimed")
        assert not a.claim_holds(row.id or 0)
        await a._say_alive()  # the server has let go: a is alive again
        assert a._alive_held()
    finally:
        await relay.cut()  # a's silent connections end, so that it can close
        await a.close()
        await b.close()
        await drop_schemas()


async def a_commit_owed(store: PostgresStorage, identity: Any, owed: list[tuple[str, str]]) -> None:
    from bot.messages import Outbound

    rows = [
        OutboxRow("terminal", who, identity.seal(who), Outbound(text=text).model_dump_json(), START)
        for who, text in owed
    ]
    await store.commit_many([Commit(outbox=rows)])


@contextlib.asynccontextmanager
async def another_transaction(tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Waiting]]:
    """Another process's connection to the test's schema with a transaction open in it
    (commit it with the second), and a wait until some session waits for a lock."""
    import asyncpg

    from tests.storage_suite import DATABASE_URL, schema_for
    from tests.test_pg_locks import until

    settings = {"search_path": schema_for(tmp_path / "kt.db")}
    other = await asyncpg.connect(DATABASE_URL, server_settings=settings)
    looking = await asyncpg.connect(DATABASE_URL)

    async def blocked() -> bool:
        waiting = await looking.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        )
        return bool(waiting)

    async def waits(what: str) -> None:
        await until(blocked, what)

    try:
        transaction = other.transaction()
        await transaction.start()
        yield other, transaction, waits
    finally:
        await other.close()
        await looking.close()


async def test_a_turn_committing_while_someone_is_being_erased_waits_and_writes_nothing(
    two: tuple[PostgresStorage, PostgresStorage], tmp_path: Path
) -> None:
    """An operator's `kitchen-table forget` is under way in its own transaction when a
    turn that read the person commits: the commit waits for the erasure, then writes
    nothing (it does not slip in beside it and bring them back)."""
    from storage.rows import ParticipantRow

    a, _ = two
    ana = ParticipantRow("ana", "terminal", b"sealed")
    assert await a.commit(Commit(participant=ana))
    async with another_transaction(tmp_path) as (eraser, erasing, waits):
        await eraser.execute("SELECT kt_erase('ana', now())")
        turn = Commit(inbound_key="k1", participant=ana, outbox=[message("late", "ana")],
                      still_kept="ana")  # fmt: skip
        committing = asyncio.create_task(a.commit(turn))
        await waits("the commit waits for the erasure")
        await erasing.commit()
        assert await committing is False
    assert await a.participant("ana") is None
    assert await a.claim_due("terminal", START + LEASE, 10) == []
    assert not await a.inbound_seen("k1")


async def test_someone_erased_while_a_turn_of_theirs_commits_is_erased_with_it(
    two: tuple[PostgresStorage, PostgresStorage], tmp_path: Path
) -> None:
    """The other way round: a turn's commit is under way (its transaction still open)
    when `kitchen-table forget` starts. The erasure waits for it, then erases what it
    wrote too: nothing of theirs is left."""
    from storage.postgres.commits import encode
    from storage.rows import AnswerRow, ParticipantRow, RunRow

    a, _ = two
    ana = ParticipantRow("ana", "terminal", b"sealed")
    assert await a.commit(Commit(participant=ana))
    run = RunRow("r1", "ana", "pulse", 1, "h1", "active", "{}", START, START)
    turn = Commit(inbound_key="k1", participant=ana, runs=[run], outbox=[message("next", "ana")],
                  answers=[AnswerRow("r1", "story", "ana", "pulse", 1, "ask", '"mine"', START)],
                  still_kept="ana")  # fmt: skip
    async with another_transaction(tmp_path) as (committer, committing, waits):
        assert await committer.fetchval("SELECT kt_commit($1::kt_commit)", encode(turn))
        erasing = asyncio.create_task(a.forget("ana", START))
        await waits("the erasure waits for the commit")
        await committing.commit()
        await erasing
    assert await a.participant("ana") is None
    assert not await a.mine("ana")
    assert await a.claim_due("terminal", START + LEASE, 10) == []
