"""Draw docs/digest.png: the weekly digest's HTML page as a coordinator receives it.

The sample is made through the bot's own code path, as `kitchen-table run` wires it
(`bot.app.build`): a temporary data folder, the shipped guides, people answering the
weekly check-in in the terminal channel over two weeks, a facilitator's gathering,
then `kitchen-table digest --format html` (`admin.digests.digest`). Headless
Chromium (Debian's `chromium` package) takes the screenshot.

    .venv/bin/python docs/make_digest_picture.py            # writes docs/digest.png
    .venv/bin/python docs/make_digest_picture.py --keep     # also keeps the HTML page
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from admin import digests, sessions  # noqa: E402  (after the path: runs from a checkout)
from bot.app.cli import OPERATOR, build  # noqa: E402
from bot.channels.terminal.channel import CHANNEL as TERMINAL  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.messages import Inbound  # noqa: E402

START = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday
HOPES = [
    "A schedule posted two weeks ahead so I can plan childcare",
    "Fair pay for the overtime we keep doing",
    "More rest between shifts",
    "Training on the new scanners before they go live",
    "A bus that runs after the late shift",
    "Fewer doubles and more rest",
    "Knowing my hours before Friday",
    "Being paid on time",
]
CHANGES = [
    "They brought in new scanners and cut a shift",
    "Our hours were cut without notice",
    "A new manager changed the schedule",
    "We got a raise after the union meeting",
]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def answer(bot, person: str, texts: list[str]) -> None:  # type: ignore[no-untyped-def]
    for text in texts:
        await bot.dispatcher.handle(Inbound(TERMINAL, person, person, text))
        await bot.dispatcher.settle()


def answers_of(chooser: random.Random, week: int) -> list[str]:
    """One person's weekly check-in: consent, week (1-5), hours, changed, and words."""
    mood = chooser.choices([1, 2, 3, 4, 5], weights=[2, 4, 5, 4, 2] if week else [3, 5, 4, 3, 1])[0]
    hours = max(8, min(70, round(chooser.gauss(38 if week else 41, 9))))
    changed = chooser.random() < 0.45
    said = ["yes", str(mood), str(hours), "1" if changed else "2"]
    if changed:
        said.append(chooser.choice(CHANGES))
    said.append(chooser.choice(HOPES))
    return said


async def make_page(data: Path, out: Path) -> None:
    clock = Clock()
    settings = Settings(data_dir=data, guides_dir=ROOT / "guides",
                        secret_key="picture-secret-0123456789")  # fmt: skip
    chooser = random.Random(17)
    async with build(settings, clock) as bot:
        for week, people in ((0, 24), (1, 31)):
            clock.now = START + timedelta(days=7 * week)
            for n in range(people):
                clock.now += timedelta(minutes=7)
                # Most of last week's people answer again this week; seven are new.
                person = f"w{n + 7 * week}"
                await answer(bot, person, ["/start weekly-checkin", *answers_of(chooser, week)])
        # A facilitator's gathering this week, named as they launched it.
        said = io.StringIO()
        await sessions.command(bot.dispatcher, bot.deliverer, OPERATOR,
                               "/launch weekly-checkin Tuesday supper at St. Anne's", said)  # fmt: skip
        code = said.getvalue().split("Join code: ")[1][:6]
        for n in range(9):
            clock.now += timedelta(minutes=3)
            await answer(bot, f"room-{n}", [f"/join {code}", *answers_of(chooser, 1)])
        for n in range(4):  # a few stop halfway
            await answer(bot, f"half-{n}", ["/start weekly-checkin", "yes", "3", "/stop"])
        clock.now = START + timedelta(days=14)
        await digests.digest(bot.storage, bot.library, bot.house.reports,
                             since=timedelta(days=7), now=clock.now, guide="weekly-checkin",
                             fmt="html", min_group=settings.min_group, out_path=out,
                             out=io.StringIO())  # fmt: skip


def screenshot(page: Path, picture: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("Chromium is needed: apt-get install -y chromium")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--screenshot={picture}", "--window-size=900,1400",
         page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "digest.png")
    parser.add_argument("--keep", action="store_true", help="keep the HTML page beside it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "digest.html"
        asyncio.run(make_page(Path(folder) / "data", page))
        screenshot(page, args.out.resolve())
        if args.keep:
            shutil.copy(page, args.out.with_suffix(".html"))
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
