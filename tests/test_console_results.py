"""The console's Results page (bot/console/results.py) on the run's storage backend: each
question's figures with the change from the days before, a breakdown whose small
groups show as "fewer than 5", quotes from quotable questions only (escaped), nothing
from sensitive ones, the date range, and a permalink that gives the same view again."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from storage.protocol import Storage
from tests.conftest import START, FakeClock
from tests.console_world import World, main_of, open_world, text_of
from tests.results_world import GUIDE_ID, Person, add_guide, answer

PAGE = f"/console/results/{GUIDE_ID}"


@pytest.fixture
async def world(storage: Storage, clock: FakeClock, tmp_path: Path) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    add_guide(opened.services.library, tmp_path)
    # This period (the last 4 weeks): 7 in the kitchen, 4 at the front, 5 in the office.
    now = [Person("kitchen", 4 + n % 2, 40 + n, story=f"<b>x</b> week {n}") for n in range(7)]
    now += [Person("front", 2, 30) for _ in range(4)]
    now += [Person("office", 1 + n % 2, 20 + n) for n in range(5)]
    await answer(storage, now, START - timedelta(days=2), "now")
    # The 4 weeks before: 6 in the kitchen.
    await answer(storage, [Person("kitchen", 3, 45) for _ in range(6)],
                 START - timedelta(days=30), "then")  # fmt: skip
    await opened.grant("cora", "coordinator")
    await opened.sign_in("cora")
    yield opened
    await opened.close()


async def _page(world: World, path: str = PAGE, **query: str) -> str:
    answer = await world.client.get(path, params=query)
    assert answer.status == 200, await answer.text()
    return await answer.text()


async def test_the_guides_are_listed_and_each_links_to_its_results(world: World):
    listed = await _page(world, "/console/results")
    assert f'href="{PAGE}"' in listed
    assert 'href="/console/results"' in await _page(world, "/console/")  # in the menu


async def test_each_question_as_a_chart_and_a_table_with_the_change(world: World):
    html = await _page(world)
    words = text_of(main_of(html))
    assert html.count('<svg class="chart"') >= 3  # where, how stressed, hours (and how far)
    assert "Answered by 16 (+10 on the days before)" in words  # 16 now, 6 before
    # Kitchen, 7 (one more than before); the front's 4 are shown together with the office.
    assert re.search(r"<th scope=\"row\">Kitchen</th>\s*<td>7</td>\s*<td>\+1</td>", html)
    assert "Front of house / Office" in words and "shown together" in words
    assert "Middle answer:" in words  # a scale's middle, as a range
    assert "How far people got" in words and "People who answered each question" in words


async def test_quotes_only_from_quotable_questions_escaped_and_nothing_sensitive(world: World):
    html = await _page(world)
    assert "&lt;b&gt;x&lt;/b&gt; week" in html and "<b>x</b>" not in html
    assert "just between us" not in html  # the note is not quotable
    assert "Is your pay enough?" not in html and "Not enough" not in html  # sensitive


async def test_a_breakdown_joins_a_small_group_so_it_cant_be_worked_out(world: World):
    html = await _page(world, q="stress", by="dept")
    words = text_of(main_of(html))
    assert "How stressed are you?, by Where do you work?" in words
    # The front's 4 can't be shown alone, nor left out: the question is also shown whole,
    # and whole minus the kitchen and the office would be the front's answers. So they
    # are shown together with the office (the smallest group shown), 9 people.
    cards = words.split("How stressed are you?, by Where do you work?", 1)[1]
    assert "Front of house People in this group" not in cards
    assert "Front of house / Office People in this group who answered: 9" in cards
    assert "Kitchen People in this group who answered: 7" in cards
    assert "shown together" in cards
    assert re.search(r'<option value="dept" selected>', html)
    # Not a choice question to break down by, or a question by itself: refused kindly.
    assert "can't be shown" in text_of(await _page(world, q="stress", by="hours"))
    assert "can't be shown" in text_of(await _page(world, q="dept", by="dept"))
    assert "can't be shown" in text_of(await _page(world, q="pay", by="dept"))  # sensitive


async def test_the_permalink_gives_the_same_view_again_and_names_nobody(world: World):
    period = {"from": "2026-02-01", "to": "2026-03-01"}
    # The first visit starts finding the themes in the background; once found, the page
    # and its permalink show them (compared before they were found, the two differed).
    await _page(world, q="hours", by="dept", **period)
    await world.themes_cache().settled()
    html = await _page(world, q="hours", by="dept", **period)
    assert "Themes found: 2." in html
    found = re.search(r'<a class="permalink" href="([^"]+)"', html)
    assert found is not None
    link = urlsplit(unescape(found.group(1)))
    assert link.path == PAGE
    query = dict(parse_qsl(link.query))
    assert query == {"from": "2026-02-01", "to": "2026-03-01", "q": "hours", "by": "dept"}
    again = await _page(world, link.path + "?" + link.query)
    assert main_of(again) == main_of(html)
    # With no dates given, the permalink names the default dates: the view stays put.
    plain = await _page(world)
    found = re.search(r'<a class="permalink" href="([^"]+)"', plain)
    assert found is not None and "from=2026-02-03&amp;to=2026-03-02" in found.group(1)


async def test_a_date_range_and_dates_that_cant_be_read(world: World):
    earlier = text_of(main_of(await _page(world, **{"from": "2026-01-20", "to": "2026-02-05"})))
    assert "Answered by 6" in earlier and "(+" not in earlier.split("Answered by 6")[1][:5]
    empty = text_of(main_of(await _page(world, **{"from": "2025-01-01", "to": "2025-01-31"})))
    assert "Fewer than 5 people took part in these dates" in empty
    wrong = text_of(main_of(await _page(world, **{"from": "soon", "to": "2026-02-05"})))
    assert "couldn't be read" in wrong and "Answered by 16" in wrong
    backwards = text_of(main_of(await _page(world, **{"from": "2026-03-01", "to": "2026-02-01"})))
    assert "couldn't be read" in backwards


async def test_in_spanish_and_not_for_facilitators(world: World):
    world.client.session.cookie_jar.clear()
    link = await world.services.links.issue(world.pseudonym("cora"), "es")
    token = link.split("t=")[1]
    taken = await world.client.post("/console/signin", data={"t": token}, allow_redirects=False)
    assert taken.status == 303
    spanish = text_of(main_of(await _page(world)))
    assert "Resultados: Pulso de cocina" in spanish and "Respondida por 16" in spanish
    world.client.session.cookie_jar.clear()
    await world.grant("fay", "facilitator")
    await world.sign_in("fay")
    assert (await world.client.get(PAGE)).status == 403
    assert (await world.client.get("/console/results/no-such-guide")).status in (403, 404)


def test_a_chart_escapes_its_words_and_never_sizes_a_hidden_count():
    from bot.reports.charts import Bar, bars, columns

    for draw in (bars, columns):
        svg = str(draw([Bar("<b>x</b>", 7, "7"), Bar("Front", None, "fewer than 5")],
                       title='Chart: "it" <i>'))  # fmt: skip
        assert "<b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
        assert 'aria-label="Chart: &#34;it&#34; &lt;i&gt;"' in svg and 'role="img"' in svg
        assert svg.count('stroke-dasharray="3 2"') == 1  # the hidden count: an outline
        assert "fewer than 5" in svg


def test_hidden_groups_are_shown_together_and_joined_only_while_too_few():
    from bot.reports.results import _groups

    # Two hidden groups of 3 make 6: shown as one group of their own.
    assert _groups([7, 3, 3, 9], 5, one_answer=True) == [(0,), (1, 2), (3,)]
    # 4 alone stays too few: joined with the smallest group shown (the 6, not the 9).
    assert _groups([9, 4, 6], 5, one_answer=True) == [(0,), (1, 2)]
    # Nobody in a group hides nothing; nothing hidden, nothing joined.
    assert _groups([7, 0, 5], 5, one_answer=True) == [(0,), (1,), (2,)]
    # With several answers each the groups overlap: subtraction gives nothing away.
    assert _groups([7, 3, 9], 5, one_answer=False) == [(0,), (1,), (2,)]
