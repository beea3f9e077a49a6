"""The storage protocol's reads for the console's results (`ReportStore.people_tallies`,
`ReportStore.cross_tallies`), on every backend: people, not answers, are counted, a list
of choices counts each option, and a breakdown pairs answers given in the same run."""

from __future__ import annotations

import json
from datetime import timedelta

from storage.protocol import Storage
from storage.rows import AnswerRow, Commit, CrossTally, RunRow, Tally, TextAnswer
from tests.conftest import START

WEEK = timedelta(days=7)


def _run(run_id: str, who: str, days: float) -> RunRow:
    at = START + timedelta(days=days)
    return RunRow(run_id, who, "pulse", 1, "h1", "finished", "{}", at, at)


def _answer(run_id: str, who: str, step: str, kind: str, value: object, days: float) -> AnswerRow:
    at = START + timedelta(days=days)
    return AnswerRow(run_id, step, who, "pulse", 1, kind, json.dumps(value), at)


async def _fill(store: Storage) -> None:
    said = [  # (run, person, days after START, department, tools, stress)
        ("r1", "ana", 1, "kitchen", ["knives", "ovens"], 4),
        ("r2", "ana", 8, "kitchen", ["knives"], 5),  # Ana again, the next week
        ("r3", "ben", 2, "kitchen", ["ovens"], 2),
        ("r4", "cy", 3, "front", [], 4),
        ("r5", "dee", 3, "front", ["knives"], 3.5),
        ("r6", "eve", 40, "front", ["ovens"], 1),  # outside the period
    ]
    for run_id, who, days, department, tools, stress in said:
        await store.commit(
            Commit(
                runs=[_run(run_id, who, days)],
                answers=[
                    _answer(run_id, who, "dept", "choose", department, days),
                    _answer(run_id, who, "tools", "choose_many", tools, days),
                    _answer(run_id, who, "stress", "number", stress, days),
                ],
            )
        )
    # Someone who skipped the department, but said how stressed they are.
    await store.commit(
        Commit(
            runs=[_run("r7", "fay", 4)], answers=[_answer("r7", "fay", "stress", "number", 2, 4)]
        )
    )


def _plain(tallies: list[Tally]) -> dict[tuple[str, object], int]:
    return {(t.step, json.loads(t.value)): t.count for t in tallies}


async def test_people_tallies_count_people_once_and_split_lists(store: Storage) -> None:
    await _fill(store)
    found = _plain(await store.people_tallies("pulse", START, START + timedelta(days=30)))
    assert found == {
        ("dept", "kitchen"): 2,  # Ana twice, and Ben: two people
        ("dept", "front"): 2,
        ("tools", "knives"): 2,  # Ana (twice) and Dee
        ("tools", "ovens"): 2,
        ("stress", 4): 2,
        ("stress", 5): 1,
        ("stress", 2): 2,
        ("stress", 3.5): 1,
    }
    assert await store.people_tallies("pulse", START + timedelta(days=100),
                                      START + timedelta(days=101)) == []  # fmt: skip


async def test_cross_tallies_pair_answers_of_the_same_run(store: Storage) -> None:
    await _fill(store)
    until = START + timedelta(days=30)

    def plain(rows: list[CrossTally]) -> dict[tuple[object, object], int]:
        return {
            (json.loads(r.group), None if r.value is None else json.loads(r.value)): r.people
            for r in rows
        }

    by_dept = plain(await store.cross_tallies("pulse", START, until, "dept", "stress"))
    assert by_dept == {
        ("kitchen", 4): 1, ("kitchen", 5): 1, ("kitchen", 2): 1,
        ("front", 4): 1, ("front", 3.5): 1,
        ("kitchen", None): 2, ("front", None): 2,  # Fay named no department
    }  # fmt: skip
    by_tools = plain(await store.cross_tallies("pulse", START, until, "tools", "dept"))
    assert by_tools == {
        ("knives", "kitchen"): 1, ("knives", "front"): 1, ("ovens", "kitchen"): 2,
        ("knives", None): 2, ("ovens", None): 2,
    }  # fmt: skip
    tools_of_dept = plain(await store.cross_tallies("pulse", START, until, "dept", "tools"))
    assert tools_of_dept[("kitchen", "knives")] == 1 and tools_of_dept[("kitchen", "ovens")] == 2
    assert tools_of_dept[("front", None)] == 1  # Cy chose no tools: an empty list is no option


async def test_text_sample_reads_from_a_point_among_people(store: Storage) -> None:
    at = START + timedelta(days=1)
    said = [("r1", "ann", "first"), ("r2", "ann", "again"), ("r3", "bob", "hi"),
            ("r4", "cat", "yo"), ("r5", "dan", "hey")]  # fmt: skip
    for run_id, who, text in said:
        await store.commit(
            Commit(
                runs=[_run(run_id, who, 1)], answers=[_answer(run_id, who, "story", "ask", text, 1)]
            )
        )
    until = at + timedelta(days=1)

    def plain(rows: list[TextAnswer]) -> list[tuple[str, str]]:
        return [(r.participant, json.loads(r.value)) for r in rows]

    everyone = await store.text_sample("pulse", "story", START, until, "", 10)
    assert plain(everyone) == [("ann", "first"), ("ann", "again"), ("bob", "hi"), ("cat", "yo"),
                               ("dan", "hey")]  # fmt: skip
    assert plain(await store.text_sample("pulse", "story", START, until, "b", 2)) == [
        ("bob", "hi"), ("cat", "yo"),
    ]  # fmt: skip
    assert await store.text_sample("pulse", "story", START, until, "dan", 5) == []
    assert await store.text_sample("pulse", "other", START, until, "", 5) == []
    assert await store.text_sample("pulse", "story", until, until + WEEK, "", 5) == []
