"""A coordinator's digest: what people said over a period, per guide, from stored rows.

Pure apart from its reads. Every figure keeps the minimum-group rule
(`bot/reports/min_group.py`), the same as a gathering's summary: a count from fewer than
`min_group` people shows as "fewer than N", and each question is broken down by
`bot/reports/breakdown.py` (ranges for scales and numbers, never one person's answer).
Nothing from `sensitive` steps; quotes only from `quotable` ones, one per person.
Each free-text question's answers are grouped into themes (`bot/reports/themes/`), with
the coordinator's codebook for it when there is one.
Recurring words and two-word phrases count people, not mentions, so one person
repeating a word can't make it recur. Free text is read a page at a time, on a
connection of its own, and its words are counted (`bot/digest_texts.py`) while the
shared reader works out the figures: the database and Python work at once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from bot.flows.guide import Guide, StepKind
from bot.flows.text import localize
from bot.library import GuideLibrary
from bot.reports import min_group as rule
from bot.reports.breakdown import Breakdown, Count, Row, breakdown
from bot.reports.digest_texts import Texts, read_texts
from bot.reports.quotes import quoting
from bot.reports.themes.model import QuestionThemes, quoted, theme_quotes
from bot.reports.themes.service import question_themes
from storage.protocol import ReportStore
from storage.rows import RunCount, Tally

MAX_QUOTES = 3
MAX_WORDS = 10
MAX_PHRASES = 5


@dataclass(frozen=True)
class Question:
    text: str
    kind: str
    responses: Count
    shown: Breakdown = field(default_factory=Breakdown)


@dataclass(frozen=True)
class Gathering:
    title: str  # as its facilitator named it
    code: str


@dataclass(frozen=True)
class GuideDigest:
    id: str
    title: str
    shown: bool  # False: fewer than min_group took part, so only that is said
    participants: Count
    new: Count
    started: Count
    finished: Count
    completion: float | None
    dropoff: list[Row]
    questions: list[Question]
    quotes: list[str]
    words: list[Row]
    phrases: list[Row]
    gatherings: list[Gathering]
    themes: list[QuestionThemes] = field(default_factory=list)  # per free-text question


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    min_group: int
    guides: list[GuideDigest]

    @property
    def quoting(self) -> list[str]:
        """Whose words it quotes, under its themes or as quotes (see bot/reports/quotes.py)."""
        return quoting(q for g in self.guides for q in [*g.quotes, *theme_quotes(g.themes)])


async def build_digest(
    storage: ReportStore,
    library: GuideLibrary,
    since: datetime,
    until: datetime,
    *,
    min_group: int,
    language: str = "en",
    guide_id: str | None = None,
) -> Digest:
    wanted = [loaded.guide for loaded in library.all() if loaded.guide is not None
              and (guide_id is None or loaded.guide.id == guide_id)]  # fmt: skip
    turn = asyncio.Semaphore(1)  # one guide's free text at a time: each takes a connection

    async def texts_of(guide: Guide) -> Texts:
        async with turn:
            return await read_texts(storage, guide, since, until, min_group=min_group,
                                    seed=f"{guide.id}:{since.isoformat()}", words=MAX_WORDS,
                                    phrases=MAX_PHRASES)  # fmt: skip

    # Free text takes longest (its words are counted here, in Python), so it starts at
    # once, while the shared reader works out the figures; a guide with nothing to
    # show drops its own.
    texts = [asyncio.create_task(texts_of(guide)) for guide in wanted]
    try:
        guides = await _guides(storage, wanted, texts, since, until, min_group, language)
    finally:
        for task in texts:
            task.cancel()
        await asyncio.gather(*texts, return_exceptions=True)  # their connections closed
    return Digest(since, until, min_group, guides)


async def _guides(
    storage: ReportStore, wanted: list[Guide], texts: list[asyncio.Task[Texts]], since: datetime,
    until: datetime, min_group: int, language: str,
) -> list[GuideDigest]:  # fmt: skip
    """Each wanted guide's digest; `texts` holds the guides' free-text findings, under way."""
    before = since - (until - since)
    runs, runs_then, persons, persons_then, gatherings = await asyncio.gather(
        storage.run_counts(since, until), storage.run_counts(before, since),
        storage.people_counts(since, until), storage.people_counts(before, since),
        storage.gatherings_held(since, until),
    )  # fmt: skip
    runs_now, runs_before = _runs(runs), _runs(runs_then)
    people_now = {c.guide_id: (c.people, c.new) for c in persons}
    people_before = {c.guide_id: (c.people, c.new) for c in persons_then}
    held: dict[str, list[Gathering]] = {}
    for gathering in gatherings:
        held.setdefault(gathering.guide_id, []).append(Gathering(gathering.title, gathering.code))
    guides = []
    for guide, found in zip(wanted, texts, strict=True):
        if guide.id not in people_now and guide.id not in runs_now:
            found.cancel()
            continue
        count = _counter(min_group)
        people, new = people_now.get(guide.id, (0, 0))
        was_people, was_new = people_before.get(guide.id, (0, 0))
        started, finished = runs_now.get(guide.id, (0, 0))
        was_started, was_finished = runs_before.get(guide.id, (0, 0))
        shown = people >= min_group
        title = localize(guide.title, language, guide.default_language)
        if not shown:
            found.cancel()
            guides.append(GuideDigest(guide.id, title, False, count(people, was_people),
                                      Count(None), Count(None), Count(None), None, [], [], [],
                                      [], [], held.get(guide.id, [])))  # fmt: skip
            continue
        questions, dropoff, themes = await asyncio.gather(
            _questions(storage, guide, language, since, until, before, min_group),
            _dropoff(storage, guide, language, since, until, min_group),
            question_themes(storage, guide, since, until, min_group=min_group, language=language),
        )
        said = await found
        guides.append(
            GuideDigest(
                guide.id,
                title,
                True,
                count(people, was_people),
                count(new, was_new),
                count(started, was_started),
                count(finished, was_finished),
                rule.rate(finished, started, min_group),
                dropoff,
                questions,
                await said.draw.quotes(MAX_QUOTES, besides=quoted(themes)),
                [Row(word, Count(n)) for word, n in said.words],
                [Row(phrase, Count(n)) for phrase, n in said.phrases],
                held.get(guide.id, []),
                themes,
            )
        )
    return guides


def _counter(min_group: int):  # type: ignore[no-untyped-def]
    def count(now: int, before: int | None = None) -> Count:
        # A change is shown between two figures that may both be shown, and only from a
        # period with enough people to compare with (from nothing, "+20" says nothing).
        shown = rule.count(now, min_group)
        compared = shown is not None and before is not None and before >= min_group
        return Count(shown, before if compared else None)

    return count


def _runs(rows: list[RunCount]) -> dict[str, tuple[int, int]]:
    """guide -> (runs started, runs finished), counting people, not declined invitations."""
    started: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    for row in rows:
        if row.status == "declined":
            continue
        started[row.guide_id] += row.people
        if row.status == "finished":
            finished[row.guide_id] += row.people
    return {g: (started[g], finished[g]) for g in started}


async def _questions(
    storage: ReportStore, guide: Guide, language: str, since: datetime, until: datetime,
    before: datetime, min_group: int,
) -> list[Question]:  # fmt: skip
    shown = [s for s in guide.questions if not s.sensitive and s.kind is not StepKind.ASK]
    ids = [s.id for s in shown]
    tallies_now, tallies_before, people, people_then = await asyncio.gather(
        storage.people_tallies(guide.id, since, until),
        storage.people_tallies(guide.id, before, since),
        storage.answer_people(guide.id, since, until, ids),
        storage.answer_people(guide.id, before, since, ids),
    )
    people_now = {c.step: c.count for c in people}
    people_before = {c.step: c.count for c in people_then}
    count = _counter(min_group)
    out = []
    for step in shown:
        text = localize(step.text, language, guide.default_language)
        responses = people_now.get(step.id, 0)
        counted = count(responses, people_before.get(step.id, 0))
        if responses < min_group:
            out.append(Question(text, step.kind.value, Count(rule.count(responses, min_group))))
            continue
        now = _values(tallies_now, step.id)
        then = _values(tallies_before, step.id) if counted.before is not None else None
        found = breakdown(guide, step, language, now, then, min_group)
        out.append(Question(text, step.kind.value, counted, found))
    return out


def _values(tallies: list[Tally], step: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for tally in tallies:
        if tally.step == step:
            key = json.loads(tally.value)
            name = str(key) if not isinstance(key, float) or not key.is_integer() else str(int(key))
            found[name] = found.get(name, 0) + tally.count
    return found


async def _dropoff(
    storage: ReportStore, guide: Guide, language: str, since: datetime, until: datetime,
    min_group: int,
) -> list[Row]:  # fmt: skip
    at = {c.step: c.count for c in await storage.open_steps(guide.id, since, until)}
    rows = []
    for number, step in enumerate(guide.questions, start=1):
        if step.id in at:
            label = f"{number}. {localize(step.text, language, guide.default_language)}"
            rows.append(Row(label, Count(rule.count(at[step.id], min_group))))
    return rows
