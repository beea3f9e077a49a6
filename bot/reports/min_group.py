"""The minimum group: the one rule every report keeps (summaries, digests, and the
console and public reports to come). The README's "The minimum group" states it in
the same words; change one, change the other.

With `k` the minimum group (`KT_MIN_GROUP`, 5 by default):

1. A count of people is shown when it is 0 or at least `k`. A count of 1 to `k - 1`
   is shown as "fewer than k" (`count`). A rate (such as completion) is shown only
   when both of its counts are.
2. A question is broken down only when at least `k` people answered it, and quotes
   come only from `quotable` questions at least `k` people answered.
3. Choices: each option's count follows rule 1. When a question takes one answer,
   its counts add up to the people who answered, so the hidden counts could be
   worked out when there is one of them, or when they must all be 1 or all `k - 1`;
   then they are shown together with the smallest shown option, as one row
   (`choices`).
4. Scales and numbers are shown as ranges, never value by value: neighbouring
   points (a scale's) or steps of an even grid (a number's) are joined until each
   range holds at least `k` people (`ranges`). A number's lowest range reads
   "under ..." and its highest "... or more", so nobody's smallest or largest
   answer shows, and range edges come from the grid, never from an answer. When
   everything falls into one range there is no breakdown, and the report says why.
5. The middle value (median) is shown as the range that holds it, so it is never
   one person's exact answer (`middle`); with one range, it is not shown.

Nothing here knows about guides, storage or templates: counts in, what may be shown
out. Callers add the labels.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

GRID_STEPS = 10  # a number's grid: about this many steps across its answers, before joining


def count(people: int, k: int) -> int | None:
    """A count as it may be shown: itself, or None for "fewer than k"."""
    return people if people == 0 or people >= k else None


def rate(part: int, whole: int, k: int) -> float | None:
    """part / whole, or None when either count may not be shown (the rate would give it)."""
    if not whole or count(part, k) is None or count(whole, k) is None:
        return None
    return part / whole


@dataclass(frozen=True)
class Group:
    """One row of a breakdown: the options (their positions) or points in it, and how
    many people it holds as shown (None: fewer than k)."""

    members: tuple[int, ...]
    people: int | None


def choices(counts: Sequence[int], k: int, *, one_answer: bool) -> list[Group]:
    """Rows for a choice question's options, in their order (rule 3)."""
    rows = [Group((n,), count(people, k)) for n, people in enumerate(counts)]
    if not one_answer:
        return rows
    small = [n for n, people in enumerate(counts) if count(people, k) is None]
    hidden = sum(counts[n] for n in small)
    if not small or not (len(small) == 1 or hidden in (len(small), len(small) * (k - 1))):
        return rows
    shown = [n for n, people in enumerate(counts) if people >= k]
    joined = sorted(small + ([min(shown, key=lambda n: (counts[n], n))] if shown else []))
    together = Group(tuple(joined), count(sum(counts[n] for n in joined), k))
    out = [r for r in rows if r.members[0] not in joined]
    out.insert(next((i for i, r in enumerate(out) if r.members[0] > joined[0]), len(out)), together)
    return out


@dataclass(frozen=True)
class Range:
    """Points or grid steps joined into one row. For a number, `low` and `high` are its
    edges (high not included); None marks the open end of the lowest or highest."""

    first: int  # the first point or grid step in it
    last: int
    people: int
    low: float | None = None
    high: float | None = None
    whole: bool = False  # a number's edges are whole numbers, as are its answers


def ranges(counts: Sequence[int], k: int, *, keep_empty: bool) -> list[Range]:
    """Join neighbouring points (counts by point, in order) until each range holds at
    least k people (rule 4). With `keep_empty`, a run of points nobody chose is a range
    of its own (0 may be shown); else it joins the range it lies in."""
    done: list[Range] = []
    start, people = 0, 0
    for n, here in enumerate(counts):
        if keep_empty and here and not people and n > start:
            done.append(Range(start, n - 1, 0))
            start = n
        people += here
        if people >= k:
            done.append(Range(start, n, people))
            start, people = n + 1, 0
    if start < len(counts):
        if people == 0 and keep_empty:
            done.append(Range(start, len(counts) - 1, 0))
        else:  # too few left over: they join the range before, and any empty run between
            while done and done[-1].people == 0:
                done.pop()
            if done:
                last = done.pop()
                done.append(Range(last.first, len(counts) - 1, last.people + people))
            else:
                done.append(Range(0, len(counts) - 1, people))
    return done


def number_ranges(answers: Mapping[float, int], k: int) -> list[Range]:
    """A number question's ranges: an even grid of round steps (1, 2 or 5 times a power
    of ten) across its answers, joined until each range holds k people (rule 4)."""
    if not answers:
        return []
    low, high = min(answers), max(answers)
    whole = all(float(value).is_integer() for value in answers)
    step = _round_step((high - low) / GRID_STEPS, whole)
    origin = math.floor(low / step) * step
    cells = [0] * (int((high - origin) // step) + 1)
    for value, people in answers.items():
        cells[min(int((value - origin) // step), len(cells) - 1)] += people
    joined = ranges(cells, k, keep_empty=False)
    return [
        Range(r.first, r.last, r.people,
              None if n == 0 else origin + r.first * step,
              None if n == len(joined) - 1 else origin + (r.last + 1) * step, whole)
        for n, r in enumerate(joined)
    ]  # fmt: skip


def _round_step(rough: float, whole: bool) -> float:
    if rough <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    return max(step, 1.0) if whole else step


def middle(rows: Sequence[Range], answers: Mapping[float, int], k: int, *,
           scale_low: int | None = None) -> Range | None:  # fmt: skip
    """The range holding the median answer (rule 5), or None when fewer than k answered
    or one range spans every answer. Scale rows count points from `scale_low`; number rows
    have edges."""
    people = sum(answers.values())
    if people < k or len(rows) < 2:
        return None
    ordered = [value for value, n in sorted(answers.items()) for _ in range(n)]
    median = statistics.median_low(ordered)  # an answer, so it lies in a range
    for r in rows:
        if scale_low is not None:
            if r.first <= median - scale_low <= r.last:
                return r
        elif (r.low is None or median >= r.low) and (r.high is None or median < r.high):
            return r
    return None
