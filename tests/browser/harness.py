"""The browser tests' harness: the real bot, a fake Telegram, and Chromium.

`ConsoleBot` runs `kitchen-table run` (the process an operator runs) with the console on,
polling the fake Telegram Bot API (tests/fake_telegram.py) on 127.0.0.1, against a
SQLite database in a temporary folder. Tests talk to it as people do: a message in
Telegram (`say`), a role from an invitation code (`make`), the command line (`cli`).

Helpers for a page:
- `sign_in(page, chat)`: send /console from that chat, open the link the bot sent, press
  Sign in; the page ends on the overview.
- `check_axe(page)`: axe-core (axe-playwright-python) at WCAG 2.1 AA; fails listing what it
  found.
- `shoot(page, name)`: screenshots at 360 and 1280 px wide into `SHOTS`
  (`KT_SCREENSHOTS_DIR`, default .pytest_cache/console-screenshots/).
- `walk_keyboard(page)`: Tab through the page; every stop must be visible and show its focus.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

from bot.locales import load_phrasebook
from tests.conftest import ROOT
from tests.fake_telegram import TOKEN, FakeTelegram

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip
SECRET = "browser-test-secret-0123456789"
ADMIN_CHAT = 9001  # KT_ADMINS names this Telegram user
SHOTS = Path(os.environ.get("KT_SCREENSHOTS_DIR", ROOT / ".pytest_cache" / "console-screenshots"))
WIDTHS = (360, 1280)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
LINK = re.compile(r"https?://\S+/console/signin\?t=[A-Za-z0-9_-]+")
WAIT = 30.0  # seconds for the bot to answer: generous, for a busy shared machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ConsoleBot:
    """`kitchen-table run` with the console on and Telegram pointed at the fake."""

    telegram: FakeTelegram
    data: Path
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/console"

    def env(self) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_"))}
        environment.update({
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_BOT_USERNAME": "KitchenTableBot",
            "KT_TELEGRAM_API_URL": self.telegram.url,
            "KT_DATA_DIR": str(self.data),
            "KT_GUIDES_DIR": str(ROOT / "guides"),
            "KT_SECRET_KEY": SECRET,
            "KT_PORT": str(self.port),
            "KT_CONSOLE": "1",
            "KT_ADMINS": f"telegram:{ADMIN_CHAT}",
            # People here answer as fast as the test types: Telegram's one message a
            # second per chat (tested in tests/test_ratelimit.py and the process tests)
            # would make every answer after the third wait a second.
            "KT_TELEGRAM_MAX_PER_CHAT": "100",
        })  # fmt: skip
        return environment

    async def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        log = (self.data / "bot.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=self.env(), cwd=ROOT,
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        await self.telegram.wait_until(lambda: self.telegram.calls_to("getUpdates"), WAIT)
        await self._serving()

    async def _serving(self) -> None:
        """Until /healthz answers: the web server starts just after Telegram."""
        async with asyncio.timeout(WAIT), aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/healthz") as answer:
                        if answer.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # a connection refused: not listening yet

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            code = await asyncio.wait_for(self.process.wait(), WAIT)
            assert code == 0, self.log()

    def log(self) -> str:
        path = self.data / "bot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # As people use it -------------------------------------------------------

    async def say(self, chat: int, text: str, *, language: str = "en") -> list[str]:
        """Send a message from a private chat; what the bot answered (its next message)."""
        before = len(self.telegram.texts(chat))
        self.telegram.queue(self.telegram.message_update(chat, text, language=language))
        await self.telegram.wait_until(lambda: len(self.telegram.texts(chat)) > before, WAIT)
        return self.telegram.texts(chat)[before:]

    async def cli(self, *args: str) -> str:
        """`kitchen-table ARGS` on the bot's machine: its output (it must succeed)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, env=self.env(), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 0, err.decode()
        return out.decode()

    async def make(self, role: str, chat: int, *, language: str = "en") -> None:
        """Give this Telegram user a role, as an admin would: an invitation, redeemed."""
        printed = await self.cli("invite", role)
        code = re.search(r"/redeem ([A-Z0-9]+)", printed)
        assert code is not None, printed
        said = await self.say(chat, f"/redeem {code.group(1)}", language=language)
        assert load_phrasebook().text(language, f"redeemed_{role}") in map(html.unescape, said)

    async def link(self, chat: int, *, language: str = "en") -> str:
        """Send /console from this chat; the sign-in link the bot answered with."""
        said = " ".join(await self.say(chat, "/console", language=language))
        found = LINK.search(said)
        assert found is not None, said
        return found.group(0)

    async def sign_in(self, page: Page, chat: int, *, language: str = "en") -> None:
        await page.goto(await self.link(chat, language=language))
        await page.get_by_role("button").first.click()
        await page.wait_for_url(f"{self.url}/")


async def check_axe(page: Page) -> None:
    """0 axe-core violations at WCAG 2.1 AA, or fail naming each."""
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": AXE_TAGS}})
    assert results.violations_count == 0, f"{page.url}:\n{results.generate_report()}"


async def shoot(page: Page, name: str) -> list[Path]:
    """The page at each width, whole, as SHOTS/NAME-WIDTH.png; the viewport is put back."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    before = page.viewport_size or {"width": 1280, "height": 800}
    saved = []
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 800})
        path = SHOTS / f"{name}-{width}.png"
        await page.screenshot(path=str(path), full_page=True)
        saved.append(path)
    await page.set_viewport_size(before)
    return saved


async def no_sideways_scroll(page: Page) -> None:
    """At 360 px nothing makes the whole page scroll sideways (a wide table scrolls alone)."""
    await page.set_viewport_size({"width": 360, "height": 800})
    width = await page.evaluate("document.documentElement.scrollWidth")
    await page.set_viewport_size({"width": 1280, "height": 800})
    assert width <= 360, f"{page.url} is {width} px wide at 360 px"


FOCUS_STATE = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(),
    text: (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 40),
    outline: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
    shadow: style.boxShadow !== 'none',
    visible: box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0,
  };
}"""


async def walk_keyboard(page: Page, limit: int = 60) -> list[dict[str, Any]]:
    """Tab from the top of the page until focus leaves it; every stop on the way must be
    on screen and draw a visible focus indicator. The stops, in order."""
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    stops: list[dict[str, Any]] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        state = await page.evaluate(FOCUS_STATE)
        if state is None or (stops and state == stops[0]):
            break
        assert state["visible"], f"{page.url}: focus went somewhere not on screen: {state}"
        assert state["outline"] or state["shadow"], f"{page.url}: focus not shown on {state}"
        stops.append(state)
    assert stops, f"{page.url}: nothing takes the keyboard's focus"
    return stops


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1)
