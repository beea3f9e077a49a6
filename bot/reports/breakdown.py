"""One question's answers as every report shows them: rows and a middle value, by the
minimum-group rule (`bot/reports/min_group.py`), labelled in the reader's language.

The gathering summary and the digest both call `breakdown`, so a room and a
coordinator see the same figures for the same people. Templates draw the rows; a
number's range (`Row.span`) is worded there ("under 40", "60 or more").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.flows.guide import Guide, Step, StepKind
from bot.flows.text import localize
from bot.reports import min_group as rule


@dataclass(frozen=True)
class Count:
    """A number of people as shown (None: fewer than the minimum group), and the same
    figure in the period before, when both may be shown."""

    value: int | None
    before: int | None = None


@dataclass(frozen=True)
class Row:
    label: str  # an option or options, a scale's points; empty for a number's range
    count: Count
    span: rule.Range | None = None  # a number's range, worded by the template


@dataclass(frozen=True)
class Breakdown:
    rows: list[Row] = field(default_factory=list)
    middle: Row | None = None  # the range holding the median, as a row's label or span
    middle_before: Row | None = None
    one_range: bool = False  # answers too few to split without giving one away
    joined: bool = False  # some options shown together (bot/reports/min_group.py, rule 3)


def breakdown(
    guide: Guide, step: Step, language: str, now: Mapping[str, int],
    before: Mapping[str, int] | None, k: int,
) -> Breakdown:  # fmt: skip
    """`now` and `before` count people by answer: an option's id, or a number as text."""
    if step.kind in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
        return _choices(guide, step, language, now, before, k)
    if step.kind is StepKind.SCALE:
        return _scale(guide, step, language, now, before, k)
    return _number(now, before, k)


def _choices(
    guide: Guide, step: Step, language: str, now: Mapping[str, int],
    before: Mapping[str, int] | None, k: int,
) -> Breakdown:  # fmt: skip
    options = step.option_list()
    one = step.kind is StepKind.CHOOSE
    groups = rule.choices([now.get(o.id, 0) for o in options], k, one_answer=one)
    was = {} if before is None else {
        g.members: g.people
        for g in rule.choices([before.get(o.id, 0) for o in options], k, one_answer=one)
    }  # fmt: skip
    rows = []
    for g in groups:
        label = " / ".join(localize(options[n].label, language, guide.default_language)
                           for n in g.members)  # fmt: skip
        earlier = was.get(g.members) if g.people is not None else None
        rows.append(Row(label, Count(g.people, earlier)))
    return Breakdown(rows, joined=any(len(g.members) > 1 for g in groups))


def _scale(
    guide: Guide, step: Step, language: str, now: Mapping[str, int],
    before: Mapping[str, int] | None, k: int,
) -> Breakdown:  # fmt: skip
    low, high = step.scale_range()
    ends = {p: localize(label, language, guide.default_language)
            for p, label in (step.labels or {}).items()}  # fmt: skip

    def point(p: int) -> str:
        return f"{p} {ends[p]}" if p in ends else str(p)

    def made(counts: Mapping[str, int]) -> tuple[list[Row], Row | None]:
        answers = _numbers(counts)
        spread = [int(answers.get(float(p), 0)) for p in range(low, high + 1)]
        ranges = rule.ranges(spread, k, keep_empty=True)
        rows = [Row(point(low + r.first) if r.first == r.last
                    else f"{point(low + r.first)} – {point(low + r.last)}", Count(r.people))
                for r in ranges]  # fmt: skip
        found = rule.middle(ranges, answers, k, scale_low=low)
        return rows, None if found is None else rows[ranges.index(found)]

    rows, middle = made(now)
    middle_before = made(before)[1] if before is not None else None
    if len(rows) < 2:  # one range across the whole scale says nothing
        return Breakdown(one_range=True)
    return Breakdown(rows, middle, middle_before)


def _number(now: Mapping[str, int], before: Mapping[str, int] | None, k: int) -> Breakdown:
    def made(counts: Mapping[str, int]) -> tuple[list[Row], Row | None]:
        answers = _numbers(counts)
        ranges = rule.number_ranges(answers, k)
        rows = [Row("", Count(r.people), r) for r in ranges]
        found = rule.middle(ranges, answers, k)
        return rows, None if found is None else rows[ranges.index(found)]

    rows, middle = made(now)
    middle_before = made(before)[1] if before is not None else None
    if len(rows) < 2:
        return Breakdown(one_range=True)
    return Breakdown(rows, middle, middle_before)


def _numbers(counts: Mapping[str, int]) -> dict[float, int]:
    found: dict[float, int] = {}
    for value, people in counts.items():
        found[float(value)] = found.get(float(value), 0) + people
    return found
