"""The storage protocol's reads and writes for many people at once (a scheduled prompt
to a whole cohort), run against every backend like the rest of the suite."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from storage.protocol import Storage
from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    Conversation,
    DeliveryRow,
    GuideSourceRow,
    OutboxRow,
    ParticipantRow,
    RunRow,
)
from storage.sqlite import SQLiteStorage
from tests.conftest import START

SOURCE = GuideSourceRow("h1", "g", 1, "guide: g")


def person(n: int, run: str | None = None) -> ParticipantRow:
    return ParticipantRow(f"p{n}", "terminal", f"sealed{n}".encode(), "en", run)


def run_row(n: int, status: str = "consent", run_id: str | None = None) -> RunRow:
    return RunRow(run_id or f"r{n}", f"p{n}", "g", 1, "h1", status, "{}", START, START)


def prompt(n: int, key: str | None = None, delivery: str | None = None) -> Commit:
    """What a scheduled prompt commits for person n: a run, its messages, its delivery."""
    return Commit(
        inbound_key=key or f"k{n}",
        participant=person(n, f"r{n}"),
        runs=[run_row(n)],
        guide_source=SOURCE,
        outbox=[
            OutboxRow(
                "terminal", f"p{n}", f"sealed{n}".encode(), f'{{"text": "{text} {n}"}}', START
            )
            for text in ("intro", "question")
        ],
        delivery=DeliveryRow(delivery or f"d{n}", "s1", f"p{n}", f"r{n}", START),
    )


async def owed(store: Storage) -> list[str]:
    return [row.payload for row in await store.claim_due("terminal", START, 100)]


async def test_many_commits_each_written_once_under_its_keys(store: Storage) -> None:
    assert await store.commit(prompt(0))
    written = await store.commit_many(
        [
            prompt(0),  # its inbound key was seen before
            prompt(1),
            prompt(2),
            prompt(3, key="k1"),  # the same inbound key as one before it here
            prompt(4, delivery="d2"),  # the same delivery key as one before it here
            prompt(5),
        ]
    )
    assert written == [False, True, True, False, False, True]
    for n in (0, 1, 2, 5):
        assert await store.participant(f"p{n}") == person(n, f"r{n}")
        assert await store.run(f"r{n}") == run_row(n)
    for n in (3, 4):  # nothing of a refused commit is written
        assert await store.participant(f"p{n}") is None
        assert await store.run(f"r{n}") is None
    assert await owed(store) == [
        f'{{"text": "{text} {n}"}}' for n in (0, 1, 2, 5) for text in ("intro", "question")
    ]
    assert sorted(d.key for d in await store.deliveries("s1")) == ["d0", "d1", "d2", "d5"]
    assert await store.inbound_seen("k5") and not await store.inbound_seen("k4")
    assert await store.guide_source("h1") == "guide: g"
    assert await store.commit_many([]) == []


async def test_other_commits_among_them_are_written_in_order(store: Storage) -> None:
    answer = AnswerRow("r1", "a", "p1", "g", 1, "ask", '"x"', START)
    written = await store.commit_many(
        [
            prompt(1),
            Commit(inbound_key="u1", runs=[run_row(1, "active")], answers=[answer]),
            Commit(inbound_key="u1", answers=[AnswerRow(**{**answer.__dict__, "step": "b"})]),
            prompt(2, key="u1"),  # the key a commit before it took
            prompt(3),
        ]
    )
    assert written == [True, True, False, False, True]
    assert (await store.run("r1")).status == "active"  # type: ignore[union-attr]
    assert [a.step for a in await store.answers("r1")] == ["a"]
    assert await store.participant("p2") is None
    assert await store.participant("p3") is not None


async def test_an_error_in_one_of_many_commits_writes_none_of_them(store: Storage) -> None:
    broken = Commit(inbound_key="u9")
    broken.consents.append(ConsentRow("p9", "g", 1, True, None))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        await store.commit_many([prompt(1), broken, prompt(2)])
    assert await store.participant("p1") is None
    assert await owed(store) == []
    assert not await store.inbound_seen("k1")
    assert await store.commit_many([prompt(1)]) == [True]  # and it still works


@pytest.mark.sqlite_only(reason="a row damaged in SQLite's file")
async def test_a_damaged_run_fails_only_its_own_persons_read(tmp_path: Path) -> None:
    """SQLite only: its batched reads (`ReadBatch`), with a row damaged in its file."""
    store = SQLiteStorage(tmp_path / "kt.db")
    await store.open()
    try:
        await store.commit(prompt(1))
        await store.commit(prompt(2))
        with sqlite3.connect(store.path) as db:  # as a bad disk or a bad hand might leave it
            db.execute("UPDATE runs SET started_at = 'garbage' WHERE participant = 'p2'")
        mine, theirs = await asyncio.gather(
            store.conversation("p1", None), store.conversation("p2", None), return_exceptions=True
        )
        assert isinstance(theirs, ValueError)
        assert isinstance(mine, Conversation) and mine.run == run_row(1)
    finally:
        await store.close()


async def test_conversations_and_open_runs_of_many_people(store: Storage) -> None:
    await store.commit(prompt(1))  # p1: a run under way, and it is their current one
    await store.commit(
        Commit(inbound_key="k2", participant=person(2, "r2"), runs=[run_row(2, "finished")])
    )
    await store.commit(Commit(runs=[run_row(4, "active", "r4")]))  # no participant row
    found = await store.conversations([("p2", "k1"), ("p3", None), ("p1", "new"), ("p2", None)])
    assert found == [
        Conversation(True, person(2, "r2"), run_row(2, "finished")),
        Conversation(False, None, None),
        Conversation(False, person(1, "r1"), run_row(1)),
        Conversation(False, person(2, "r2"), run_row(2, "finished")),
    ]
    assert found[0] == await store.conversation("p2", "k1")
    # Read at the same moment (as under load, where they go to SQLite together), each
    # look-up still gets its own answer, the same person twice included.
    asked = [("p2", "k1"), ("p3", None), ("p1", "new"), ("p2", None), ("p2", "k1")]
    together = await asyncio.gather(*(store.conversation(p, key) for p, key in asked))
    assert together == [*found, found[0]]
    # More than one look-up's worth, in the order asked.
    wanted = [(f"p{n % 5}", f"k{n % 3}") for n in range(1234)]
    many = await store.conversations(wanted)
    assert [c.participant.id if c.participant else None for c in many] == [
        f"p{n % 5}" if n % 5 in (1, 2) else None for n in range(1234)
    ]
    assert [c.seen for c in many] == [n % 3 in (1, 2) for n in range(1234)]
    assert await store.conversations([]) == []
    assert await store.open_runs_of(["p1", "p2", "p3", "p4"], "g") == {
        "p1": run_row(1),
        "p4": run_row(4, "active", "r4"),
    }
    assert await store.open_runs_of(["p1", "p4"], "other") == {}
    everyone = [f"p{n}" for n in range(1000)]
    assert (await store.open_runs_of(everyone, "g")).keys() == {"p1", "p4"}
    # Of two runs under way, the one that moved last, as `open_run` gives.
    later = RunRow("r1b", "p1", "g", 1, "h1", "active", "{}", START, START + timedelta(hours=1))
    await store.commit(Commit(runs=[later]))
    assert (
        (await store.open_runs_of(everyone, "g"))["p1"] == later == await store.open_run("p1", "g")
    )
    assert await store.open_runs_of([], "g") == {}


async def test_a_prompt_read_before_someone_left_or_became_unreachable_writes_nothing(
    store: Storage,
) -> None:
    from datetime import timedelta

    for n in (7, 8, 9):
        assert await store.commit(Commit(participant=person(n)))
    await store.mark_unreachable("p7")  # delivery found them gone while the chunk was read
    await store.forget("p8", START + timedelta(seconds=1))  # forgotten after the read
    await store.forget("p9", START - timedelta(days=1))  # forgotten long ago, then came back
    written = await store.commit_many([prompt(7), prompt(8), prompt(9)])
    assert written == [False, False, True]
    assert await store.participant("p8") is None  # not brought back
    assert (await store.participant("p7")).unreachable  # type: ignore[union-attr]
    assert await owed(store) == [f'{{"text": "{t} 9"}}' for t in ("intro", "question")]


async def test_messages_queued_in_bulk_wake_whoever_watches_the_outbox(store: Storage) -> None:
    """A scheduled prompt queued by one instance is heard of by every instance's delivery
    at once (PostgreSQL: the others are idle until told). One process alone (SQLite) wakes
    its own delivery as it commits, and tells no watcher."""
    woken = asyncio.Event()
    store.watch_outbox(woken.set)
    assert await store.commit_many([prompt(1), prompt(2)]) == [True, True]
    if isinstance(store._backend, SQLiteStorage):  # type: ignore[attr-defined]
        assert not woken.is_set()
    else:
        await asyncio.wait_for(woken.wait(), 10)
    assert len(await owed(store)) == 4
