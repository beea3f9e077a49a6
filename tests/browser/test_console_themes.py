"""Themes in a real browser: a coordinator goes from a guide's Results to a question's
themes, renames one and splits another's answers off with the keyboard alone, and an
edit that can't be made says why; every page passes axe at WCAG 2.1 AA, fits 360 px and
is shot at 360 and 1280 px.

The bot is one of this test's own (`own_bot`): themes are made of every answer to a
question, and other tests answer the shipped guides in the shared bot. The nineteen
answers are written straight into the bot's SQLite database (tests/results_world.py
does the same for Results), as answering through the fake Telegram one message at a
time would take most of a minute; the bot reads them as any others."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, expect

from storage.rows import AnswerRow, Commit, RunRow
from storage.sqlite import SQLiteStorage
from tests.browser.harness import ConsoleBot, check_axe, no_sideways_scroll, shoot, walk_keyboard
from tests.results_world import HOURS, PAY, RAISE

pytestmark = pytest.mark.asyncio(loop_scope="session")

COORDINATOR = 13000
GUIDE, STEP = "weekly-checkin", "what_changed"


async def _answered(bot: ConsoleBot) -> None:
    """Nineteen people said what changed at work yesterday (one said nothing much)."""
    storage = SQLiteStorage(bot.data / "kitchen-table.db")
    await storage.open()
    at = datetime.now(UTC) - timedelta(days=1)
    try:
        for n, text in enumerate([*PAY, *RAISE, *HOURS, "nothing much"]):
            run, who = f"themes-run{n}", f"themes-person{n}"
            await storage.commit(Commit(
                runs=[RunRow(run, who, GUIDE, 1, "h", "finished", "{}", at, at)],
                answers=[
                    AnswerRow(run, "changed", who, GUIDE, 1, "choose", json.dumps("yes"), at),
                    AnswerRow(run, STEP, who, GUIDE, 1, "ask", json.dumps(text),
                              at + timedelta(seconds=1)),
                ],
            ))  # fmt: skip
    finally:
        await storage.close()


async def _enter(page: Page) -> None:
    async with page.expect_navigation():
        await page.keyboard.press("Enter")


async def test_rename_and_split_a_theme_with_the_keyboard(own_bot: ConsoleBot, page: Page):
    bot = own_bot
    await _answered(bot)
    await bot.make("coordinator", COORDINATOR)
    await bot.sign_in(page, COORDINATOR)

    # From the menu to the guide's results, and its link to this question's themes.
    await page.get_by_role("link", name="Results").focus()
    await _enter(page)
    await page.get_by_role("link", name="Weekly check-in").focus()
    await _enter(page)
    link = page.get_by_role("link", name="Themes and codebook").first
    await expect(link).to_have_attribute(
        "href", re.compile(rf"/console/themes/{GUIDE}/{STEP}\?from=")
    )
    await link.focus()
    await _enter(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Themes: What changed?")
    cards = page.locator("li.theme")
    await expect(cards).to_have_count(2)
    await expect(cards.nth(0)).to_contain_text("12 people · English")
    await expect(cards.nth(1)).to_contain_text("6 people · English")
    await expect(page.get_by_text("Fit no theme: fewer than 5")).to_be_visible()
    await expect(page.locator("main b")).to_have_count(0)  # a participant's markup, as typed
    await check_axe(page)
    await no_sideways_scroll(page)
    stops = await walk_keyboard(page)
    assert any(s["text"].startswith("Rename") for s in stops) and any(
        s["text"] == "Merge" for s in stops
    )
    await shoot(page, "themes")

    # Rename the largest: type in its name field, Tab to Rename, Enter.
    await page.get_by_label("Name for this theme").first.focus()
    await page.keyboard.type("Rent and pay")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Rename").first).to_be_focused()
    await _enter(page)
    await expect(cards.nth(0).get_by_role("heading", level=3)).to_have_text("Rent and pay")
    await expect(page.get_by_role("status")).to_contain_text("Renamed and saved to the codebook")

    # A split with nothing chosen says why and keeps the name typed; nothing is saved.
    await page.get_by_role("link", name="Split answers off “Rent and pay”").focus()
    await _enter(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Split answers off “Rent and pay”"
    )
    await expect(page.get_by_text("<b>x</b> better pay & rent")).to_be_visible()
    await page.get_by_label("Name for the new theme (optional)").focus()
    await page.keyboard.type("Raises")
    await page.keyboard.press("Tab")
    await _enter(page)
    await expect(page.get_by_role("alert")).to_contain_text("Choose at least one answer")
    await expect(page.get_by_label("Name for the new theme (optional)")).to_have_value("Raises")
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, "themes-split-error")

    # Choose the six answers about raises with Space, then Split off.
    boxes = page.get_by_role("checkbox")
    await expect(boxes).to_have_count(12)
    for n in range(12):
        box = boxes.nth(n)
        label = await page.locator(f'label[for="{await box.get_attribute("id")}"]').inner_text()
        if "raise" in label:
            await box.focus()
            await page.keyboard.press("Space")
    await expect(page.get_by_role("checkbox", checked=True)).to_have_count(6)
    await walk_keyboard(page)
    await shoot(page, "themes-split")
    await page.get_by_role("button", name="Split off").focus()
    await _enter(page)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Themes: What changed?")
    await expect(cards).to_have_count(3)
    await expect(cards.filter(has_text="Raises")).to_contain_text("6 people")
    await expect(cards.filter(has_text="Rent and pay")).to_contain_text("6 people")
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, "themes-after")

    # The Results page names the themes now found, with their sizes.
    await page.get_by_role("link", name="Back to the results").focus()
    await _enter(page)
    summary = page.locator(".themes").first
    await expect(summary).to_contain_text("Themes found: 3")
    await expect(summary).to_contain_text("Raises: 6 people")
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, "themes-results")
