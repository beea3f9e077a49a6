"""The Overview in a real browser, with people in it: a gathering launched from Telegram,
eight people joining, six finishing and two stopping; what a coordinator reads, what a
facilitator reads, and the minimum group kept."""

from __future__ import annotations

import html
import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.harness import (
    ADMIN_CHAT,
    ConsoleBot,
    check_axe,
    no_sideways_scroll,
    shoot,
    walk_keyboard,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

FINISHING = range(9501, 9507)  # six people answer every question
STOPPING = range(9507, 9509)  # two stop after agreeing


async def answer(bot: ConsoleBot, chat: int, code: str, replies: list[str]) -> None:
    await bot.say(chat, f"/join {code}")
    for reply in replies:
        await bot.say(chat, reply)


async def test_the_overview_counts_each_guides_people_and_lists_live_gatherings(
    own_bot: ConsoleBot, page: Page
) -> None:
    bot = own_bot  # exact totals: a database of its own
    await bot.make("facilitator", 9500)
    launched = html.unescape(" ".join(await bot.say(9500, "/launch weekly-checkin Tuesday supper")))
    code = re.search(r"Join code: ([A-Z0-9]{6})", launched)
    assert code is not None, launched
    for chat in FINISHING:
        await answer(bot, chat, code.group(1), ["yes", "4", "40", "no", "/skip"])
    for chat in STOPPING:
        await answer(bot, chat, code.group(1), ["yes", "/stop"])
    await bot.telegram.wait_until(
        lambda: all(any("See you next week" in t for t in bot.telegram.texts(c)) for c in FINISHING)
    )

    await bot.sign_in(page, ADMIN_CHAT)
    card = page.locator("li.card", has=page.get_by_role("heading", name="Weekly check-in"))
    week = card.locator("tbody tr")
    await expect(week.nth(0)).to_have_text(re.compile(r"Took part\s+8\s+0"))
    await expect(week.nth(1)).to_have_text(re.compile(r"Finished\s+6\s+0"))
    await expect(week.nth(2)).to_have_text(re.compile(r"Stopped\s+fewer than 5\s+0"))  # two
    live = page.locator("li.card", has=page.get_by_role("heading", name="Tuesday supper"))
    await expect(live).to_contain_text(code.group(1))
    await expect(live).to_contain_text("8")
    await check_axe(page)
    await no_sideways_scroll(page)
    await walk_keyboard(page)
    await shoot(page, "overview")

    facilitator = await page.context.browser.new_context()  # type: ignore[union-attr]
    theirs = await facilitator.new_page()
    await bot.sign_in(theirs, 9500)
    await expect(theirs.get_by_role("heading", name="Tuesday supper")).to_be_visible()
    await expect(theirs.get_by_role("heading", name="Guides")).to_have_count(0)
    await check_axe(theirs)
    await shoot(theirs, "overview-facilitator")
    await facilitator.close()

    await bot.make("facilitator", 9600)  # another facilitator: not their gathering
    other = await page.context.browser.new_context()  # type: ignore[union-attr]
    stranger = await other.new_page()
    await bot.sign_in(stranger, 9600)
    await expect(stranger.get_by_text("No gathering is open right now.")).to_be_visible()
    await other.close()
