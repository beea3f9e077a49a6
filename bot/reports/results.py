"""A guide's results over a period, as the console's results page and the public report
show them: each question's figures with the change from the period before, any question
broken down by a choice question, how many reached each step, and quotes.

Read side only. Every figure keeps the one minimum-group rule (`bot/reports/min_group.py`)
through `bot/reports/breakdown.py`, the same as digests and summaries: a count of 1 to
k-1 people is None here ("fewer than k" on the page), a question fewer than k people
answered is not broken down, scales and numbers show ranges. People are counted once
however often they answered (`ReportStore.people_tallies`). Nothing from `sensitive`
steps; quotes only from `quotable` ones that at least k people answered, at most one
per person, drawn from a random point among pseudonyms (`_drawn`). Each kind of figure
is one query for the whole guide, not one per question.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from bot.flows.guide import Guide, Step, StepKind
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.reports import min_group as rule
from bot.reports.breakdown import Breakdown, Count, Row, breakdown
from storage.rows import CrossTally, PeopleCount, RunCount, StepCount, Tally, TextAnswer

QUOTES = 3  # at most, per quotable question
CHOICES = (StepKind.CHOOSE, StepKind.CHOOSE_MANY)
FIGURES = (*CHOICES, StepKind.SCALE, StepKind.NUMBER)


class ResultsStore(Protocol):
    """What results read: a few of `ReportStore`'s methods."""

    async def run_counts(self, since: datetime, until: datetime) -> list[RunCount]: ...

    async def people_counts(self, since: datetime, until: datetime) -> list[PeopleCount]: ...

    async def people_tallies(
        self, guide_id: str, since: datetime, until: datetime
    ) -> list[Tally]: ...  # fmt: skip

    async def answer_people(
        self, guide_id: str, since: datetime, until: datetime, steps: Sequence[str] | None = None
    ) -> list[StepCount]: ...

    async def cross_tallies(
        self, guide_id: str, since: datetime, until: datetime, by_step: str, step: str
    ) -> list[CrossTally]: ...

    async def text_sample(
        self, guide_id: str, step: str, since: datetime, until: datetime, after: str, limit: int
    ) -> list[TextAnswer]: ...


@dataclass(frozen=True)
class Choice:
    """A question a page may offer in a list: its id and its words."""

    id: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    number: int  # its place among the guide's questions, from 1
    text: str
    kind: str  # a StepKind's value
    responses: Count  # people who answered it, and before
    shown: Breakdown | None = None  # None: no figures (free text, or fewer than k answered)
    quotes: list[str] = field(default_factory=list)  # quotable free text only


@dataclass(frozen=True)
class Group:
    """One option of the question a breakdown is by: its people who answered the question
    broken down (None: fewer than k), and their answers (None when too few to show)."""

    label: str
    people: int | None
    shown: Breakdown | None


@dataclass(frozen=True)
class CrossBreakdown:
    question: Choice
    kind: str  # the question's kind (a StepKind's value): how its figures are drawn
    by: Choice
    groups: list[Group]
    joined: bool = False  # groups shown together, so a small one can't be worked out


@dataclass(frozen=True)
class Results:
    guide_id: str
    title: str
    since: datetime
    until: datetime  # not included
    before: datetime  # the period before: [before, since), as long as this one
    min_group: int
    people: Count  # who took part (runs under way in the period), and before
    finished: Count
    shown: bool  # False: fewer than k took part, so only that is said
    questions: list[Question]
    reached: list[Row]  # how many answered each question, in the guide's order
    breakable: list[Choice]  # questions with figures, which may be broken down
    by_options: list[Choice]  # choice questions a breakdown may be by
    cross: CrossBreakdown | None = None


def _text(guide: Guide, step: Step, language: str) -> str:
    return localize(step.text, language, guide.default_language)


def breakable(guide: Guide, language: str) -> list[Choice]:
    """Questions with figures (not free text, not sensitive), in the guide's order."""
    return [Choice(s.id, _text(guide, s, language)) for s in guide.questions
            if s.kind in FIGURES and not s.sensitive]  # fmt: skip


def by_options(guide: Guide, language: str) -> list[Choice]:
    """Choice questions (not sensitive) a breakdown may be by."""
    return [Choice(s.id, _text(guide, s, language)) for s in guide.questions
            if s.kind in CHOICES and not s.sensitive]  # fmt: skip


async def build_results(
    storage: ResultsStore,
    guide: Guide,
    since: datetime,
    until: datetime,
    *,
    min_group: int,
    language: str = "en",
    question: str | None = None,
    by: str | None = None,
    quotes: int = QUOTES,
) -> Results:
    """The guide's results in [since, until), compared with the period as long before it;
    with `question` and `by` (step ids), that question broken down by that choice
    question (ignored unless both may be: `breakable`, `by_options`)."""
    k = min_group
    before = since - (until - since)
    figures = [s for s in guide.questions if s.kind in FIGURES and not s.sensitive]
    asked = [s for s in guide.questions if not s.sensitive]
    quotable = [s for s in asked if s.kind is StepKind.ASK and s.quotable]
    counts = asyncio.gather(
        storage.people_counts(since, until), storage.people_counts(before, since),
        storage.run_counts(since, until),
    )  # fmt: skip
    answers = asyncio.gather(
        storage.people_tallies(guide.id, since, until),
        storage.people_tallies(guide.id, before, since),
        storage.answer_people(guide.id, since, until),
        storage.answer_people(guide.id, before, since, [s.id for s in asked]),
    )  # fmt: skip
    (
        (people_now, people_then, runs_now),
        (tallies_now, tallies_then, answered_now, answered_then),
    ) = await asyncio.gather(counts, answers)
    took_part = next((c.people for c in people_now if c.guide_id == guide.id), 0)
    took_part_before = next((c.people for c in people_then if c.guide_id == guide.id), 0)
    finished = sum(r.people for r in runs_now
                   if r.guide_id == guide.id and r.status == "finished")  # fmt: skip
    title = localize(guide.title, language, guide.default_language)
    offers = (breakable(guide, language), by_options(guide, language))
    if took_part < k:  # too few to say anything but that
        return Results(guide.id, title, since, until, before, k, Count(rule.count(took_part, k)),
                       Count(None), False, [], [], *offers)  # fmt: skip
    reached_now = {c.step: c.count for c in answered_now}
    reached_then = {c.step: c.count for c in answered_then}
    now_by_step, then_by_step = _by_step(tallies_now), _by_step(tallies_then)
    may = question in {s.id for s in figures} and by in {c.id for c in offers[1]}
    crossed = question is not None and by is not None and question != by and may
    said, cross = await asyncio.gather(
        _quotes(storage, guide, [s for s in quotable if reached_now.get(s.id, 0) >= k],
                since, until, quotes),
        _cross(storage, guide, since, until, question, by, language, k) if crossed else _none(),
    )  # fmt: skip
    questions = []
    for number, step in enumerate(guide.questions, start=1):
        if step.sensitive:
            continue
        counted = _count(reached_now.get(step.id, 0), reached_then.get(step.id), k)
        shown = None
        if step.kind in FIGURES and reached_now.get(step.id, 0) >= k:
            then = then_by_step.get(step.id, {}) if counted.before is not None else None
            shown = breakdown(guide, step, language, now_by_step.get(step.id, {}), then, k)
        questions.append(Question(step.id, number, _text(guide, step, language), step.kind.value,
                                  counted, shown, said.get(step.id, [])))  # fmt: skip
    reached = [Row(f"{n}. {_text(guide, s, language)}", Count(rule.count(reached_now.get(s.id, 0), k)))
               for n, s in enumerate(guide.questions, start=1) if not s.sensitive]  # fmt: skip
    return Results(
        guide.id, title, since, until, before, k, _count(took_part, took_part_before, k),
        Count(rule.count(finished, k)), True, questions, reached, *offers, cross,
    )  # fmt: skip


async def _none() -> None:
    return None


def _count(now: int, before: int | None, k: int) -> Count:
    """A count and, when both may be shown, the one before (as the digest compares)."""
    shown = rule.count(now, k)
    compared = shown is not None and before is not None and before >= k
    return Count(shown, before if compared else None)


def _name(value: str) -> str:
    """A stored value (JSON) as `breakdown` takes it: an option's id, or a number as text."""
    key = json.loads(value)
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def _by_step(tallies: list[Tally]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for tally in tallies:
        values = found.setdefault(tally.step, {})
        name = _name(tally.value)
        values[name] = values.get(name, 0) + tally.count
    return found


async def _cross(
    storage: ResultsStore, guide: Guide, since: datetime, until: datetime, question: str | None,
    by: str | None, language: str, k: int,
) -> CrossBreakdown:  # fmt: skip
    assert question is not None and by is not None
    step, by_step = guide.step(question), guide.step(by)
    rows = await storage.cross_tallies(guide.id, since, until, by, question)
    people: dict[str, int] = {}
    values: dict[str, dict[str, int]] = {}
    for row in rows:
        group = _name(row.group)
        if row.value is None:
            people[group] = row.people
        else:
            values.setdefault(group, {})[_name(row.value)] = row.people
    options = by_step.option_list()
    groups = []
    made = _groups([people.get(o.id, 0) for o in options], k,
                   one_answer=by_step.kind is StepKind.CHOOSE)  # fmt: skip
    for members in made:
        label = " / ".join(localize(options[n].label, language, guide.default_language)
                           for n in members)  # fmt: skip
        here = sum(people.get(options[n].id, 0) for n in members)
        answers: dict[str, int] = {}
        for n in members:
            for value, count in values.get(options[n].id, {}).items():
                answers[value] = answers.get(value, 0) + count
        shown = None
        if here >= k:  # rule 2: broken down only when k people are in it
            shown = breakdown(guide, step, language, answers, None, k)
        groups.append(Group(label, rule.count(here, k), shown))
    return CrossBreakdown(Choice(step.id, _text(guide, step, language)), step.kind.value,
                          Choice(by_step.id, _text(guide, by_step, language)), groups,
                          joined=any(len(members) > 1 for members in made))  # fmt: skip


def _groups(sizes: list[int], k: int, *, one_answer: bool) -> list[tuple[int, ...]]:
    """The options a breakdown's groups are made of, in order (rule 3, for groups).

    The question broken down is also shown whole on the same page, so when each person is
    in one group, whole minus the groups shown is the groups hidden: their answers, taken
    together, could be read by subtraction. So the hidden groups are shown as one, and
    when that one still has fewer than k people, joined with the smallest group shown,
    as rule 3 joins options. (With several answers each, groups overlap and the
    subtraction gives nothing.)"""
    alone = [(n,) for n in range(len(sizes))]
    hidden = [n for n, size in enumerate(sizes) if 0 < size < k]
    if not one_answer or not hidden:
        return alone
    joined = hidden
    if sum(sizes[n] for n in hidden) < k:
        shown = [n for n, size in enumerate(sizes) if size >= k]
        joined = sorted(hidden + ([min(shown, key=lambda n: (sizes[n], n))] if shown else []))
    rest = [(n,) for n in range(len(sizes)) if n not in joined]
    at = next((i for i, (n,) in enumerate(rest) if n > joined[0]), len(rest))
    return [*rest[:at], tuple(joined), *rest[at:]]


async def _quotes(
    storage: ResultsStore, guide: Guide, steps: list[Step], since: datetime, until: datetime,
    most: int,
) -> dict[str, list[str]]:  # fmt: skip
    """Up to `most` quotes for each step, one per person."""
    found = await asyncio.gather(*(_drawn(storage, guide.id, s.id, since, until, most)
                                   for s in steps))  # fmt: skip
    return {step.id: quotes for step, quotes in zip(steps, found, strict=True) if quotes}


async def _drawn(
    storage: ResultsStore, guide_id: str, step: str, since: datetime, until: datetime, most: int
) -> list[str]:
    """One answer each from the first `most` people (with something said) whose pseudonyms
    sort after a point hashed from the guide, the step and the period, going round to the
    start when the end is reached. Pseudonyms are keyed hashes, so the point draws people
    at random, the same ones for the same view, and only their answers are read."""
    if most <= 0:
        return []
    point = hashlib.blake2b(f"{guide_id}:{step}:{since.isoformat()}:{until.isoformat()}".encode(),
                            digest_size=16).hexdigest()  # fmt: skip
    limit = most * 4  # rows a read: some people answered more than once
    said: dict[str, str] = {}  # person -> their answer, in the order drawn
    after, wrapped = point, False
    while len(said) < most:
        rows = await storage.text_sample(guide_id, step, since, until, after, limit)
        for row in rows:
            if wrapped and row.participant > point:
                return _scrubbed(said)  # round to where the draw began: everyone was seen
            text = json.loads(row.value)
            if isinstance(text, str) and text.strip() and len(said) < most:
                said.setdefault(row.participant, text)
        if len(rows) == limit:
            after = rows[-1].participant  # the last person's other answers are passed over
        elif wrapped:
            break
        else:
            after, wrapped = "", True
    return _scrubbed(said)


def _scrubbed(said: dict[str, str]) -> list[str]:
    return [scrub(text) for text in said.values()]
