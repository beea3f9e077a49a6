"""Free text in a digest, read a page at a time: recurring words and two-word phrases
counted by people, and the quotes.

Pages come with each person's answers together (`ReportStore.answer_text_pages`), so a
word is counted once per person from a small set of that one person's words, never
from a set of people per word: memory grows with the vocabulary, not with people
times words. For quotes only the runs of each person's latest answers to quotable
steps are kept (`Draw`); the answers of the few people drawn are read again, by run,
once the digest knows what its themes quote already.

The rules are the digest's (`bot/reports/digest.py`): quotes only from `quotable` steps that
at least `min_group` people answered, at most one per person, drawn at random but
the same for the same seed; a word or phrase is shown once `min_group` people used it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import re
from collections import Counter
from collections.abc import Container
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime

from bot.flows.guide import Guide, StepKind
from bot.flows.scrub import scrub
from bot.reports.quotes import Quote
from bot.reports.stopwords import STOP_WORDS
from storage.protocol import ReportStore

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class Texts:
    """What a period's free text gave: (word or phrase, people), most used first, and
    who could be quoted."""

    words: list[tuple[str, int]]
    phrases: list[tuple[str, int]]
    draw: Draw


async def read_texts(
    storage: ReportStore, guide: Guide, since: datetime, until: datetime, *, min_group: int,
    seed: str, words: int, phrases: int,
) -> Texts:  # fmt: skip
    """The most used `words` and `phrases` from the answers to the guide's free-text
    steps (not `sensitive` ones) in [since, until), and who could be quoted."""
    steps = [s for s in guide.questions if s.kind is StepKind.ASK and not s.sensitive]
    recurring = _Recurring()
    draw = Draw(
        storage, guide.id, since, until, min_group, seed, [s.id for s in steps if s.quotable]
    )
    person: str | None = None
    said: list[str] = []
    runs: list[str | None] = []  # the run of their latest answer to each quotable step
    pages = storage.answer_text_pages(guide.id, [s.id for s in steps], since, until)
    async with aclosing(pages):
        async for page in pages:
            for row in page:  # a person's rows may run on into the next page
                if row.participant != person:
                    if person is not None:
                        recurring.add(said)
                        draw.add(runs)
                    person, said, runs = row.participant, [], [None] * len(draw.steps)
                said.append(_text(row.value))
                if row.step in draw.at:
                    runs[draw.at[row.step]] = row.run_id
            recurring.settle()
    if person is not None:
        recurring.add(said)
        draw.add(runs)
    recurring.settle()
    return Texts(
        recurring.top(recurring.words, words, min_group),
        recurring.top(recurring.phrases, phrases, min_group),
        draw,
    )


def _text(value: str) -> str:
    """An answer's text from its JSON. Most are strings with nothing escaped, whose JSON
    is the text in quotes: taken as it is, without decoding, which was a fifth of the
    time spent on each text."""
    if value[:1] == '"' and "\\" not in value:
        return value[1:-1]
    return str(json.loads(value))


class _Vocabulary(dict[str, str | None]):
    """Each word seen, mapped to itself, or to None for a stop word (which also ends a
    phrase); looked up once per word ever seen, not once per use."""

    def __missing__(self, word: str) -> str | None:
        kept = self[word] = None if word in STOP_WORDS else word
        return kept


class _Recurring:
    """People per word and per phrase, fed one person's texts at a time."""

    def __init__(self) -> None:
        self.words: Counter[str | None] = Counter()
        self.phrases: Counter[str | None] = Counter()
        self._vocabulary = _Vocabulary()
        self._words: list[set[str | None]] = []  # a set per person, counted at `settle`
        self._phrases: list[set[str]] = []

    def add(self, texts: list[str]) -> None:
        """One person's texts: each word and phrase in them counts them once."""
        words: set[str | None] = set()
        phrases: set[str] = set()
        lookup = self._vocabulary.__getitem__
        for text in texts:
            # Stored answers were scrubbed when given; words are letters only, so an
            # address or a number never makes a word. Words of one or two letters are
            # left out without ending a phrase; stop words end one (they map to None).
            kept = [lookup(token) for token in _WORD.findall(text.lower()) if len(token) > 2]
            words.update(kept)
            # all((first, second)): neither is a stop word.
            phrases.update(map(" ".join, filter(all, itertools.pairwise(kept))))  # type: ignore[arg-type]
        self._words.append(words)
        self._phrases.append(phrases)

    def settle(self) -> None:
        """Count the people added since last time: one Counter update for many people
        costs less than one each."""
        self.words.update(itertools.chain.from_iterable(self._words))
        self.phrases.update(itertools.chain.from_iterable(self._phrases))
        self._words.clear()
        self._phrases.clear()

    @staticmethod
    def top(counts: Counter[str | None], most: int, min_group: int) -> list[tuple[str, int]]:
        """The `most` used by at least `min_group` people: most people first, then A-Z."""
        ranked = heapq.nsmallest(
            most, ((-n, word) for word, n in counts.items() if word is not None and n >= min_group)
        )
        return [(word, -n) for n, word in ranked]


class Draw:
    """Who could be quoted: each person who answered a quotable step, in participant
    order (the order pages come in), as the runs of their latest answer to each."""

    def __init__(
        self, storage: ReportStore, guide_id: str, since: datetime, until: datetime,
        min_group: int, seed: str, steps: list[str],
    ) -> None:  # fmt: skip
        self._read = (storage, guide_id, since, until)
        self._min_group = min_group
        self._seed = seed
        self.steps = steps
        self.at = {step: n for n, step in enumerate(steps)}
        self.people: list[tuple[str | None, ...]] = []

    def add(self, runs: list[str | None]) -> None:
        if any(runs):
            self.people.append(tuple(runs))

    async def quotes(self, most: int, besides: Container[str] = ()) -> list[str]:
        """Shuffle everyone who answered a step that `min_group` people answered, and
        take one of each one's answers to those steps, at random, in that order, until
        there are `most`; an answer shown already (`besides`: under a theme, `quoted`) is passed
        over, and the next person's taken.

        People are in sorted order already, and a shuffle depends only on the number of
        things shuffled, so shuffling their positions draws as shuffling them would;
        only the answers of those drawn are read again, a few people at a time."""
        storage, guide_id, since, until = self._read
        answered = [sum(map(bool, step)) for step in zip(*self.people, strict=True)]
        shown = [n for n, people in enumerate(answered) if people >= self._min_group]
        candidates = [runs for runs in self.people if any(map(runs.__getitem__, shown))]
        chooser = random.Random(self._seed)
        order = list(range(len(candidates)))
        chooser.shuffle(order)
        quotes: list[str] = []
        start = 0
        while len(quotes) < most and start < len(order):
            # As many as are still wanted, then twice as many: nearly always one read.
            ahead = most if start == 0 else 2 * (most - len(quotes))
            drawn = [candidates[n] for n in order[start : start + ahead]]
            start += len(drawn)
            found: dict[tuple[str | None, str], tuple[str, str]] = {}  # (run, step) -> text, who
            pages = storage.answer_text_pages(
                guide_id, [self.steps[n] for n in shown], since, until,
                runs=sorted({run for runs in drawn for n in shown if (run := runs[n])}),
            )  # fmt: skip
            async with aclosing(pages):
                async for page in pages:
                    for row in page:
                        found[row.run_id, row.step] = (_text(row.value), row.participant)
            for runs in drawn:
                said = [found[key] for n in shown if (key := (runs[n], self.steps[n])) in found]
                if not said:  # erased since the first read
                    continue
                text, who = chooser.choice(said)
                quote = scrub(text)
                if quote not in besides and len(quotes) < most:
                    quotes.append(Quote(quote, who))
        return quotes
