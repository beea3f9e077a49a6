"""Cohorts and schedules in a real browser, with the keyboard alone: a coordinator creates a
cohort (someone joins it by its code in Telegram), previews a schedule (the next three
times in its own zone), saves it and pauses it; a cron line that can't be read is refused
saying why; removing asks first. axe finds nothing at WCAG 2.1 AA on any of these pages,
nothing scrolls sideways at 360 px, and each is photographed at 360 and 1280 px."""

from __future__ import annotations

import html
import re

import pytest
from playwright.async_api import Page, expect

from tests.browser.harness import (
    ConsoleBot,
    check_axe,
    no_sideways_scroll,
    shoot,
    walk_keyboard,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

COORDINATOR = 12000
JOINER = 12001
COHORT = "kitchen-12000"  # this test's own: the bot is shared with other tests


async def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element `selector` names has the focus, as someone without a
    mouse would."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


async def type_into(page: Page, selector: str, text: str) -> None:
    await tab_to(page, selector)
    await page.keyboard.press("Control+A")
    await page.keyboard.type(text)


async def test_a_schedule_added_and_paused_with_the_keyboard_alone(
    bot: ConsoleBot, page: Page
) -> None:
    await bot.make("coordinator", COORDINATOR)
    await bot.sign_in(page, COORDINATOR)
    await page.goto(f"{bot.url}/schedules")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Cohorts and schedules")

    # A cohort, and someone joining it in Telegram by the code the page shows.
    await type_into(page, "#cohort-name", COHORT)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text(
        f"Created the cohort {COHORT}. Share its join code or link below."
    )
    card = page.locator("li.card", has=page.get_by_role("heading", name=COHORT, exact=True))
    code = (await card.locator("code.code").inner_text()).strip()
    assert re.fullmatch(r"[A-Z0-9]{7}", code)
    await expect(card.get_by_role("link")).to_have_attribute(
        "href", f"https://t.me/KitchenTableBot?start=join-{code}"
    )
    said = html.unescape(" ".join(await bot.say(JOINER, f"/join {code}")))
    assert "You're in" in said  # joined by the code the console gave

    # A cron line that can't be read: refused, saying which part, keeping what was typed.
    await tab_to(page, "#schedule-guide")
    await page.keyboard.type("Weekly")  # a focused list picks the option typed
    await tab_to(page, "#schedule-cohort")
    await page.keyboard.type(COHORT)
    await type_into(page, "#schedule-cron", "0 25 * * MON")
    await page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Nothing was saved. The hour (second field, 0-23)")
    await expect(page.locator("#schedule-cron")).to_have_value("0 25 * * MON")
    await expect(page.locator("#schedule-cron")).to_have_attribute("aria-invalid", "true")
    await check_axe(page)
    await shoot(page, "schedules-refused")

    # Put right, previewed in its own zone, saved.
    await expect(page.locator("#schedule-guide")).to_have_value("weekly-checkin")
    await expect(page.locator("#schedule-cohort")).to_have_value(COHORT)
    await type_into(page, "#schedule-cron", "0 9 * * MON")
    await type_into(page, "#schedule-tz", "America/Chicago")
    await page.keyboard.press("Enter")
    preview = page.get_by_role("region", name="The next three times, in America/Chicago")
    times = preview.get_by_role("listitem")
    await expect(times).to_have_count(3)
    for text in await times.all_inner_texts():
        assert re.fullmatch(r"Mon \d{4}-\d\d-\d\d 09:00 C[SD]T", text), text
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, "schedules-preview")
    await tab_to(page, ".preview button.primary")
    await page.keyboard.press("Enter")
    added = page.get_by_role("status")
    await expect(added).to_contain_text("Added schedule")
    schedule_id = re.search(r"Added schedule (\w+)\.", await added.inner_text())
    assert schedule_id is not None
    mine = page.locator(f"#schedule-{schedule_id.group(1)}")
    await expect(mine).to_contain_text("Sending")
    await expect(mine).to_contain_text("America/Chicago")

    # Paused, by the keyboard: its card says so, and offers Resume.
    await tab_to(page, f"#schedule-{schedule_id.group(1)} button")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text(
        f"Paused schedule {schedule_id.group(1)}."
    )
    await expect(mine).to_contain_text("Paused")
    await expect(mine.get_by_role("button")).to_have_text(re.compile("^Resume"))
    listed = await bot.cli("schedule", "list")
    assert re.search(rf"{schedule_id.group(1)}\s+weekly-checkin -> {COHORT}.*paused", listed)
    await check_axe(page)
    await no_sideways_scroll(page)
    stops = await walk_keyboard(page)
    assert any(s["text"].startswith("Resume") for s in stops)
    await shoot(page, "schedules")

    # Removing asks first; keeping it changes nothing, removing it removes it.
    await mine.get_by_role("link", name=re.compile("^Remove")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Remove this schedule?")
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, "schedule-remove")
    await page.get_by_role("button", name="Remove it").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Removed schedule {schedule_id.group(1)}."
    )
    await expect(page.locator(f"#schedule-{schedule_id.group(1)}")).to_have_count(0)
