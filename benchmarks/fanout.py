"""Fan-out: one scheduled prompt to 100,000 opted-in people, against a rate-limited Bot API.

Fills a database with people in a cohort (each with a sealed Telegram address),
adds a weekly schedule that is due now, and runs the real scheduler and delivery
in this process against the fake Bot API in a second process, which answers 429
with `retry_after` past its send rate. Reports the time to claim the occurrence
and queue every prompt, the achieved send rate as a share of the limit, and
messages lost and duplicated (each person is owed the guide's introduction and
its consent question: exactly two messages).

Then a week later, when nobody has answered, the next occurrence: every person has
last week's invitation still open (now expired), which is ended before this week's
begins. Queue times are medians over `--runs` fresh databases; the messages are
sent, and counted, in the first.

    python benchmarks/fanout.py [--people 100000] [--rate 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median, publish, table
from benchmarks.fake_api import TOKEN
from bot.app.cli import build, settle_garbage_collector
from bot.channels.telegram.channel import TelegramChannel, make_bot, telegram_limits
from bot.config import Settings
from bot.privacy import Identity
from bot.scheduling.scheduler import Scheduler
from storage.rows import ScheduleRow

ROOT = Path(__file__).resolve().parent.parent
SECRET = "fanout-benchmark-secret-0123456789"
DUE = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # a Monday, 09:00 in Chicago
FIRST_CHAT = 10**9


def fill(db: Path, people: int) -> None:
    identity = Identity(SECRET.encode())
    connection = sqlite3.connect(db)
    with connection:
        rows = []
        for n in range(people):
            chat = str(FIRST_CHAT + n)
            rows.append((identity.pseudonym("telegram", chat), identity.seal(chat)))
        connection.executemany(
            "INSERT INTO participants (id, channel, address, language, current_run, unreachable)"
            " VALUES (?, 'telegram', ?, 'en', NULL, 0)",
            rows,
        )
        connection.executemany(
            "INSERT INTO members (cohort, participant, joined_at) VALUES ('everyone', ?, ?)",
            [(pid, DUE.isoformat()) for pid, _ in rows],
        )
        connection.execute(
            "INSERT INTO cohorts (name, code, created_at) VALUES ('everyone', 'EVERY1', ?)",
            (DUE.isoformat(),),
        )
    connection.close()


async def run(people: int, rate: float, send: bool) -> dict[str, float]:
    api = subprocess.Popen(  # noqa: ASYNC220  (started once, before anything runs)
        [sys.executable, str(ROOT / "benchmarks" / "fake_api.py"), str(rate)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert api.stdout is not None
    url = api.stdout.readline().strip()
    try:
        with tempfile.TemporaryDirectory() as folder:
            data = Path(folder)
            settings = Settings(data_dir=data, guides_dir=ROOT / "guides", secret_key=SECRET)
            # Real time, moved to just after the prompt falls due: rate limits and
            # retry_after waits run on it as they would in production.
            offset = [DUE + timedelta(seconds=30) - datetime.now(UTC)]

            def clock() -> datetime:
                return datetime.now(UTC) + offset[0]

            async with build(settings, clock) as bot:
                fill(settings.database_path, people)
                await bot.storage.save_schedule(
                    ScheduleRow(
                        "s1",
                        "weekly-checkin",
                        "everyone",
                        "0 9 * * MON",
                        "America/Chicago",
                        False,
                        DUE - timedelta(days=1),
                        DUE - timedelta(minutes=1),
                    )
                )
                telegram = TelegramChannel(
                    make_bot(TOKEN, url), bot.dispatcher.handle,
                    limits=telegram_limits(per_second=rate, per_chat=1),
                )  # fmt: skip
                await telegram.start()
                bot.deliverer.channels[telegram.name] = telegram
                scheduler = Scheduler(bot.storage, bot.dispatcher, bot.library, clock)
                settle_garbage_collector()  # as `kitchen-table run` does once it has started
                began = time.perf_counter()
                report = await scheduler.tick()
                queued = time.perf_counter() - began
                print(f"queued {report.prompted:,} prompts in {queued:.1f} s", file=sys.stderr)
                sending = float("nan")
                if send:
                    # Delivery as the running bot does it (its own wake-ups for waits and
                    # retry_after); the benchmark looks every 50 ms for an empty outbox.
                    sent_began = time.perf_counter()
                    delivering = asyncio.create_task(bot.deliverer.run())
                    while True:  # polling storage: no event says "the outbox is empty"
                        if await bot.storage.next_due("telegram") is None:
                            break
                        await asyncio.sleep(0.05)
                    sending = time.perf_counter() - sent_began
                    delivering.cancel()
                await telegram.stop()
                # A week later, nobody having answered: everyone's run is still open.
                offset[0] += timedelta(days=7)
                began = time.perf_counter()
                again = await scheduler.tick()
                week_two = time.perf_counter() - began
                print(f"week two: {again.prompted:,} in {week_two:.1f} s", file=sys.stderr)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/stats") as response:
            stats = json.loads(await response.text())
    finally:
        api.terminate()
        api.wait(10)
    timings = {
        "prompted": report.prompted,
        "prompted_again": again.prompted,
        "queue_s": queued,
        "week_two_s": week_two,
    }
    if not send:
        return timings
    spread = {int(k): v for k, v in stats["chats_by_messages"].items()}
    return timings | {
        "send_s": sending,
        "rate": stats["sent"] / sending,
        "share": stats["sent"] / sending / rate,
        "lost": people * 2 - sum(min(k, 2) * v for k, v in spread.items()),
        "duplicates": sum((k - 2) * v for k, v in spread.items() if k > 2),
        "refused": stats["refused"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(run(args.people, args.rate, send=n == 0)) for n in range(args.runs)]
    for result in runs:
        print(result, file=sys.stderr)
        assert result["prompted"] == result["prompted_again"] == args.people, result
    sent = runs[0]
    week_one = median([r["queue_s"] for r in runs])
    week_two = median([r["week_two_s"] for r in runs])
    body = table(
        ["people", "limit msgs/s", "queue s", "queue s, week two", "sent msgs/s",
         "share of limit", "lost", "duplicates", "429s"],
        [[f"{args.people:,}", f"{args.rate:.0f}", f"{week_one:.1f}", f"{week_two:.1f}",
          f"{sent['rate']:.0f}", f"{sent['share']:.0%}", f"{sent['lost']:.0f}",
          f"{sent['duplicates']:.0f}", f"{sent['refused']:.0f}"]],
    )  # fmt: skip
    spread = ", ".join(f"{r['queue_s']:.1f}/{r['week_two_s']:.1f}" for r in runs)
    notes = (
        "Targets: share of limit ≥ 95%, 0 lost, 0 duplicates, queueing < 10 s. Each person "
        "is owed two messages (the guide's introduction and its consent question). Queue "
        f"times are medians of {args.runs} runs, each on a fresh database (week one/week "
        f"two: {spread}); week two is the next Monday's prompt when nobody answered, so "
        "everyone's expired invitation is ended first. Sending is measured in the first run."
    )
    publish("Fan-out of a scheduled prompt", body, notes)


if __name__ == "__main__":
    main()
