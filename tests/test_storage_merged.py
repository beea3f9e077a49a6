"""SQLite only: commits that reach its writer together (answers from many people at
once), or go as one chunk of a scheduled prompt (`commit_many`), are merged and
written in one go, and end up exactly as they would one after another. The merging
is the SQLite backend's own (storage/sqlite/merged.py, writer.py), so these tests
open a `SQLiteStorage` and read its tables directly."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    DeliveryRow,
    GuideSourceRow,
    OutboxRow,
    ParticipantRow,
    PreferenceRow,
    RunRow,
)
from storage.sqlite import SQLiteStorage
from storage.sqlite.merged import NOT_MERGEABLE, Merged, sets
from storage.sqlite.writer import Duplicate, GroupWriter, Mergeable
from tests.conftest import START

TABLES = {
    "participants": "SELECT * FROM participants ORDER BY id",
    "runs": "SELECT * FROM runs ORDER BY id",
    "answers": "SELECT * FROM answers ORDER BY run_id, step",
    "consents": "SELECT * FROM consents ORDER BY rowid",
    "outbox": "SELECT * FROM outbox ORDER BY id",
    "guide_sources": "SELECT * FROM guide_sources ORDER BY hash",
    "inbound": "SELECT key FROM inbound ORDER BY key",  # not `at`: the time of writing
    "deliveries": "SELECT * FROM deliveries ORDER BY key",
    "members": "SELECT cohort, participant FROM members ORDER BY cohort, participant",
    "preferences": "SELECT * FROM preferences ORDER BY participant",
}


@st.composite
def a_commit(draw: st.DrawFn) -> Commit:
    """A commit of the kind the dispatcher makes, over a few people, runs and keys, so
    that commits in one batch share people, runs, answers and inbound keys."""
    who = draw(st.sampled_from(["p1", "p2", "p3"]))
    run_id = f"{who}-{draw(st.sampled_from(['a', 'b']))}"
    later = START + timedelta(seconds=draw(st.integers(0, 100)))
    commit = Commit(inbound_key=draw(st.none() | st.sampled_from(["k1", "k2", "k3", "k4"])))
    if draw(st.booleans()):
        commit.participant = ParticipantRow(
            who, draw(st.sampled_from(["terminal", "telegram"])), draw(st.binary(max_size=3)),
            draw(st.sampled_from([None, "en", "es"])), draw(st.none() | st.just(run_id)),
        )  # fmt: skip
    if draw(st.booleans()):
        status = draw(st.sampled_from(["consent", "active", "completed"]))
        state = draw(st.sampled_from(["{}", '{"at": "q1"}', '{"at": "q2"}']))
        # Now and then a run id another person's runs use: runs change hands when one is
        # deleted and begun again.
        owner = draw(st.sampled_from([who, who, who, "p1", "p2"]))
        commit.runs.append(RunRow(run_id, owner, "g", 1, "h1", status, state, START, later))
    for step in draw(st.lists(st.sampled_from(["q1", "q2", "q3"]), max_size=3)):
        value = draw(st.sampled_from(['"yes"', '"no"', "4", '"ünïcødé ✊"']))
        commit.answers.append(AnswerRow(run_id, step, who, "g", 1, "text", value, later))
    if draw(st.booleans()):
        commit.consents.append(ConsentRow(who, "g", 1, draw(st.booleans()), later))
    for text in draw(st.lists(st.sampled_from(["Thanks", "Next?"]), max_size=2)):
        commit.outbox.append(OutboxRow("terminal", who, b"sealed", f'{{"text": "{text}"}}', later))
    if draw(st.integers(0, 3)) == 0:  # the same source, or another with the same hash
        commit.guide_source = GuideSourceRow("h1", "g", draw(st.integers(1, 2)), "guide: g")
    if draw(st.booleans()):  # a scheduled prompt's delivery, its key sometimes taken
        key = draw(st.sampled_from(["d1", "d2"]))
        commit.delivery = DeliveryRow(key, "s1", who, run_id, later)
    if draw(st.integers(0, 3)) == 0:  # a decline: the run deleted, the person perhaps
        # Their own run, as the dispatcher deletes; now and then someone else's, or
        # one never written, which storage must handle as well.
        commit.delete_run = draw(st.sampled_from([run_id, run_id, "p1-a", "p2-b", "p9-a"]))
        if draw(st.booleans()):
            commit.delete_unused_participant = who
    if draw(st.integers(0, 5)) == 0:  # now and then one that is written on its own
        commit.withdrawn.append((run_id, "q1"))
    if draw(st.integers(0, 5)) == 0:  # a member, whom a decline does not delete
        commit.joined.append(("weekly", who))
    if draw(st.integers(0, 5)) == 0:  # their time zone, which goes when they do
        commit.preference = PreferenceRow(who, "America/Chicago")
    return commit


async def write(
    before: list[Commit], commits: list[Commit], how: str
) -> tuple[list[bool], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStorage(Path(folder) / "kt.db")
        await store.open()
        try:
            written = [await store.commit(c) for c in before]  # already stored, keys too
            if how == "together":  # as answers from many people reach the writer
                written += await asyncio.gather(*(store.commit(c) for c in commits))
            elif how == "bulk":  # as a scheduled prompt's chunk goes
                written += await store.commit_many(commits)
            else:
                written += [await store.commit(c) for c in commits]
        finally:
            await store.close()
        with sqlite3.connect(Path(folder) / "kt.db") as db:
            tables = {name: db.execute(sql).fetchall() for name, sql in TABLES.items()}
        db.close()
    return written, tables


def _run(run_id: str, who: str = "p1") -> RunRow:
    return RunRow(run_id, who, "g", 1, "h1", "active", "{}", START, START)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(a_commit(), max_size=3), st.lists(a_commit(), min_size=2, max_size=12))
@example(  # p1 is kept after the first (p1-b is theirs), then p1-b goes without them
    [Commit(participant=ParticipantRow("p1", "terminal", b"s"), runs=[_run("p1-a"), _run("p1-b")])],
    [Commit(inbound_key="k1", delete_run="p1-a", delete_unused_participant="p1"),
     Commit(inbound_key="k2", delete_run="p1-b")],
)  # fmt: skip
@example(  # r changes hands: deleted as p1's, begun again as p2's, who is kept for it...
    [Commit(participant=ParticipantRow("p1", "terminal", b"s"), runs=[_run("r")]),
     Commit(participant=ParticipantRow("p2", "terminal", b"s"))],
    [Commit(inbound_key="k1", delete_run="r"),
     Commit(inbound_key="k2", runs=[_run("r", "p2")]),
     Commit(inbound_key="k3", delete_run="zz", delete_unused_participant="p2"),
     Commit(inbound_key="k4", delete_run="r")],  # ...before it goes, now p2's
)  # fmt: skip
def test_commits_written_together_end_as_one_after_another(
    before: list[Commit], commits: list[Commit]
) -> None:
    merged: list[int] = []
    together = Merged.together.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Merged], db: sqlite3.Connection, operations: list[Any]) -> Any:
        merged.append(len(operations))
        return together(cls, db, operations)

    one_by_one = asyncio.run(write(before, commits, "one by one"))
    with patch.object(Merged, "together", classmethod(counted)):
        assert asyncio.run(write(before, commits, "together")) == one_by_one
    assert asyncio.run(write(before, commits, "bulk")) == one_by_one
    plain = [not sets(c, NOT_MERGEABLE) for c in commits]
    if any(a and b for a, b in itertools.pairwise(plain)):
        assert merged, "neighbouring answers should have been written in one go"


class Noted(Mergeable):
    """A test operation: each inserts one value; `together` inserts them all at once."""

    calls: ClassVar[list[list[str]]] = []

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, db: sqlite3.Connection) -> str:
        if self.value == "bad":
            raise ValueError("bad value")
        if self.value == "seen":
            raise Duplicate("seen")
        db.execute("INSERT INTO t VALUES (?)", (self.value,))
        return self.value

    @classmethod
    def together(cls, db: sqlite3.Connection, operations: Sequence[Any]) -> list[Any]:
        cls.calls.append([o.value for o in operations])
        if any(o.value == "lost" for o in operations):
            db.execute("ROLLBACK")  # as SQLite does itself when the disk is full
            return [None] * len(operations)
        if any(o.value == "bad" for o in operations):
            db.execute("INSERT INTO t VALUES ('half')")  # undone, as the writer falls back
            raise ValueError("one of them is bad")
        results: list[Any] = []
        for o in operations:
            if o.value == "seen":
                results.append(Duplicate("seen"))
            else:
                db.execute("INSERT INTO t VALUES (?)", (o.value,))
                results.append(o.value)
        return results


@pytest.mark.parametrize(
    ("values", "calls", "stored"),
    [
        (["a", "b", "seen", "c"], [["a", "b", "seen", "c"]], ["a", "b", "c"]),
        (["a", "b", "bad", "c"], [["a", "b", "bad", "c"]], ["a", "b", "c"]),
        (["a", None, "b", "c"], [["b", "c"]], ["a", "plain", "b", "c"]),
        (["a", "lost", "b"], [["a", "lost", "b"]], []),
    ],
)
async def test_the_writer_merges_neighbours_of_a_kind_and_falls_back_one_by_one(
    tmp_path: Path, values: list[str | None], calls: list[list[str]], stored: list[str]
) -> None:
    writer = GroupWriter(tmp_path / "w.db", ())
    await writer.open()
    await writer.run(lambda db: db.execute("CREATE TABLE t (v TEXT)"))
    Noted.calls = []

    def plain(db: sqlite3.Connection) -> str:
        db.execute("INSERT INTO t VALUES ('plain')")
        return "plain"

    results = await asyncio.gather(
        *(writer.run(plain if v is None else Noted(v)) for v in values), return_exceptions=True
    )
    for value, result in zip(values, results, strict=True):
        if "lost" in values:  # the whole transaction went: everyone hears, nothing is kept
            assert isinstance(result, sqlite3.OperationalError)
        elif value == "bad":
            assert isinstance(result, ValueError) and str(result) == "bad value"
        elif value == "seen":
            assert isinstance(result, Duplicate)
        else:
            assert result == (value or "plain")
    assert Noted.calls == calls
    rows = await writer.run(lambda db: [r[0] for r in db.execute("SELECT v FROM t ORDER BY rowid")])
    assert rows == stored
    await writer.close()
