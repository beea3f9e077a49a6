"""The public report, /report/GUIDE (bot/console/report.py), on the run's storage backend:
only for guides marked `public: true`, no sign-in, none of the figures of groups under
the minimum group, quotes from quotable questions only (escaped), nothing sensitive,
cacheable, with the date it was made and a link to the open data. And the guide format's
`public` key (bot/flows/guide.py)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest

from storage.protocol import Storage
from storage.rows import AnswerRow, Commit, RunRow
from tests.conftest import GUIDES, START, FakeClock, load
from tests.console_world import World, open_world
from tests.results_world import GUIDE, GUIDE_ID, Person, add_guide, answer

REPORT = f"/report/{GUIDE_ID}"


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    yield opened
    await opened.close()


def _figures(html: str) -> list[str]:
    """Every figure the page shows: table cells, and the words drawn in its charts."""
    cells = re.findall(r"<td>(.*?)</td>", html, re.S)
    drawn = re.findall(r'class="chart-figure">(.*?)</text>', html, re.S)
    people = re.findall(r"<dd>(.*?)</dd>", html, re.S)
    return [unescape(v).strip() for v in cells + drawn + people]


async def test_groups_of_4_show_none_of_their_figures(world: World, tmp_path: Path):
    add_guide(world.services.library, tmp_path)
    # Three groups of 4 by where they work, each with its own stress and hours: every
    # figure of a group is 4, or a sum a group of 4 could be worked out from.
    people = [Person("kitchen", 1, 10, story=f"<b>x</b> {n}") for n in range(4)]
    people += [Person("front", 3, 30) for _ in range(4)]
    people += [Person("office", 5, 50) for _ in range(4)]
    await answer(world.storage, people, START - timedelta(days=2), "now")
    answer_ = await world.client.get(REPORT)
    assert answer_.status == 200
    html = await answer_.text()
    figures = _figures(html)
    assert figures, html
    assert not [f for f in figures if re.match(r"4\b", f)], figures  # no group's 4
    assert "12" in figures  # who took part: 12, enough to show
    assert "too few to split without giving one away" in html  # stress and hours
    assert "Kitchen / Front of house / Office" in html  # the three shown as one
    # Quotes only from the quotable question, escaped; nothing sensitive; no other text.
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "just between us" not in html
    assert "Is your pay enough?" not in html and "Not enough" not in html
    assert "Made on 2026-03-02." in html and "All answers up to 2026-03-01." in html
    assert re.search(r'<a href="/console[^"]*">Download the open data for Kitchen pulse</a>', html)
    assert "<form" not in html  # no breakdown, no dates, nothing to send


async def test_cacheable_and_asked_again_with_its_etag(world: World, tmp_path: Path):
    add_guide(world.services.library, tmp_path)
    await answer(world.storage, [Person("kitchen", 2, 40) for _ in range(6)],
                 START - timedelta(days=3), "now")  # fmt: skip
    first = await world.client.get(REPORT)
    assert first.status == 200
    assert first.headers["Cache-Control"] == "public, max-age=3600"
    assert first.headers["Last-Modified"] == "Mon, 02 Mar 2026 00:00:00 GMT"
    assert "Set-Cookie" not in first.headers
    tag = first.headers["ETag"]
    again = await world.client.get(REPORT, headers={"If-None-Match": tag})
    assert again.status == 304 and again.headers["ETag"] == tag
    # Later the same day nothing new is counted: the same page, the same tag.
    world.clock.now += timedelta(hours=5)
    await answer(world.storage, [Person("front", 2, 40) for _ in range(6)], world.clock(), "late")
    assert (await world.client.get(REPORT)).headers["ETag"] == tag
    # The next day, the day's answers are in: another page.
    world.clock.now += timedelta(days=1)
    changed = await world.client.get(REPORT, headers={"If-None-Match": tag})
    assert changed.status == 200 and changed.headers["ETag"] != tag


async def test_it_moves_on_only_once_enough_people_answered_since(world: World, tmp_path: Path):
    """Two days' pages must not differ by one person's answers: the report stays where it
    was until at least k more people have answered, whatever day it is read."""
    add_guide(world.services.library, tmp_path)
    await answer(world.storage, [Person("kitchen", 2, 40) for _ in range(6)],
                 START - timedelta(days=3), "first")  # fmt: skip
    first = await (await world.client.get(REPORT)).text()
    assert "All answers up to 2026-03-01." in first
    assert "once at least 5 more people have answered" in first
    # One more person, in the office: the next day's page is the same page.
    await answer(world.storage, [Person("office", 5, 10)], world.clock(), "lone")
    world.clock.now += timedelta(days=1)
    second = await (await world.client.get(REPORT)).text()
    assert _figures(second) == _figures(first)
    assert "All answers up to 2026-03-01." in second and "Made on 2026-03-03." in second
    # Four more, then a day: five since it last moved on, so it does.
    await answer(world.storage, [Person("front", 3, 30) for _ in range(4)], world.clock(), "more")
    world.clock.now += timedelta(days=1)
    third = await (await world.client.get(REPORT)).text()
    assert "All answers up to 2026-03-03." in third
    assert "11" in _figures(third)  # who took part: all of them now


async def test_it_waits_for_a_group_on_every_question_it_shows(world: World, tmp_path: Path):
    """Five new people, but one question (the quoted story) answered by one of them: the
    page would show that one's story by difference, so it stays where it was. Answers to
    what it never shows (a sensitive question) don't hold it back."""
    add_guide(world.services.library, tmp_path)
    await answer(world.storage, [Person("kitchen", 2, 40) for _ in range(6)],
                 START - timedelta(days=3), "first")  # fmt: skip
    first = await (await world.client.get(REPORT)).text()
    at = world.clock()
    for n in range(5):
        run, who = f"new-run{n}", f"new-p{n}"
        given = [("dept", "choose", "front"), ("stress", "scale", 3), ("hours", "number", 30),
                 ("note", "ask", "between us")] + ([("story", "ask", "lone story")] if n == 0 else [])  # fmt: skip
        await world.storage.commit(Commit(
            runs=[RunRow(run, who, GUIDE_ID, 1, "h", "finished", "{}", at, at)],
            answers=[AnswerRow(run, step, who, GUIDE_ID, 1, kind, json.dumps(value), at)
                     for step, kind, value in given],
        ))  # fmt: skip
    world.clock.now += timedelta(days=1)
    held = await (await world.client.get(REPORT)).text()
    assert _figures(held) == _figures(first) and "lone story" not in held
    for n in range(1, 5):  # the others tell a story too: now every question has five
        run, who = f"new-run{n}", f"new-p{n}"
        await world.storage.commit(Commit(answers=[
            AnswerRow(run, "story", who, GUIDE_ID, 1, "ask", json.dumps(f"story {n}"), at)
        ]))  # fmt: skip
    world.clock.now += timedelta(days=1)
    moved = await (await world.client.get(REPORT)).text()
    assert "11" in _figures(moved) and "All answers up to 2026-03-03." in moved


async def test_in_spanish_by_the_browsers_language(world: World, tmp_path: Path):
    add_guide(world.services.library, tmp_path)
    await answer(world.storage, [Person("kitchen", 2, 40) for _ in range(6)],
                 START - timedelta(days=3), "now")  # fmt: skip
    html = await (await world.client.get(REPORT, headers={"Accept-Language": "es-MX,es"})).text()
    assert '<html lang="es">' in html and "Pulso de cocina: lo que dijo la gente" in html


async def test_not_public_or_not_there_is_404(world: World, tmp_path: Path):
    add_guide(world.services.library, tmp_path, public=False)
    for path in (REPORT, "/report/weekly-checkin", "/report/no-such-guide"):
        answer_ = await world.client.get(path)
        assert answer_.status == 404, path
        assert "There is no public report at this address" in await answer_.text()


def test_the_guide_format_takes_public_as_a_yes_or_no():
    assert load(GUIDE % {"public": "true"}).guide.public is True  # type: ignore[union-attr]
    assert load(GUIDE % {"public": "false"}).guide.public is False  # type: ignore[union-attr]
    shipped = load((GUIDES / "weekly-checkin.yaml").read_text("utf-8"))
    assert shipped.guide is not None and shipped.guide.public is False  # not unless said
    from bot.flows.loader import parse_guide

    wrong = parse_guide(GUIDE % {"public": "perhaps"}, "wrong.yaml")
    assert wrong.guide is None and any("public" in str(p) for p in wrong.problems)
