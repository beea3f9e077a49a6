"""What a room said: the figures of a gathering's summary, computed from stored rows.

Pure: rows and a guide in, plain data out; `bot/reports.py` renders it. The
minimum-group rule is `bot/reports/min_group.py`'s, the same as the digest's (each question
is broken down by `bot/reports/breakdown.py`); besides it:

- nothing from a `sensitive` step, ever;
- too few who took part, or answered a question, and it is left out with a note;
- quotes only from `quotable` steps, scrubbed again, at most one per person,
  picked at random (seeded by the gathering, so a summary is stable) rather
  than the first few who answered;
- each free-text question that enough people answered is grouped into themes
  (`bot/reports/themes/`), so the room sees what it talked about before it leaves.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.flows.guide import Guide, StepKind
from bot.flows.scrub import scrub
from bot.flows.text import localize
from bot.reports import min_group as rule
from bot.reports.breakdown import Breakdown, Count, breakdown
from bot.reports.quotes import Quote, quoting
from bot.reports.themes.model import Answer, QuestionThemes, Quoted, quoted, theme_quotes
from bot.reports.themes.service import answer_id, find_themes, without_answers
from storage.rows import AnswerRow, RunRow

MAX_QUOTES = 5


@dataclass(frozen=True)
class Figure:
    """One question's results: rows for choices, ranges and a middle value for numbers."""

    step: str
    question: str
    kind: str
    responses: int
    suppressed: bool
    shown: Breakdown = field(default_factory=Breakdown)  # rows and middle, by the rule


@dataclass(frozen=True)
class Summary:
    title: str
    guide_title: str
    joined: int
    finished: int
    min_group: int
    suppressed: bool  # too few took part to show anything but that
    figures: list[Figure]
    quotes: list[str]
    quotes_suppressed: bool
    themes: list[QuestionThemes] = field(default_factory=list)  # per free-text question

    @property
    def finished_shown(self) -> Count:
        """How many finished, as the minimum-group rule lets it be shown (`n` in the
        templates): "6 took part and 4 finished" told that 2 stopped (found by review)."""
        return Count(rule.count(self.finished, self.min_group))

    @property
    def quoting(self) -> list[str]:
        """Whose words it quotes, under its themes or as quotes (see bot/reports/quotes.py)."""
        return quoting([*self.quotes, *theme_quotes(self.themes)])

    @property
    def nothing_shown(self) -> bool:
        """Enough people took part, but too few answered each question to show any."""
        return (
            not self.suppressed
            and bool(self.figures)
            and all(f.suppressed for f in self.figures)
            and not self.quotes
            and not self.themes
        )


@dataclass(frozen=True)
class Progress:
    """A gathering while it runs: who joined, who is answering, who finished, and where
    the ones still answering are (drop-off by step)."""

    title: str
    code: str
    joined: int
    in_progress: int
    finished: int
    stopped: int
    at_question: list[tuple[int, int]]  # (question number, 0 for consent; how many are there)
    status: str
    part: int | None


def summarize(
    guide: Guide,
    language: str,
    title: str,
    runs: Sequence[RunRow],
    answers: Sequence[AnswerRow],
    min_group: int,
    seed: str,
) -> Summary:
    joined = len({r.participant for r in runs if r.status != "declined"})
    finished = len({r.participant for r in runs if r.status == "finished"})
    guide_title = localize(guide.title, language, guide.default_language)
    if joined < min_group:
        return Summary(title, guide_title, joined, finished, min_group, True, [], [], True)
    by_step: dict[str, list[AnswerRow]] = {}
    for answer in answers:
        by_step.setdefault(answer.step, []).append(answer)
    figures: list[Figure] = []
    themes: list[QuestionThemes] = []
    quotable: list[tuple[str, str]] = []  # (participant, text)
    for step in guide.questions:
        if step.sensitive:
            continue
        given = [(a.participant, json.loads(a.value)) for a in by_step.get(step.id, [])]
        given = [(who, value) for who, value in given if value is not None]
        question = localize(step.text, language, guide.default_language)
        people = len({who for who, _ in given})
        if step.kind is StepKind.ASK:
            if step.quotable and people >= min_group:
                quotable += [(who, str(value)) for who, value in given]
            if people >= min_group:
                found = _themes(guide, step.id, question, runs, by_step[step.id], min_group)
                themes += [found] if found.found else []
            continue
        if people < min_group:
            figures.append(Figure(step.id, question, step.kind.value, people, True))
            continue
        figures.append(_figure(guide, step.id, question, language, given, people, min_group))
    quotes_suppressed = (
        any(s.quotable and not s.sensitive and s.kind is StepKind.ASK for s in guide.questions)
        and not quotable
    )
    return Summary(
        title,
        guide_title,
        joined,
        finished,
        min_group,
        False,
        figures,
        _fair_quotes(quotable, seed, besides=quoted(themes)),
        quotes_suppressed,
        themes,
    )


def _themes(
    guide: Guide, step_id: str, question: str, runs: Sequence[RunRow], answers: list[AnswerRow],
    min_group: int,
) -> QuestionThemes:  # fmt: skip
    """A free-text question's themes, in each person's language (their run's)."""
    step = guide.step(step_id)
    spoken = {r.id: json.loads(r.state).get("language") or guide.default_language for r in runs}
    given = []
    for answer in answers:
        value = json.loads(answer.value)
        if isinstance(value, str) and value.strip():
            text = value if step.scrub else scrub(value)  # only scrubbed text, ever
            language = spoken.get(answer.run_id, guide.default_language)
            given.append(Answer(answer_id(answer.run_id, step_id), answer.participant, language,
                                text, step.quotable))  # fmt: skip
    found = find_themes(given, min_group=min_group, codebook=None)
    return QuestionThemes(step_id, question, without_answers(found))


def _figure(
    guide: Guide,
    step_id: str,
    question: str,
    language: str,
    given: list[tuple[str, object]],
    people: int,
    min_group: int,
) -> Figure:
    step = guide.step(step_id)
    counts: Counter[str] = Counter()
    for _, value in given:
        if step.kind in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
            # A person's choices, once each, even if a list repeats one.
            counts.update(
                {str(option) for option in (value if isinstance(value, list) else [value])}
            )
        elif isinstance(value, int | float):
            counts[_key(value)] += 1
    shown = breakdown(guide, step, language, counts, None, min_group)
    return Figure(step_id, question, step.kind.value, people, False, shown)


def _key(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _fair_quotes(candidates: list[tuple[str, str]], seed: str, besides: Quoted) -> list[str]:
    """At most one quote per person, chosen at random (stably for one gathering), none of
    them one shown already (`besides`: under a theme)."""
    per_person: dict[str, list[str]] = {}
    for who, text in candidates:
        if scrub(text) not in besides:
            per_person.setdefault(who, []).append(text)
    chooser = random.Random(seed)
    people = sorted(per_person)
    chooser.shuffle(people)
    return [Quote(scrub(chooser.choice(per_person[who])), who) for who in people[:MAX_QUOTES]]


def progress(
    guide: Guide, title: str, code: str, status: str, part: int | None, runs: Sequence[RunRow]
) -> Progress:
    counted = [r for r in runs if r.status != "declined"]
    at: Counter[str] = Counter()
    for run in counted:
        if run.status in ("active", "consent"):
            step = json.loads(run.state).get("step") or "_consent"
            at[step] += 1
    order = ["_consent"] + [q.id for q in guide.questions]
    return Progress(
        title,
        code,
        len(counted),
        sum(r.status in ("active", "consent") for r in counted),
        sum(r.status == "finished" for r in counted),
        sum(r.status in ("stopped", "expired") for r in counted),
        [(number, at[step]) for number, step in enumerate(order) if at[step]],
        status,
        part,
    )
