"""Gatherings, and People and roles, in a real browser with the keyboard alone.

A facilitator opens a paced gathering in the console, shows its code large (the projector
view, with its QR code), people join it in Telegram by the code, the page's status moves
on its own (its script), Next opens the next question in their chats, Close asks first
and shows the summary; another facilitator who opens its address is refused. An admin
makes an invitation code that someone redeems in Telegram, then takes the role back
after a confirmation. axe finds nothing at WCAG 2.1 AA on any of these pages, nothing
scrolls sideways at 360 px, every focus is visible, and each is photographed at 360 and
1280 px (the projector view too)."""

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

FACILITATOR = 11000
OTHER_FACILITATOR = 11010
JOINERS = (11001, 11002, 11003)
INVITED = 11020
YEARS = "how many years"  # the guide's second question


async def tab_to(page: Page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element `selector` names has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("s => document.activeElement?.matches(s) ?? false", selector):
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


async def looked_over(page: Page, name: str) -> None:
    """axe, the keyboard's every stop, 360 px, and the screenshots."""
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, name)  # before the walk, which leaves the focus somewhere
    await walk_keyboard(page)


async def said(bot: ConsoleBot, chat: int) -> str:
    return html.unescape(" ".join(bot.telegram.texts(chat)))


async def until_said(bot: ConsoleBot, chat: int, words: str) -> None:
    """Until the bot has said these words to this chat (a reply may come in several)."""
    await bot.telegram.wait_until(
        lambda: any(words in html.unescape(t) for t in bot.telegram.texts(chat)), 30
    )


async def test_a_gathering_from_launch_to_close_with_the_keyboard_alone(
    bot: ConsoleBot, page: Page
) -> None:
    await bot.make("facilitator", FACILITATOR)
    await bot.sign_in(page, FACILITATOR)
    await tab_to(page, 'a[href$="/console/gatherings"]')
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Gatherings")
    await looked_over(page, "gatherings")

    # Open one: a guide, a title, paced.
    await tab_to(page, "#gathering-guide")
    await page.keyboard.type("Changing")  # a focused list picks the option typed
    await tab_to(page, "#gathering-title")
    await page.keyboard.type("Thursday table")
    await tab_to(page, "#gathering-paced")
    await page.keyboard.press("Space")
    await tab_to(page, "form.stack button.primary")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Thursday table")
    await expect(page.get_by_role("status")).to_contain_text("The gathering is open.")
    code = (await page.locator(".join-code code").inner_text()).strip()
    assert re.fullmatch(r"[A-Z0-9]{6}", code)
    await expect(page.get_by_role("link", name=re.compile("t.me"))).to_have_attribute(
        "href", f"https://t.me/KitchenTableBot?start=join-{code}"
    )
    qr = page.locator("img.qr")
    await expect(qr).to_have_attribute("alt", f"QR code to join the gathering with the code {code}")
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    gathering_url = page.url.split("?")[0]
    await looked_over(page, "gathering-open")

    # The projector's view: the code and QR code large.
    await tab_to(page, 'a[href$="/join"]')
    await page.keyboard.press("Enter")
    await expect(page.locator(".projector .join-code code")).to_have_text(code)
    big = page.locator(".projector img.qr")
    assert await big.evaluate("img => img.complete && img.naturalWidth > 0")
    assert (await big.bounding_box() or {"width": 0})["width"] >= 480  # across a room
    await looked_over(page, "gathering-projector")
    await page.go_back()

    # People join in Telegram by the code; the page follows without a reload (its script).
    for chat in JOINERS:
        await bot.say(chat, f"/join {code}")
        await until_said(bot, chat, "Is that all right")
        await bot.say(chat, "yes")
    await until_said(bot, JOINERS[0], "What kind of work")
    await bot.say(JOINERS[0], "1")  # the first question answered: waiting for the next
    live = page.locator("#live")
    await expect(live.locator(".counts div").first).to_have_text(
        re.compile(r"Joined\s*3"), timeout=20_000
    )
    await expect(live.locator("tbody tr").first).to_have_text(
        re.compile(r"Deciding whether to take part\s*0"), timeout=20_000
    )
    # A screen reader hears the counts that changed, not the whole table again.
    await expect(page.locator("#live-said")).to_have_text(
        re.compile(r"^Joined 3 Answering 3 Finished 0 Stopped 0$")
    )

    # Next: the next question reaches the one who is waiting, in Telegram.
    assert YEARS not in await said(bot, JOINERS[0])
    await tab_to(page, "form[action$='/next'] button")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("The next question is open for everyone.")
    await expect(live).to_contain_text("Questions open to everyone: 2 of 14")
    await until_said(bot, JOINERS[0], YEARS)

    # Close: asked first, then the summary.
    await tab_to(page, 'a[href$="/close"]')
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Close this gathering?")
    await looked_over(page, "gathering-close")
    await tab_to(page, "form.actions button.primary")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Summary: Thursday table")
    await expect(page.locator(".summary")).to_contain_text("Fewer than 5 people took part")
    await looked_over(page, "gathering-summary")
    late = html.unescape(" ".join(await bot.say(11004, f"/join {code}")))
    assert "closed" in late, late

    # Another facilitator who opens its address is refused.
    await bot.make("facilitator", OTHER_FACILITATOR)
    assert page.context.browser is not None
    other = await page.context.browser.new_context()
    try:
        theirs = await other.new_page()
        await bot.sign_in(theirs, OTHER_FACILITATOR)
        answer = await theirs.goto(gathering_url)
        assert answer is not None and answer.status == 403
        await expect(theirs.get_by_role("heading", level=1)).to_have_text(
            "This gathering isn't yours"
        )
        await check_axe(theirs)
    finally:
        await other.close()


async def test_an_invitation_redeemed_in_telegram_then_revoked_with_the_keyboard_alone(
    bot: ConsoleBot, page: Page
) -> None:
    await bot.sign_in(page, ADMIN_CHAT)
    await tab_to(page, 'a[href$="/console/people"]')
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("People and roles")
    before = set(await page.locator("details code.whole").all_text_contents())
    await looked_over(page, "people")

    await tab_to(page, "#invite-facilitator")
    await page.keyboard.press("ArrowDown")  # the radio group: coordinator
    await tab_to(page, "form.stack button.primary")
    await page.keyboard.press("Enter")
    invited = page.locator(".invited")
    await expect(invited).to_contain_text("A one-time code for a coordinator, good for 7 days")
    code = (await invited.locator("code").inner_text()).strip()
    assert re.fullmatch(r"[A-Z0-9]{10}", code)
    await expect(invited.get_by_role("link")).to_have_attribute(
        "href", f"https://t.me/KitchenTableBot?start=redeem-{code}"
    )
    await looked_over(page, "people-invited")
    redeemed = html.unescape(" ".join(await bot.say(INVITED, f"/redeem {code}")))
    assert "coordinator" in redeemed, redeemed

    await page.goto(f"{bot.url}/people")
    after = set(await page.locator("details code.whole").all_text_contents())
    (theirs,) = after - before
    row = page.locator("tr", has=page.locator(f'code[title="{theirs}"]'))
    await expect(row.locator("td").first).to_have_text("coordinator")
    await tab_to(page, f'tr:has(code[title="{theirs}"]) button')
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Take this role back?")
    await expect(page.locator("code.whole")).to_have_text(theirs)
    await looked_over(page, "people-revoke")
    await tab_to(page, "form.actions button.primary")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text(
        "The role of coordinator was taken back. If they were signed in here, they no longer are."
    )
    await expect(page.locator(f'code[title="{theirs}"]')).to_have_count(0)
    refused = html.unescape(" ".join(await bot.say(INVITED, "/console")))
    assert "signin?t=" not in refused, refused  # no role: no console


ROOM = (11005, 11006, 11007, 11008, 11009)  # five: enough for the summary's figures


# After the consent, changing-work's answers, as tests/browser/test_console_exports.py
# gives them; free text with markup in it, which no page may read as markup.
ANSWERS = ["1", "5", "1", "<i>pay</i> story", "A <i>pay</i> change", "4", "1", "3", "1",
           "<i>pay</i> idea", "4", "/skip"]  # fmt: skip


async def test_a_room_of_five_reads_its_summary_in_the_console(bot: ConsoleBot, page: Page) -> None:
    await bot.make("facilitator", 11011)
    await bot.sign_in(page, 11011)
    await page.goto(f"{bot.url}/gatherings")
    await page.locator("#gathering-guide").select_option("changing-work")
    await page.locator("#gathering-title").fill("Friday <b>shop floor</b>")
    await page.get_by_role("button", name="Open the gathering").click()
    code = (await page.locator(".join-code code").inner_text()).strip()
    for chat in ROOM:
        await bot.say(chat, f"/join {code}")
        await until_said(bot, chat, "Is that all right")
        for text in ("yes", *ANSWERS):
            await bot.say(chat, text)  # each waits for the bot's answer
    await page.get_by_role("link", name="Close the gathering").click()
    await page.get_by_role("button", name="Yes, close it").click()
    summary = page.locator(".summary")
    await expect(summary).to_contain_text("5 took part and 5 finished.")
    await expect(summary).to_contain_text("<i>pay</i>")  # shown as typed, never as markup
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Summary: Friday <b>shop floor</b>"
    )
    await check_axe(page)
    await no_sideways_scroll(page)
    await shoot(page, "gathering-summary-five")
