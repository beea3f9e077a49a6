"""A coordinator's digest: what people said over a period, per guide, from stored rows.

Pure apart from its reads. The privacy rules are the summary's (`bot/summary.py`):
no figure from fewer than `min_group` people (it shows as "fewer than N"), nothing
from `sensitive` steps, quotes only from `quotable` ones, at most one per person.
Recurring words and two-word phrases count people, not mentions, so one person
repeating a word can't make it recur. Free text is read a page at a time, on a
connection of its own, and its words are counted (`bot/digest_texts.py`) while the
shared reader works out the figures: the database and Python work at once.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from bot.digest_texts import Texts, read_texts
from bot.flows.guide import Guide, StepKind
from bot.flows.text import localize
from bot.library import GuideLibrary
from storage.protocol import Storage

MAX_QUOTES = 3
MAX_WORDS = 10
MAX_PHRASES = 5


@dataclass(frozen=True)
class Count:
    """A number of people (or runs), or None when it came from too few to show."""

    value: int | None
    before: int | None = None  # the same figure in the previous period


@dataclass(frozen=True)
class Row:
    label: str
    count: Count


@dataclass(frozen=True)
class Question:
    text: str
    kind: str
    responses: Count
    rows: list[Row] = field(default_factory=list)
    median: float | None = None
    median_before: float | None = None


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
    gatherings: int


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    min_group: int
    guides: list[GuideDigest]


async def build_digest(
    storage: Storage,
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
                                    phrases=MAX_PHRASES, quotes=MAX_QUOTES)  # fmt: skip

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
    storage: Storage, wanted: list[Guide], texts: list[asyncio.Task[Texts]], since: datetime,
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
    people_now = {g: (p, n) for g, p, n in persons}
    people_before = {g: (p, n) for g, p, n in persons_then}
    held = dict(gatherings)
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
                                      [], [], held.get(guide.id, 0)))  # fmt: skip
            continue
        questions, dropoff = await asyncio.gather(
            _questions(storage, guide, language, since, until, before, min_group),
            _dropoff(storage, guide, language, since, until, min_group),
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
                finished / started if started else None,
                dropoff,
                questions,
                said.quotes,
                [Row(word, Count(n)) for word, n in said.words],
                [Row(phrase, Count(n)) for phrase, n in said.phrases],
                held.get(guide.id, 0),
            )
        )
    return guides


def _counter(min_group: int):  # type: ignore[no-untyped-def]
    def count(now: int, before: int | None = None) -> Count:
        shown_before = before if before is not None and before >= min_group else None
        return Count(now if now >= min_group else None, shown_before)

    return count


def _runs(rows: list[tuple[str, str, int, int]]) -> dict[str, tuple[int, int]]:
    """guide -> (runs started, runs finished), counting people, not declined invitations."""
    started: Counter[str] = Counter()
    finished: Counter[str] = Counter()
    for guide, status, _runs_count, people in rows:
        if status == "declined":
            continue
        started[guide] += people
        if status == "finished":
            finished[guide] += people
    return {g: (started[g], finished[g]) for g in started}


async def _questions(
    storage: Storage, guide: Guide, language: str, since: datetime, until: datetime,
    before: datetime, min_group: int,
) -> list[Question]:  # fmt: skip
    shown = [s for s in guide.questions if not s.sensitive and s.kind is not StepKind.ASK]
    ids = [s.id for s in shown]
    tallies_now, tallies_before, people, people_then = await asyncio.gather(
        storage.answer_tallies(guide.id, since, until),
        storage.answer_tallies(guide.id, before, since),
        storage.answer_people(guide.id, since, until, ids),
        storage.answer_people(guide.id, before, since, ids),
    )
    people_now, people_before = dict(people), dict(people_then)
    out = []
    for step in shown:
        text = localize(step.text, language, guide.default_language)
        responses = people_now.get(step.id, 0)
        was = people_before.get(step.id, 0)
        counted = Count(responses if responses >= min_group else None,
                        was if was >= min_group else None)  # fmt: skip
        if counted.value is None:
            out.append(Question(text, step.kind.value, counted))
            continue
        now = _values(tallies_now, step.id)
        then = _values(tallies_before, step.id) if counted.before is not None else None
        if step.kind in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
            rows = [
                Row(localize(o.label, language, guide.default_language),
                    Count(now.get(o.id, 0), None if then is None else then.get(o.id, 0)))
                for o in step.option_list()
            ]  # fmt: skip
            out.append(Question(text, step.kind.value, counted, rows))
            continue
        numbers = {float(k): v for k, v in now.items()}
        rows = [Row(_show(k), Count(v)) for k, v in sorted(numbers.items())]
        if step.kind is StepKind.SCALE:
            low, high = step.scale_range()
            ends = {p: localize(label, language, guide.default_language)
                    for p, label in (step.labels or {}).items()}  # fmt: skip
            rows = [
                Row(f"{p} {ends[p]}" if p in ends else str(p), Count(int(numbers.get(p, 0))))
                for p in range(low, high + 1)
            ]
        elif len(rows) > 10:
            rows = _bands(numbers)
        out.append(
            Question(text, step.kind.value, counted, rows, _median(numbers),
                     None if then is None else _median({float(k): v for k, v in then.items()}))
        )  # fmt: skip
    return out


def _values(tallies: list[tuple[str, str, int]], step: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for tally_step, value, count in tallies:
        if tally_step == step:
            key = json.loads(value)
            found[
                str(key) if not isinstance(key, float) or not key.is_integer() else str(int(key))
            ] = count
    return found


def _median(counts: dict[float, int]) -> float | None:
    values = [value for value, count in sorted(counts.items()) for _ in range(count)]
    return statistics.median(values) if values else None


def _bands(numbers: dict[float, int]) -> list[Row]:
    low, high = min(numbers), max(numbers)
    width = (high - low) / 5 or 1
    bands: Counter[int] = Counter()
    for value, count in numbers.items():
        bands[min(int((value - low) / width), 4)] += count
    return [Row(f"{_show(low + i * width)}–{_show(low + (i + 1) * width)}", Count(bands[i]))
            for i in range(5)]  # fmt: skip


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:.1f}"


async def _dropoff(
    storage: Storage, guide: Guide, language: str, since: datetime, until: datetime,
    min_group: int,
) -> list[Row]:  # fmt: skip
    at = dict(await storage.open_steps(guide.id, since, until))
    rows = []
    for number, step in enumerate(guide.questions, start=1):
        if step.id in at:
            label = f"{number}. {localize(step.text, language, guide.default_language)}"
            rows.append(Row(label, Count(at[step.id] if at[step.id] >= min_group else None)))
    return rows
