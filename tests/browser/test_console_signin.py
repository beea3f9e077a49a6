"""Signing in to the console in a real browser: through /console in (fake) Telegram, once
per link, for ten minutes; signing out; forms without their CSRF token refused; each
role seeing what it may, and a role taken back losing access at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Page, expect

from bot.features.console import ConsoleLinks
from bot.privacy import Identity
from storage.sqlite import SQLiteStorage
from tests.browser.harness import (
    ADMIN_CHAT,
    SECRET,
    ConsoleBot,
    check_axe,
    no_sideways_scroll,
    shoot,
    walk_keyboard,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_admin_signs_in_from_telegram_and_lands_on_the_overview(
    bot: ConsoleBot, page: Page
) -> None:
    link = await bot.link(ADMIN_CHAT)
    answer = await page.goto(link)
    assert answer is not None and answer.status == 200
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the console")
    await check_axe(page)
    await shoot(page, "signin")
    stops = await walk_keyboard(page)
    assert [s["text"] for s in stops] == ["Skip to the content", "Sign in"]
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")  # signing in takes no mouse either
    await page.wait_for_url(f"{bot.url}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    await expect(page.get_by_role("heading", name="Guides")).to_be_visible()
    await expect(page.get_by_role("heading", name="Live gatherings")).to_be_visible()
    cookie = next(c for c in await page.context.cookies() if c["name"] == "kt_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    await check_axe(page)
    await no_sideways_scroll(page)
    stops = await walk_keyboard(page)
    assert stops[0]["tag"] == "a" and stops[0]["text"] == "Skip to the content"
    texts = [s["text"] for s in stops]
    assert texts[1] == "Overview" and texts.index("Audit log") < texts.index("Sign out")
    await page.keyboard.press("Tab")  # from the top again: the skip link, then Enter
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"


async def test_a_link_works_once(bot: ConsoleBot, page: Page) -> None:
    link = await bot.link(ADMIN_CHAT)
    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{bot.url}/")
    again = await page.context.new_page()
    answer = await again.goto(link)
    assert answer is not None and answer.status == 410
    await expect(again.get_by_role("heading", level=1)).to_have_text(
        "This sign-in link doesn't work any more"
    )
    await expect(again.get_by_text("Send /console to the bot")).to_be_visible()
    await check_axe(again)
    await shoot(again, "link-refused")


async def test_a_link_older_than_ten_minutes_is_refused(bot: ConsoleBot, page: Page) -> None:
    # A link made eleven minutes ago, by the bot's own code, in the bot's own database.
    storage = SQLiteStorage(bot.data / "kitchen-table.db")
    await storage.open()
    try:
        then = datetime.now(UTC) - timedelta(minutes=11)
        links = ConsoleLinks(storage, bot.url, lambda: then)
        admin = Identity(SECRET.encode()).pseudonym("telegram", str(ADMIN_CHAT))
        link = await links.issue(admin)
    finally:
        await storage.close()
    answer = await page.goto(link)
    assert answer is not None and answer.status == 410
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "This sign-in link doesn't work any more"
    )
    assert "kt_console" not in {c["name"] for c in await page.context.cookies()}


async def test_signing_out_ends_the_session(bot: ConsoleBot, page: Page) -> None:
    await bot.sign_in(page, ADMIN_CHAT)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("You have signed out")
    await check_axe(page)
    answer = await page.goto(f"{bot.url}/")
    assert answer is not None and answer.status == 401
    await expect(page.get_by_role("heading", level=1)).to_have_text("Please sign in first")
    await check_axe(page)


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    bot: ConsoleBot, page: Page
) -> None:
    await bot.sign_in(page, ADMIN_CHAT)
    await page.locator("form.signout input[name=csrf]").evaluate("input => input.remove()")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("That form couldn't be sent")
    await check_axe(page)
    answer = await page.goto(f"{bot.url}/")  # still signed in: the sign-out never happened
    assert answer is not None and answer.status == 200
    refused = await page.request.post(f"{bot.url}/signout", form={"csrf": "not-the-token"})
    assert refused.status == 403


async def test_a_facilitator_sees_their_own_and_no_coordinator_page(
    bot: ConsoleBot, page: Page
) -> None:
    await bot.make("facilitator", 9101)
    await bot.sign_in(page, 9101)
    await expect(page.get_by_role("heading", name="Live gatherings")).to_be_visible()
    await expect(page.get_by_role("heading", name="Guides")).to_have_count(0)
    await expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    answer = await page.goto(f"{bot.url}/audit")
    assert answer is not None and answer.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("This page isn't for your role")
    await check_axe(page)


async def test_a_participant_gets_no_link(bot: ConsoleBot) -> None:
    said = " ".join(await bot.say(9151, "/console"))
    assert "for facilitators, coordinators and admins" in said
    assert "/console/signin" not in said


async def test_the_audit_log_is_for_admins(bot: ConsoleBot, page: Page) -> None:
    await bot.sign_in(page, ADMIN_CHAT)
    await page.get_by_role("link", name="Audit log").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    await expect(page.get_by_role("cell", name="Signed in").first).to_be_visible()
    await check_axe(page)
    await no_sideways_scroll(page)
    await walk_keyboard(page)
    await shoot(page, "audit")
    await bot.make("coordinator", 9201)
    coordinator = await page.context.browser.new_context()  # type: ignore[union-attr]
    other = await coordinator.new_page()
    await bot.sign_in(other, 9201)
    answer = await other.goto(f"{bot.url}/audit")
    assert answer is not None and answer.status == 403
    await coordinator.close()


async def test_the_console_speaks_the_language_chosen_in_chat(bot: ConsoleBot, page: Page) -> None:
    await bot.make("coordinator", 9301, language="es")
    await bot.sign_in(page, 9301, language="es")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Resumen")
    assert await page.get_attribute("html", "lang") == "es"
    await check_axe(page)
    await no_sideways_scroll(page)  # Spanish words are longer: still 360 px
    await shoot(page, "overview-es")
    # A gathering is a "reunión" here too, as the bot calls it in chat.
    await page.goto(f"{bot.url}/gatherings")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Reuniones")
    await expect(page.get_by_role("heading", name="Abiertas ahora")).to_be_visible()
    await expect(page.get_by_role("heading", name="Cerradas hace poco")).to_be_visible()
    await shoot(page, "gatherings-es")


async def test_a_role_taken_back_loses_the_console_at_once(bot: ConsoleBot, page: Page) -> None:
    await bot.make("coordinator", 9401)
    await bot.sign_in(page, 9401)
    who = Identity(SECRET.encode()).pseudonym("telegram", "9401")
    await bot.cli("roles", "revoke", who[:16])
    answer = await page.reload()
    assert answer is not None and answer.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("You no longer have access")
    answer = await page.goto(f"{bot.url}/")  # and the session is gone, not merely refused
    assert answer is not None and answer.status == 401
