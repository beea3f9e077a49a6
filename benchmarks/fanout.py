"""Fan-out: one scheduled prompt to 100,000 opted-in people, against a rate-limited Bot API.

Fills a database with people in a cohort (each with a sealed Telegram address),
adds a weekly schedule that is due now, and runs the real scheduler and delivery
in this process against the fake Bot API in a second process, which answers 429
with `retry_after` past its send rate. Reports the time to claim the occurrence
and queue every prompt, the achieved send rate as a share of the limit, and
messages lost and duplicated (each person is owed the guide's introduction and
its consent question: exactly two messages).

    python benchmarks/fanout.py [--people 100000] [--rate 1000]
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

from benchmarks.common import publish, table
from benchmarks.fake_api import TOKEN
from bot.app import build, settle_garbage_collector
from bot.channels.telegram import TelegramChannel, make_bot, telegram_limits
from bot.config import Settings
from bot.privacy import Identity
from bot.scheduler import Scheduler
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


async def run(people: int, rate: float) -> dict[str, float]:
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
            offset = DUE + timedelta(seconds=30) - datetime.now(UTC)

            def clock() -> datetime:
                return datetime.now(UTC) + offset

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
                # Delivery as the running bot does it (its own wake-ups for waits and
                # retry_after); the benchmark only looks every 50 ms for an empty outbox.
                sent_began = time.perf_counter()
                delivering = asyncio.create_task(bot.deliverer.run())
                while True:  # polling storage: there is no event for "the outbox is empty"
                    if await bot.storage.next_due("telegram") is None:
                        break
                    await asyncio.sleep(0.05)
                sending = time.perf_counter() - sent_began
                delivering.cancel()
                await telegram.stop()
        async with aiohttp.ClientSession() as session, session.get(f"{url}/stats") as response:
            stats = json.loads(await response.text())
    finally:
        api.terminate()
        api.wait(10)
    spread = {int(k): v for k, v in stats["chats_by_messages"].items()}
    return {
        "prompted": report.prompted,
        "queue_s": queued,
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
    args = parser.parse_args()
    result = asyncio.run(run(args.people, args.rate))
    print(result, file=sys.stderr)
    body = table(
        ["people", "limit msgs/s", "queue s", "sent msgs/s", "share of limit", "lost",
         "duplicates", "429s"],
        [[f"{args.people:,}", f"{args.rate:.0f}", f"{result['queue_s']:.1f}",
          f"{result['rate']:.0f}", f"{result['share']:.0%}", f"{result['lost']:.0f}",
          f"{result['duplicates']:.0f}", f"{result['refused']:.0f}"]],
    )  # fmt: skip
    notes = (
        "Targets: share of limit ≥ 95%, 0 lost, 0 duplicates, queueing < 10 s. Each person "
        "is owed two messages (the guide's introduction and its consent question)."
    )
    publish("Fan-out of a scheduled prompt", body, notes)


if __name__ == "__main__":
    main()
