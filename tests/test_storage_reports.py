"""The storage protocol's read side for digests and exports (`ReportStore`): counts
over a period, where unfinished runs stopped, gatherings held, and export pages, on
every backend. (Tallies and free-text pages are in tests/test_storage.py.)"""

from __future__ import annotations

import json
from datetime import timedelta

from storage.protocol import Storage
from storage.rows import (
    AnswerRow,
    ChoiceCount,
    Commit,
    ExportRow,
    GatheringHeld,
    GatheringRow,
    PeopleCount,
    RunCount,
    RunRow,
    StepCount,
)
from tests.conftest import START

WEEK = timedelta(days=7)


def run(
    run_id: str, who: str, status: str, days: int, guide: str = "pulse", **state: str
) -> RunRow:
    at = START + timedelta(days=days)
    text = "{" + ", ".join(f'"{k}": "{v}"' for k, v in state.items()) + "}"
    return RunRow(run_id, who, guide, 1, "h1", status, text, at, at)


async def test_runs_and_people_counted_over_a_period(store: Storage) -> None:
    await store.commit(
        Commit(
            runs=[
                run("r0", "old", "finished", -10),  # before the period: makes "old" not new
                run("r1", "old", "finished", 1),
                run("r2", "ana", "finished", 2),
                run("r3", "ana", "active", 3, step="q2"),
                run("r4", "ben", "consent", 4),
                run("r5", "cy", "declined", 5),
                run("r6", "dee", "finished", 2, guide="other"),
                run("r7", "eve", "finished", 9),  # after the period
                run("r8", "fay", "stopped", 4, left_at="q2"),  # the engine keeps where
                run("r9", "gus", "expired", 5, left_at="q1"),
            ]
        )
    )
    since, until = START, START + WEEK
    assert sorted(await store.run_counts(since, until), key=lambda c: (c.guide_id, c.status)) == [
        RunCount("other", "finished", 1, 1),
        RunCount("pulse", "active", 1, 1),
        RunCount("pulse", "consent", 1, 1),
        RunCount("pulse", "declined", 1, 1),
        RunCount("pulse", "expired", 1, 1),
        RunCount("pulse", "finished", 2, 2),
        RunCount("pulse", "stopped", 1, 1),
    ]
    assert sorted(await store.people_counts(since, until), key=lambda c: c.guide_id) == [
        PeopleCount("other", 1, 1),
        PeopleCount("pulse", 6, 5),  # old, ana, ben, cy, fay, gus: all but old are new
    ]
    # Where unfinished runs stopped: at their step, where a stopped or expired one was
    # left, or at the consent question.
    assert sorted(await store.open_steps("pulse", since, until), key=lambda c: c.step) == [
        StepCount("_consent", 1),
        StepCount("q1", 1),
        StepCount("q2", 2),
    ]
    assert await store.answer_people("pulse", since, until) == []  # runs here, no answers
    await store.commit(
        Commit(
            answers=[
                AnswerRow(rid, step, who, "pulse", 1, "ask", '"x"', START + timedelta(days=d))
                for rid, step, who, d in [("r2", "q1", "ana", 2), ("r2", "q2", "ana", 2),
                                          ("r3", "q1", "ana", 3), ("r4", "q1", "ben", 4),
                                          ("r7", "q1", "eve", 9)]
            ]
        )
    )  # fmt: skip
    # People per question: ana once for q1 (twice answered), ben; eve's after the period.
    by_step = sorted(await store.answer_people("pulse", since, until), key=lambda c: c.step)
    assert by_step == [StepCount("q1", 2), StepCount("q2", 1)]
    assert await store.answer_people("pulse", START + timedelta(days=4), until) == [
        StepCount("q1", 1)
    ]
    assert await store.answer_people("other", since, until) == []

    assert await store.run_counts(START + 3 * WEEK, START + 4 * WEEK) == []
    assert await store.people_counts(START + 3 * WEEK, START + 4 * WEEK) == []


async def test_gatherings_held_in_a_period_oldest_first(store: Storage) -> None:
    def held(gathering_id: str, code: str, days: int) -> GatheringRow:
        at = START + timedelta(days=days)
        return GatheringRow(
            gathering_id, code, "pulse", f"supper {days}", "fac", "telegram", b"g", b"d", False,
            0, "open", at, at + WEEK,
        )  # fmt: skip

    for gathering in (held("g2", "BBBBBB", 3), held("g1", "AAAAAA", 1), held("g3", "CCCCCC", 8)):
        await store.commit(Commit(gathering=gathering))
    assert await store.gatherings_held(START, START + WEEK) == [
        GatheringHeld("pulse", "supper 1", "AAAAAA"),
        GatheringHeld("pulse", "supper 3", "BBBBBB"),
    ]


async def test_export_pages_follow_each_other_and_leave_out_the_forgotten(store: Storage) -> None:
    def said(run_id: str, who: str, step: str, value: str, minutes: int) -> AnswerRow:
        at = START + timedelta(minutes=minutes)
        return AnswerRow(run_id, step, who, "pulse", 1, "choose", value, at)

    await store.commit(
        Commit(
            runs=[run("r1", "ana", "finished", 0, language="es"), run("r2", "ben", "finished", 0)],
            answers=[
                said("r1", "ana", "sector", '"care"', 1),
                said("r2", "ben", "sector", '"care"', 2),
                said("r1", "ana", "shift", '"night"', 3),
                said("r2", "ben", "shift", '"day"', 4),
                said("r3", "cy", "sector", '"retail"', 5),  # no run row: no language
            ],
        )
    )
    await store.forget("cy", START + timedelta(hours=1))  # forgotten after answering
    rows: list[ExportRow] = []
    after: tuple[str, str, str] | None = None
    while page := await store.export_rows("pulse", None, None, after, 2):
        rows += page
        last = page[-1]
        after = (last.answered_at, last.run_id, last.step)
    assert [(r.run_id, r.step, r.value, r.language) for r in rows] == [
        ("r1", "sector", '"care"', "es"),
        ("r2", "sector", '"care"', ""),
        ("r1", "shift", '"night"', "es"),
        ("r2", "shift", '"day"', ""),
    ]
    assert rows[0] == ExportRow(
        rows[0].answered_at, "r1", "sector", 1, "ana", "choose", '"care"', "es"
    )
    by_run = await store.export_rows("pulse", None, None, None, 10, by_run=True)
    assert [(r.run_id, r.step) for r in by_run] == [
        ("r1", "sector"), ("r1", "shift"), ("r2", "sector"), ("r2", "shift"),
    ]  # fmt: skip
    since = START + timedelta(minutes=2)
    until = START + timedelta(minutes=4)
    assert [r.step for r in await store.export_rows("pulse", since, until, None, 10)] == [
        "sector",
        "shift",
    ]
    # Distinct people per option, for holding back rare ones from public data.
    counts = await store.choice_counts("pulse", START, START + WEEK)
    assert sorted(counts, key=lambda c: (c.step, c.value)) == [
        ChoiceCount("sector", '"care"', 2),
        ChoiceCount("shift", '"day"', 1),
        ChoiceCount("shift", '"night"', 1),
    ]


async def test_values_counted_by_people_for_public_release(store: Storage) -> None:
    """Every value a public release may hold back: options of choose and choose-many
    steps (each option of a list apart; a skipped list has none), scale points and
    numbers, by distinct people (one person twice is one)."""
    at = START + timedelta(minutes=1)
    given = [("ana", "r1", '["pay", "union"]', "3", "40"), ("ben", "r2", '["pay"]', "3", "12.5"),
             ("ana", "r3", '["pay"]', "5", "40"), ("cy", "r4", "null", "null", "40")]  # fmt: skip
    steps = (("helps", "choose_many"), ("worry", "scale"), ("hours", "number"), ("story", "ask"))
    answers = [
        AnswerRow(r, step, who, "pulse", 1, kind, value, at)
        for who, r, *values in given
        for (step, kind), value in zip(steps, [*values, '"hi"'], strict=True)
    ]
    await store.commit(Commit(runs=[run(r, who, "finished", 0) for who, r, *_ in given],
                              answers=answers))  # fmt: skip
    counts = await store.choice_counts("pulse", START, START + WEEK)
    counted = {(c.step, json.loads(c.value)): c.people for c in counts}
    assert counted == {
        ("helps", "pay"): 2, ("helps", "union"): 1,
        ("worry", 3): 2, ("worry", 5): 1, ("worry", None): 1,
        ("hours", 40): 2, ("hours", 12.5): 1,
    }  # fmt: skip
    # Only what was answered in the period asked about.
    assert await store.choice_counts("pulse", at + timedelta(seconds=1), START + WEEK) == []


async def test_free_text_pages_carry_the_run_language_when_asked(store: Storage) -> None:
    """Themes group each language apart, reading only free-text steps: each answer comes
    with its run's language ("" for a run without one, or with no run row)."""
    at = START + timedelta(minutes=1)
    await store.commit(
        Commit(
            runs=[run("r1", "ana", "finished", 0, language="es"), run("r2", "ben", "finished", 0)],
            answers=[
                AnswerRow("r1", "story", "ana", "pulse", 1, "ask", '"más horas"', at),
                AnswerRow("r2", "story", "ben", "pulse", 1, "ask", '"more hours"', at),
                AnswerRow("r3", "story", "cy", "pulse", 1, "ask", '"less pay"', at),  # no run
                AnswerRow("r1", "sector", "ana", "pulse", 1, "choose", '"care"', at),
            ],
        )
    )
    until = START + WEEK
    pages = [p async for p in store.answer_text_pages("pulse", ["story"], START, until,
                                                      with_language=True)]  # fmt: skip
    assert [(a.participant, a.value, a.language) for page in pages for a in page] == [
        ("ana", '"más horas"', "es"),
        ("ben", '"more hours"', ""),
        ("cy", '"less pay"', ""),
    ]
    plain = [a async for page in store.answer_text_pages("pulse", ["story"], START, until)
             for a in page]  # fmt: skip
    assert [(a.participant, a.language) for a in plain] == [("ana", ""), ("ben", ""), ("cy", "")]


async def test_a_run_counts_as_it_stood_when_the_period_ended(store: Storage) -> None:
    """A report of a past period must not change when someone finishes later (the public
    report's figures would show what one person did): a run that ended after the period
    is counted as still under way in it."""
    began, ended = START + timedelta(days=1), START + timedelta(days=6)
    late = RunRow("r1", "ana", "pulse", 1, "h1", "finished", "{}", began, ended)
    early = RunRow("r2", "ben", "pulse", 1, "h1", "stopped", "{}", began, began)
    await store.commit(Commit(runs=[late, early]))
    then = await store.run_counts(START, START + timedelta(days=3))
    assert sorted(then, key=lambda c: c.status) == [
        RunCount("pulse", "active", 1, 1),
        RunCount("pulse", "stopped", 1, 1),
    ]
    now = await store.run_counts(START, START + timedelta(days=7))
    assert sorted(now, key=lambda c: c.status) == [
        RunCount("pulse", "finished", 1, 1),
        RunCount("pulse", "stopped", 1, 1),
    ]
