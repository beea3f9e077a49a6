"""Fixtures for the console's browser tests (tests/browser/harness.py says what they do).

Marked `browser`. They run in one of `make test`'s two pytest runs, the SQLite one (the
console reads through the same storage protocol on both backends, which the tests of
tests/test_console*.py cover on each); on the PostgreSQL run, and where
/usr/bin/chromium is missing, they are skipped, saying why (CI installs Chromium:
.ci/run). One Chromium and one bot serve the whole session, on the session's event
loop: each test has a browser context (cookies) of its own, and its own people (chat
ids), so tests don't depend on each other's order.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, ConsoleBot
from tests.fake_telegram import FakeTelegram

BACKEND = os.environ.get("KT_TEST_BACKEND", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives Chromium through the console (tests/browser/)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    if BACKEND != "sqlite":
        reason = "browser tests run in the SQLite run of make test (the console's storage " \
                 "reads are tested on every backend in tests/test_console*.py)"  # fmt: skip
    elif not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


async def _running(folder: Path) -> AsyncIterator[ConsoleBot]:
    telegram = FakeTelegram()
    await telegram.start()
    running = ConsoleBot(telegram, folder / "data")
    try:
        await running.start()
        yield running
    finally:
        await running.stop()
        await telegram.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def bot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleBot]:
    """The bot every browser test shares: people of your own, no totals asserted."""
    async for running in _running(tmp_path_factory.mktemp("console")):
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def own_bot(tmp_path: Path) -> AsyncIterator[ConsoleBot]:
    """A bot of this test's own, on an empty database: for exact totals (a few seconds
    more to start)."""
    async for running in _running(tmp_path):
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    yield opened
    await context.close()
