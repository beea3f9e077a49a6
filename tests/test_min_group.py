"""The minimum-group rule (bot/min_group.py) on its own: what may be shown of counts,
choices, scales and numbers, checked on examples and on any counts hypothesis draws."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.reports import min_group as rule

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

K = 5


def test_counts_of_one_to_four_are_fewer_than_five():
    assert [rule.count(n, K) for n in range(7)] == [0, None, None, None, None, 5, 6]
    assert rule.rate(6, 7, K) == 6 / 7
    assert rule.rate(3, 7, K) is None  # 3 finished of 7 started would give the 3


def test_the_issues_hours_fall_into_one_range():
    hours = {20.0: 1, 38.0: 1, 40.0: 1, 45.0: 1, 52.0: 1, 60.0: 1}
    ranges = rule.number_ranges(hours, K)
    assert [(r.low, r.high, r.people) for r in ranges] == [(None, None, 6)]
    assert rule.middle(ranges, hours, K) is None


def test_a_hidden_count_that_the_total_would_give_is_shown_together():
    assert rule.choices([6, 1, 0], K, one_answer=True) == [
        rule.Group((0, 1), 7),
        rule.Group((2,), 0),
    ]
    # Two hidden counts that could only be 1 and 1: shown together with the smallest.
    assert rule.choices([9, 6, 1, 1], K, one_answer=True) == [
        rule.Group((0,), 9),
        rule.Group((1, 2, 3), 8),
    ]
    # 3 and 2 hidden could be 1 and 4, 2 and 3...: each stays "fewer than 5".
    assert rule.choices([6, 3, 2], K, one_answer=True) == [
        rule.Group((0,), 6),
        rule.Group((1,), None),
        rule.Group((2,), None),
    ]
    # Several answers each: counts don't add up to anything, so nothing gives one away.
    assert rule.choices([6, 1, 0], K, one_answer=False)[1] == rule.Group((1,), None)


def solutions(groups: list[rule.Group], total: int, options: int) -> list[tuple[int, ...]]:
    """Every set of counts a reader could believe, from the rows and the total."""
    found = []
    for counts in itertools.product(range(total + 1), repeat=options):
        if sum(counts) != total:
            continue
        fits = all(
            (sum(counts[n] for n in g.members) == g.people)
            if g.people is not None
            else all(0 < counts[n] < K for n in g.members)
            for g in groups
        )
        if fits:
            found.append(counts)
    return found


@given(st.lists(st.integers(0, 9), min_size=2, max_size=4))
def test_no_hidden_count_can_be_worked_out(counts: list[int]) -> None:
    groups = rule.choices(counts, K, one_answer=True)
    assert sorted(n for g in groups for n in g.members) == list(range(len(counts)))
    for g in groups:
        assert g.people is None or g.people == 0 or g.people >= K
    if sum(counts) < K:
        return  # a question fewer than k answered is not broken down at all
    believable = solutions(groups, sum(counts), len(counts))
    assert tuple(counts) in believable
    for g in groups:
        if g.people is None:  # a hidden count: more than one value fits
            (n,) = g.members
            assert len({s[n] for s in believable}) > 1, (counts, groups)


@given(st.lists(st.integers(0, 12), min_size=2, max_size=11))
def test_every_scale_range_holds_five_or_no_one(counts: list[int]) -> None:
    ranges = rule.ranges(counts, K, keep_empty=True)
    assert ranges[0].first == 0 and ranges[-1].last == len(counts) - 1
    for before, after in itertools.pairwise(ranges):
        assert after.first == before.last + 1
    for r in ranges:
        assert r.people == sum(counts[r.first : r.last + 1])
        if sum(counts) >= K:
            assert r.people == 0 or r.people >= K


@given(st.dictionaries(st.integers(-50, 500).map(float), st.integers(1, 3), min_size=1))
def test_number_ranges_never_show_an_answer(answers: dict[float, int]) -> None:
    ranges = rule.number_ranges(answers, K)
    people = sum(answers.values())
    assert sum(r.people for r in ranges) == people
    assert ranges[0].low is None and ranges[-1].high is None  # open ends: no extreme shows
    for r in ranges:
        assert r.people >= K or len(ranges) == 1
    middle = rule.middle(ranges, answers, K)
    if middle is not None:
        assert middle.people >= K and people >= K and len(ranges) > 1
