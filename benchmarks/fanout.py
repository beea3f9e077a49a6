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

On PostgreSQL (`--postgres`, #20), the same prompt is fanned out by `--instances`
`kitchen-table run` processes (two by default) on one database made for the run
(CREATE DATABASE on KT_BENCH_DATABASE_URL's server, `kitchen-table db upgrade`,
dropped after), in real time: the schedule falls due at the minute just passed, in a
zone where it is midday (no quiet hours), and every instance ticks as it starts, so
they race for the occurrence. Each has the configured limit (KT_TELEGRAM_MAX_PER_SECOND
= --rate), which they must share. Reported: the time from the last instance's webhook
to every prompt queued, the send rate the fake API sees (first to last message)
against the limit, its 429s, lost and duplicated messages, the prompt queued once per
person (the database's deliveries), the outbox left, and CPU per message of the bots
and of PostgreSQL's processes. There is no week two: it would need the clock moved.

    python benchmarks/fanout.py [--people 100000] [--rate 1000] [--runs 3]
    python benchmarks/fanout.py --postgres [--instances 2] [--people 100000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BACKGROUND,
    OTHERS,
    OURS,
    ServerCpu,
    fresh_database,
    median,
    process_cpu,
    publish,
    table,
    webhook_env,
)
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
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="fan out with --instances kitchen-table run processes on a PostgreSQL "
        "database (KT_BENCH_DATABASE_URL's server)",
    )
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument(
        "--analyze",
        action="store_true",
        help="ANALYZE the database once every prompt is queued, as autovacuum would soon "
        "after (on a server where it is off, the outbox is claimed with no statistics)",
    )
    parser.add_argument("--bot-logs", action="store_true", help="show the bots' logs")
    args = parser.parse_args()
    if args.postgres:
        postgres_main(args)
        return
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


# PostgreSQL, several instances (--postgres).

MESSAGES_EACH = 2  # the guide's introduction and its consent question


def midday_zone(now: datetime) -> str:
    """A zone where it is about midday now, so no one is in quiet hours (Etc/GMT+N is
    N hours behind UTC: the sign is POSIX's)."""
    behind = max(-14, min(12, now.hour - 12))
    return "UTC" if behind == 0 else f"Etc/GMT{behind:+d}"


async def fill_postgres(url: str, people: int, now: datetime) -> tuple[str, datetime]:
    """The cohort and its people, by COPY, and a schedule whose one occurrence a year is
    the minute just passed: (the schedule's zone, when it fell due)."""
    import asyncpg

    identity = Identity(SECRET.encode())
    tz = midday_zone(now)
    due = now.replace(second=0, microsecond=0)
    local = due.astimezone(ZoneInfo(tz))
    connection = await asyncpg.connect(url)
    try:
        rows = []
        for n in range(people):
            chat = str(FIRST_CHAT + n)
            rows.append((identity.pseudonym("telegram", chat), identity.seal(chat)))
        async with connection.transaction():
            await connection.copy_records_to_table(
                "participants",
                records=[(pid, "telegram", address, "en", False) for pid, address in rows],
                columns=["id", "channel", "address", "language", "unreachable"],
            )
            await connection.copy_records_to_table(
                "members",
                records=[("everyone", pid, due) for pid, _ in rows],
                columns=["cohort", "participant", "joined_at"],
            )
            await connection.execute(
                "INSERT INTO cohorts (name, code, created_at) VALUES ('everyone', 'EVERY1', $1)",
                due,
            )
            await connection.execute(
                "INSERT INTO schedules (id, guide_id, cohort, cron, tz, paused, created_at,"
                " checked_until) VALUES ('s1', 'weekly-checkin', 'everyone', $1, $2, false,"
                " $3, $4)",
                f"{local.minute} {local.hour} {local.day} {local.month} *",
                tz,
                due - timedelta(days=1),
                due - timedelta(minutes=1),
            )
    finally:
        await connection.close()
    return tz, due


async def start_instances(
    instances: int, url: str, api_url: str, rate: float, data: Path, quiet: bool
) -> list[asyncio.subprocess.Process]:
    """`instances` kitchen-table run processes in webhook mode on the one database."""
    processes = []
    for instance in range(instances):
        port = free_port()
        folder = data / f"instance-{instance}"
        folder.mkdir()
        env = webhook_env(
            TOKEN, api_url, port, folder, ROOT / "guides", SECRET,
            KT_DATABASE_URL=url,
            # Telegram's limit as the operator sets it: for the bot as a whole.
            KT_TELEGRAM_MAX_PER_SECOND=f"{rate:g}",
            KT_TELEGRAM_MAX_PER_CHAT="1",
        )  # fmt: skip
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env=env,
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL if quiet else None,
            )
        )
    return processes


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def stats_of(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/stats") as response:
        result: dict[str, Any] = json.loads(await response.text())
        return result


async def run_postgres(
    people: int, rate: float, instances: int, quiet: bool, analyze: bool = False
) -> dict[str, float]:
    import asyncpg

    api = subprocess.Popen(  # noqa: ASYNC220  (started once, before anything runs)
        [sys.executable, str(ROOT / "benchmarks" / "fake_api.py"), str(rate)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert api.stdout is not None
    url = api.stdout.readline().strip()
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            database = await stack.enter_async_context(fresh_database())
            data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            session = await stack.enter_async_context(aiohttp.ClientSession())
            filled = time.perf_counter()
            tz, _due = await fill_postgres(database, people, datetime.now(UTC))
            print(f"filled {people:,} in {time.perf_counter() - filled:.1f} s ({tz})",
                  file=sys.stderr)  # fmt: skip
            watch = await asyncpg.connect(database)
            stack.push_async_callback(watch.close)
            server = ServerCpu(frozenset([database.rsplit("/", 1)[1]]))
            server.start()
            processes = await start_instances(instances, database, url, rate, data, quiet)
            # Every instance ticks once it has registered its webhook: time from the last.
            while (await stats_of(session, url))["webhooks"] < instances:
                if any(p.returncode is not None for p in processes):
                    raise RuntimeError("an instance stopped while starting")
                await asyncio.sleep(0.05)
            ready = time.perf_counter()
            bots_before = {p.pid: process_cpu(p.pid) or 0.0 for p in processes}
            queued_s = float("nan")
            deadline = ready + 120 + people * MESSAGES_EACH / rate * 2
            last, quiet_since = -1, time.perf_counter()
            while time.perf_counter() < deadline:
                await asyncio.sleep(0.25)
                if queued_s != queued_s:  # nan: not all queued yet
                    queued = await watch.fetchval(
                        "SELECT count(*) FROM deliveries WHERE schedule = 's1'"
                    )
                    if queued >= people:
                        queued_s = time.perf_counter() - ready
                        print(f"queued {queued:,} in {queued_s:.1f} s", file=sys.stderr)
                        if analyze:
                            # What autoanalyze does soon after on a server where it is on.
                            await watch.execute("ANALYZE")
                sent = (await stats_of(session, url))["sent"]
                if sent != last:
                    last, quiet_since = sent, time.perf_counter()
                elif sent >= people * MESSAGES_EACH and time.perf_counter() - quiet_since > 3:
                    break  # everything owed was sent, and nothing more for 3 s
                elif time.perf_counter() - quiet_since > 30:
                    break  # nothing sent for 30 s: what is missing is lost
            bots = {pid: (process_cpu(pid) or 0.0) - cpu for pid, cpu in bots_before.items()}
            postgres = await server.stop()
            stats = await stats_of(session, url)
            # Where sending lagged: the messages taken in each second, from the first.
            print("sent per second:", " ".join(map(str, stats["per_second"])), file=sys.stderr)
            counts = {
                key: int(await watch.fetchval(sql))
                for key, sql in {
                    "deliveries": "SELECT count(*) FROM deliveries WHERE schedule = 's1'",
                    "prompted_people": "SELECT count(DISTINCT participant) FROM deliveries"
                    " WHERE schedule = 's1'",
                    "runs": "SELECT count(*) FROM runs",
                    "run_people": "SELECT count(DISTINCT participant) FROM runs",
                    "occurrences": "SELECT count(*) FROM occurrences WHERE schedule = 's1'",
                    "outbox_left": "SELECT count(*) FROM outbox",
                }.items()
            }
            for process in processes:
                process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 60)
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
        api.terminate()
        api.wait(10)
    spread = {int(k): v for k, v in stats["chats_by_messages"].items()}
    messages = stats["sent"]
    return {
        "queue_s": queued_s,
        "send_s": stats["sending_s"],
        "sent": messages,
        "rate": messages / stats["sending_s"] if stats["sending_s"] else float("nan"),
        "share": messages / stats["sending_s"] / rate if stats["sending_s"] else float("nan"),
        "lost": people * MESSAGES_EACH - sum(min(k, MESSAGES_EACH) * v for k, v in spread.items()),
        "duplicates": sum((k - MESSAGES_EACH) * v for k, v in spread.items() if k > MESSAGES_EACH),
        "same_text_twice": stats["duplicates"],
        "refused": stats["refused"],
        "prompts_lost": people - counts["prompted_people"],
        "prompts_twice": counts["deliveries"] - counts["prompted_people"],
        "runs_twice": counts["runs"] - counts["run_people"],
        "occurrences": counts["occurrences"],
        "outbox_left": counts["outbox_left"],
        "bots_cpu_us": sum(bots.values()) * 1e6 / max(1, messages),
        "bots_cpu_s": sum(bots.values()),
        "each_bot_cpu_s": list(bots.values()),  # type: ignore[dict-item]
        "db_cpu_us": postgres[OURS] * 1e6 / max(1, messages),
        "background_cpu_us": postgres[BACKGROUND] * 1e6 / max(1, messages),
        "others_cpu_us": postgres[OTHERS] * 1e6 / max(1, messages),
        "exit_codes": [p.returncode for p in processes],  # type: ignore[dict-item]
    }


def postgres_main(args: argparse.Namespace) -> None:
    runs = []
    for _ in range(args.runs):
        runs.append(
            asyncio.run(
                run_postgres(
                    args.people, args.rate, args.instances, not args.bot_logs, args.analyze
                )
            )
        )
        print(runs[-1], file=sys.stderr)
    rows = []
    for r in runs:
        total = r["bots_cpu_us"] + r["db_cpu_us"] + r["background_cpu_us"]
        rows.append([
            f"{args.people:,}", str(args.instances), f"{args.rate:.0f}", f"{r['queue_s']:.1f}",
            f"{r['rate']:.0f}", f"{r['share']:.1%}", f"{r['refused']:.0f}",
            f"{r['lost']:.0f} / {r['duplicates']:.0f}",
            f"{r['prompts_lost']:.0f} / {r['prompts_twice']:.0f}", f"{r['outbox_left']:.0f}",
            f"{r['bots_cpu_us']:.0f} + {r['db_cpu_us']:.0f} + {r['background_cpu_us']:.0f}"
            f" = {total:.0f}",
        ])  # fmt: skip
    body = table(
        ["people", "instances", "limit msgs/s", "queue s", "sent msgs/s (fake API)",
         "share of limit", "429s", "messages lost / duplicated",
         "prompts lost / queued twice", "outbox left",
         "CPU µs/message: bots + database backends + server background"],
        rows,
    )  # fmt: skip
    notes = (
        f"{args.instances} `kitchen-table run` processes (webhook mode) on one PostgreSQL "
        "database made for the run, each with the limit as the operator sets it "
        f"(KT_TELEGRAM_MAX_PER_SECOND={args.rate:g}, per chat 1), against the fake Bot API "
        "in a process of its own, which answers 429 past the limit. The schedule's one "
        "occurrence is the minute just passed and every instance ticks as it starts. Queue "
        "s: from the last instance registering its webhook to a delivery row for every "
        "person. Sent msgs/s: messages the fake took over first to last. Targets: the "
        "prompt queued once per person, share of limit ≥ 95%, 0 lost, 0 duplicated. "
        "Each person is owed two messages (the guide's introduction and its consent "
        "question). One row per run."
        + (
            " Once every prompt was queued the benchmark ran ANALYZE on the database, "
            "as autovacuum's autoanalyze would soon after (this server has autovacuum off)."
            if args.analyze
            else ""
        )
    )
    publish(f"Fan-out on PostgreSQL, {args.instances} instances", body, notes)


if __name__ == "__main__":
    main()
