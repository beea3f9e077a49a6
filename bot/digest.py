"""A coordinator's digest: what people said over a period, per guide, from stored rows.

Pure apart from its reads. The privacy rules are the summary's (`bot/summary.py`):
no figure from fewer than `min_group` people (it shows as "fewer than N"), nothing
from `sensitive` steps, quotes only from `quotable` ones, at most one per person.
Recurring words and two-word phrases count people, not mentions, so one person
repeating a word can't make it recur.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from bot.flows.guide import Guide, StepKind
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.library import GuideLibrary
from bot.stopwords import STOP_WORDS
from storage.protocol import Storage

MAX_QUOTES = 3
MAX_WORDS = 10
MAX_PHRASES = 5
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


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
    before = since - (until - since)
    runs_now = _runs(await storage.run_counts(since, until))
    runs_before = _runs(await storage.run_counts(before, since))
    people_now = {g: (p, n) for g, p, n in await storage.people_counts(since, until)}
    people_before = {g: (p, n) for g, p, n in await storage.people_counts(before, since)}
    held = dict(await storage.gatherings_held(since, until))
    guides = []
    for loaded in library.all():
        guide = loaded.guide
        if guide is None or (guide_id is not None and guide.id != guide_id):
            continue
        if guide.id not in people_now and guide.id not in runs_now:
            continue
        count = _counter(min_group)
        people, new = people_now.get(guide.id, (0, 0))
        was_people, was_new = people_before.get(guide.id, (0, 0))
        started, finished = runs_now.get(guide.id, (0, 0))
        was_started, was_finished = runs_before.get(guide.id, (0, 0))
        shown = people >= min_group
        title = localize(guide.title, language, guide.default_language)
        if not shown:
            guides.append(GuideDigest(guide.id, title, False, count(people, was_people),
                                      Count(None), Count(None), Count(None), None, [], [], [],
                                      [], [], held.get(guide.id, 0)))  # fmt: skip
            continue
        questions = await _questions(storage, guide, language, since, until, before, min_group)
        texts = await _texts(storage, guide, since, until)
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
                await _dropoff(storage, guide, language, since, until, min_group),
                questions,
                _quotes(guide, texts, min_group, seed=f"{guide.id}:{since.isoformat()}"),
                *_recurring(guide, texts, min_group),
                held.get(guide.id, 0),
            )
        )
    return Digest(since, until, min_group, guides)


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
    tallies_now = await storage.answer_tallies(guide.id, since, until)
    tallies_before = await storage.answer_tallies(guide.id, before, since)
    people_now = dict(await storage.answer_people(guide.id, since, until))
    people_before = dict(await storage.answer_people(guide.id, before, since))
    out = []
    for step in guide.questions:
        if step.sensitive or step.kind is StepKind.ASK:
            continue
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


async def _texts(
    storage: Storage, guide: Guide, since: datetime, until: datetime
) -> list[tuple[str, str, str]]:
    steps = [s.id for s in guide.questions if s.kind is StepKind.ASK and not s.sensitive]
    return [
        (who, step, str(json.loads(value)))
        for who, step, value in await storage.answer_texts(guide.id, steps, since, until)
    ]


def _quotes(
    guide: Guide, texts: list[tuple[str, str, str]], min_group: int, seed: str
) -> list[str]:
    quotable = {s.id for s in guide.questions if s.quotable}
    by_step: dict[str, dict[str, str]] = defaultdict(dict)
    for who, step, text in texts:
        if step in quotable:
            by_step[step][who] = text
    candidates: dict[str, list[str]] = defaultdict(list)
    for answers in by_step.values():
        if len(answers) >= min_group:
            for who, text in answers.items():
                candidates[who].append(text)
    chooser = random.Random(seed)
    people = sorted(candidates)
    chooser.shuffle(people)
    return [scrub(chooser.choice(candidates[who])) for who in people[:MAX_QUOTES]]


def _recurring(
    guide: Guide, texts: list[tuple[str, str, str]], min_group: int
) -> tuple[list[Row], list[Row]]:
    words: dict[str, set[str]] = defaultdict(set)
    phrases: dict[str, set[str]] = defaultdict(set)
    for who, _step, text in texts:
        # Stored answers were scrubbed when given; words are letters only, so an
        # address or a number never makes a word, and scrubbing again cost half the time.
        tokens = [t for t in _WORD.findall(text.lower()) if len(t) > 2]
        kept = [t if t not in STOP_WORDS else None for t in tokens]
        for token in kept:
            if token:
                words[token].add(who)
        for first, second in itertools.pairwise(kept):
            if first and second:
                phrases[f"{first} {second}"].add(who)

    def top(found: dict[str, set[str]], most: int) -> list[Row]:
        ranked = sorted(found.items(), key=lambda item: (-len(item[1]), item[0]))
        return [Row(word, Count(len(who))) for word, who in ranked if len(who) >= min_group][:most]

    return top(words, MAX_WORDS), top(phrases, MAX_PHRASES)
