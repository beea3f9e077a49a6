"""Open data in a real browser: people answer "How is work changing" in Telegram; a coordinator
downloads each export through the browser (CSV, one row per conversation, JSON Lines, the
FLOIP zip) and each is read back; a digest sent is opened from the archive, and the digest
for this week is made, opened and downloaded.
axe finds nothing at WCAG 2.1 AA, nothing scrolls sideways at 360 px, the keyboard reaches
every control, and the page is photographed at 360 and 1280 px."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import sqlite3
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import frictionless
import pytest
from playwright.async_api import Page, expect

from bot.reports import exports
from tests.browser.harness import (
    ConsoleBot,
    check_axe,
    no_sideways_scroll,
    shoot,
    walk_keyboard,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

COORDINATOR = 12500
PEOPLE = range(12501, 12507)  # six people answer changing-work (the overview's test counts
# weekly-checkin's people, so these answer another guide)
GUIDE = "changing-work"
WISH = "More staff, from {chat}"  # each one's own idea, to find them among others' answers
# sector, years, changes (technology) and its story, a change, security, pay (sensitive),
# voice, helps, the idea, hope, nothing else.
ANSWERS = ["yes", "1", "5", "1", "Robots at the till", "A new manager", "4", "1", "3", "1",
           WISH, "4", "/skip"]  # fmt: skip


async def answered(bot: ConsoleBot) -> None:
    for chat in PEOPLE:
        for text in (f"/start {GUIDE}", *ANSWERS):
            await bot.say(chat, text.format(chat=chat))  # each waits for the bot's answer


def sent_digest(bot: ConsoleBot, due: datetime) -> None:
    """The scheduler's record of a weekly digest sent, as it writes it (the bot's SQLite)."""
    with contextlib.closing(sqlite3.connect(bot.data / "kitchen-table.db")) as db, db:
        db.execute(
            "INSERT INTO occurrences (schedule, tz, due_at, status, claimed_at)"
            " VALUES ('digest', 'UTC', ?, 'sent', ?)",
            (due.isoformat(timespec="microseconds"), due.isoformat(timespec="microseconds")),
        )


async def download(page: Page, format_label: str, tmp_path: Path) -> tuple[str, Path]:
    """Choose a format and press Download; the file's suggested name and where it is."""
    await page.get_by_label("Guide").select_option(GUIDE)
    await page.get_by_role("radio", name=format_label, exact=True).check()
    async with page.expect_download() as started:
        await page.get_by_role("button", name="Download", exact=True).first.click()
    done = await started.value
    path = tmp_path / done.suggested_filename
    await done.save_as(path)
    return done.suggested_filename, path


async def test_each_export_and_the_digest_downloaded_through_the_browser(
    bot: ConsoleBot, page: Page, tmp_path: Path
) -> None:
    await answered(bot)
    sent = datetime.now(UTC)
    sent_digest(bot, sent)
    await bot.make("coordinator", COORDINATOR)
    await bot.sign_in(page, COORDINATOR)
    await page.get_by_role("link", name="Open data").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Open data")
    await expect(page.get_by_label("Leave out any answer fewer than 5 people gave")).to_be_checked()
    await expect(page.get_by_label("Include sensitive questions")).to_have_count(0)
    await check_axe(page)
    await no_sideways_scroll(page)
    stops = await walk_keyboard(page)
    assert {"Download", "Open"} <= {s["text"] for s in stops}
    await shoot(page, "opendata")
    # The digest sent, opened from the archive: made now, with everyone's answers.
    await page.get_by_role("link", name=f"Open {sent:%Y-%m-%d}").click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("What people said")
    await expect(page.get_by_text("People: 6")).to_be_visible()
    await page.go_back()
    wishes = {WISH.format(chat=chat) for chat in PEOPLE}

    name, path = await download(page, "CSV", tmp_path)
    assert name == "changing-work-answers-start-to-now.csv"
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    assert reader.fieldnames == exports.LONG_FIELDS
    rows = list(reader)
    assert wishes <= {r["answer"] for r in rows if r["step"] == "idea"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["participant"]) for r in rows)

    name, path = await download(page, "CSV, one row per conversation", tmp_path)
    assert name == "changing-work-runs-start-to-now.csv"
    runs = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    mine = [r for r in runs if r["idea"] in wishes]
    assert len(mine) == 6 and {(r["years"], r["changes"], r["security"]) for r in mine} == {
        ("5", "technology", "4")
    }
    assert "pay_enough" not in mine[0]  # sensitive: not even its column

    name, path = await download(page, "JSON Lines", tmp_path)
    assert name == "changing-work-answers-start-to-now.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert wishes <= {r["answer"] for r in records if r["step"] == "idea"}

    name, path = await download(page, "FLOIP package (zip)", tmp_path)
    assert name == "changing-work-floip-start-to-now.zip"
    with zipfile.ZipFile(path) as package:
        package.extractall(tmp_path / "floip")
    folder = tmp_path / "floip" / "changing-work-floip"
    descriptor = json.loads((folder / "datapackage.json").read_text())
    assert descriptor["profile"] == "flow-results-package"
    (folder / "as-data-package.json").write_text(
        json.dumps(dict(descriptor, profile="data-package"))
    )
    report = frictionless.validate(str(folder / "as-data-package.json"))
    assert report.valid, report.flatten(["type", "note"])
    responses = json.loads((folder / descriptor["resources"][0]["path"]).read_text())
    assert wishes <= {row[5] for row in responses if row[4] == "idea"}

    # The digest of the week to today: opened in the browser, and downloaded.
    async with page.expect_download() as started:
        await page.get_by_role("button", name="Download", exact=True).last.click()
    digest = await started.value
    assert re.fullmatch(r"digest-week-to-\d{4}-\d\d-\d\d\.html", digest.suggested_filename)
    await page.get_by_role("button", name="Open", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("What people said")
    await expect(
        page.get_by_role("heading", name="How is work changing where you live?")
    ).to_be_visible()

    await page.goto(f"{bot.url}/data/export?guide={GUIDE}&format=csv&since=2026-13-01")
    await expect(page.get_by_role("alert")).to_contain_text("That isn't a date")
    await check_axe(page)
    await shoot(page, "opendata-refused")
