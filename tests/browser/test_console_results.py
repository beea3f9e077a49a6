"""Results in a real browser: people answer the weekly check-in through a gathering; a
coordinator opens Results from the menu, chooses a breakdown with the keyboard alone,
follows the permalink to the same view, and every page passes axe at WCAG 2.1 AA, fits
360 px and is shot at 360 and 1280 px. Totals are not asserted: other tests' people
answer the same guide in the same bot. The public report is shown from an in-process
console, since no shipped guide is public."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from storage.sqlite import SQLiteStorage
from tests.browser.harness import ConsoleBot, check_axe, no_sideways_scroll, shoot, walk_keyboard
from tests.conftest import START, FakeClock
from tests.console_world import open_world
from tests.results_world import GUIDE_ID, Person, add_guide, answer

pytestmark = pytest.mark.asyncio(loop_scope="session")

FACILITATOR = 10000
COORDINATOR = 10001
PEOPLE = range(10100, 10107)  # seven people answer every question
BY = "Did anything change at work in the past week?"
QUESTION = "How was your past week at work?"


async def test_results_a_breakdown_by_keyboard_and_the_permalink(bot: ConsoleBot, page: Page):
    await bot.make("facilitator", FACILITATOR)
    await bot.make("coordinator", COORDINATOR)
    launched = html.unescape(
        " ".join(await bot.say(FACILITATOR, "/launch weekly-checkin Results night"))
    )
    code = re.search(r"Join code: ([A-Z0-9]{6})", launched)
    assert code is not None, launched
    for n, chat in enumerate(PEOPLE):
        await bot.say(chat, f"/join {code.group(1)}")
        for reply in [
            "yes",
            str(2 + n % 3),
            str(30 + 3 * n),
            "yes",
            f"<b>x</b> shifts {n}",
            "/skip",
        ]:
            await bot.say(chat, reply)
    await bot.telegram.wait_until(
        lambda: all(any("See you next week" in t for t in bot.telegram.texts(c)) for c in PEOPLE)
    )

    await bot.sign_in(page, COORDINATOR)
    await page.get_by_role("link", name="Results", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Results")).to_be_visible()
    await check_axe(page)
    await shoot(page, "results-guides")
    await page.get_by_role("link", name="Weekly check-in").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Results: Weekly check-in")
    await expect(page.locator("svg.chart").first).to_be_visible()
    quotes = page.locator(".quotes blockquote")
    await expect(quotes.first).to_contain_text("<b>x</b> shifts")  # shown as typed, not bold
    await expect(page.locator(".quotes b")).to_have_count(0)

    # The breakdown, with the keyboard alone: focus the question list, choose, tab on.
    await page.get_by_label("Question", exact=True).focus()
    await page.keyboard.press("Home")  # the first question: how the week was
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("By the answers to")).to_be_focused()
    await page.keyboard.press("Home")  # the first choice question: what changed
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Break down")).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"[?&]q=week&by=changed"))
    heading = page.get_by_role("heading", level=3, name=f"{QUESTION}, by {BY}")
    await expect(heading).to_be_visible()
    await expect(page.locator("ul.groups > li h4")).to_have_text(["Yes", "No"])
    await check_axe(page)
    await no_sideways_scroll(page)
    stops = await walk_keyboard(page)
    assert any(s["text"] == "Link to this view" for s in stops)
    await shoot(page, "results-breakdown")

    # The permalink names the dates and the breakdown, nothing else, and gives this view.
    link = page.get_by_role("link", name="Link to this view")
    href = await link.get_attribute("href")
    assert href is not None and re.fullmatch(
        r"/console/results/weekly-checkin\?from=\d{4}-\d\d-\d\d&to=\d{4}-\d\d-\d\d&q=week&by=changed",
        href,
    ), href
    # The figures, not the whole page: a question's largest theme may appear once the
    # themes' background grouping has filled its cache (bot/console/themes*).
    figures = page.locator("ul.groups, section[aria-labelledby] .figure-table")
    before = await figures.all_inner_texts()
    assert len(before) > 3 and "Yes" in before[0]
    await link.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(re.escape(href) + "$"))
    await expect(heading).to_be_visible()
    assert await figures.all_inner_texts() == before


async def test_the_public_report_in_a_browser(page: Page, tmp_path: Path):
    """A public guide's report, served by an in-process console (the shipped guides are
    not public): axe, 360 px, the keyboard, screenshots; and no cookie, no sign-in."""
    storage = SQLiteStorage(tmp_path / "kt.db")
    await storage.open()
    world = await open_world(storage, FakeClock())
    try:
        add_guide(world.services.library, tmp_path)
        people = [Person("kitchen", 2 + n % 3, 35 + n, story=f"<b>x</b> a long week {n}")
                  for n in range(9)]  # fmt: skip
        people += [Person("front", 4, 30) for _ in range(6)]
        await answer(storage, people, START - timedelta(days=3), "now")
        address = str(world.client.make_url(f"/report/{GUIDE_ID}"))
        shown = await page.goto(address)
        assert shown is not None and shown.status == 200
        assert (await shown.all_headers())["cache-control"] == "public, max-age=3600"
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Kitchen pulse: what people said"
        )
        await expect(page.locator(".quotes blockquote").first).to_contain_text("<b>x</b>")
        assert await page.context.cookies() == []
        await check_axe(page)
        await no_sideways_scroll(page)
        await walk_keyboard(page)
        await shoot(page, "public-report")
    finally:
        await world.close()
        await storage.close()
