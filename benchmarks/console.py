"""The console at scale: page loads over HTTP from the real server, against a plain GROUP BY.

Fills a database with 100,000 answers from 5,000 people over 20 weeks (the weekly
check-in: a scale, a number, a choice and two free-text questions per run, four runs a
person), starts `kitchen-table run` on it with the console on and no chat platform,
signs in with `kitchen-table console link`, and times through an aiohttp client:

- the overview, `/console/`;
- a guide's results for the last four weeks with a breakdown (how the week was, by
  whether anything changed), `/console/results/weekly-checkin?...&q=week&by=changed`;
- the public report, `/report/weekly-checkin` (the guide copied and marked public),
  asked without an ETag, so each load is made afresh;

each loaded 50 times (after 3 to warm up), p50 and p95 of the whole HTTP request. In the
same run, the same figures as plain SQL (each page's GROUP BYs with nothing else, one
after another on one connection of the benchmark's own) are timed 50 times each, and
each page's p95 is compared with its query's p95.

    python benchmarks/console.py [--loads 50] [--postgres]

`--postgres`: a fresh database on KT_BENCH_DATABASE_URL's server (default
postgresql://postgres@127.0.0.1:5432/test), filled by COPY.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import fresh_database, median, percentile, publish, table
from storage.postgres import PostgresStorage
from storage.sqlite import SQLiteStorage

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = 5_000
WEEKS = 20
RUNS_EACH = 4  # runs a person, at random weeks: 20,000 runs of 5 answers
GUIDE = "weekly-checkin"
WORDS = ["rest", "pay", "shifts", "schedule", "training", "union", "break", "overtime", "nurse", "warehouse", "boss", "safety", "childcare", "bus", "rent", "hours", "weekend", "tired", "respect", "raise"]  # fmt: skip
SECRET = "bench-secret-bench-secret-bench-secret"
EVER = datetime(2000, 1, 1, tzinfo=UTC)  # the public report: every answer up to today


def ts(moment: datetime) -> str:
    """As storage keeps times on SQLite (storage/sqlite/connection.py)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def rows(now: datetime) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(runs, answers): each person's runs at random moments of the 20 weeks before now."""
    chooser = random.Random(21)
    runs, answers = [], []
    span = WEEKS * 7 * 24 * 3600
    for person in range(PEOPLE):
        who = f"{person:032x}"
        for n in range(RUNS_EACH):
            run_id = f"r{person}-{n}"
            at = now - timedelta(seconds=chooser.randint(600, span))
            status = "finished" if chooser.random() < 0.85 else "stopped"
            runs.append((run_id, who, GUIDE, 1, "h", status, '{"step": "better_week"}', at, at))
            text = " ".join(chooser.choices(WORDS, k=6))
            answers += [
                (run_id, "week", who, GUIDE, 1, "scale", str(chooser.randint(1, 5)), at),
                (run_id, "hours", who, GUIDE, 1, "number", str(chooser.randint(0, 70)), at),
                (run_id, "changed", who, GUIDE, 1, "choose",
                 json.dumps(chooser.choice(["yes", "no"])), at),
                (run_id, "what_changed", who, GUIDE, 1, "ask", json.dumps(text), at),
                (run_id, "better_week", who, GUIDE, 1, "ask", json.dumps(text[::-1]), at),
            ]  # fmt: skip
    return runs, answers


RUN_COLUMNS = ["id", "participant", "guide_id", "guide_version", "guide_hash", "status",
               "state", "started_at", "updated_at"]  # fmt: skip
ANSWER_COLUMNS = ["run_id", "step", "participant", "guide_id", "guide_version", "kind", "value",
                  "answered_at"]  # fmt: skip


async def fill_sqlite(db: Path, now: datetime) -> None:
    storage = SQLiteStorage(db)  # creates the schema
    await storage.open()
    await storage.close()
    runs, answers = rows(now)
    connection = sqlite3.connect(db)
    with connection:
        connection.executemany(
            f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * 9)})",
            [(*r[:7], ts(r[7]), ts(r[8])) for r in runs],
        )
        connection.executemany(
            f"INSERT INTO answers ({', '.join(ANSWER_COLUMNS)}) VALUES ({', '.join('?' * 8)})",
            [(*a[:7], ts(a[7])) for a in answers],
        )
    connection.execute("ANALYZE")
    connection.close()


async def fill_postgres(url: str, now: datetime) -> None:
    import asyncpg

    runs, answers = rows(now)
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table("runs", records=runs, columns=RUN_COLUMNS)
        await connection.copy_records_to_table("answers", records=answers, columns=ANSWER_COLUMNS)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


# The same figures as plain SQL: each page's GROUP BYs and nothing else -------------------


def _people(where: str) -> str:
    return f"SELECT guide_id, count(DISTINCT participant) FROM runs WHERE {where} GROUP BY guide_id"


def _runs(where: str) -> str:
    return ("SELECT guide_id, status, count(DISTINCT participant) FROM runs"
            f" WHERE {where} GROUP BY guide_id, status")  # fmt: skip


def _tallies(where: str) -> str:
    return ("SELECT step, value, count(DISTINCT participant) FROM answers WHERE guide_id = :guide"
            f" AND {where} AND kind IN ('choose', 'scale', 'number') GROUP BY step, value")  # fmt: skip


def _steps(where: str) -> str:
    return ("SELECT step, count(DISTINCT participant) FROM answers WHERE guide_id = :guide"
            f" AND {where} GROUP BY step")  # fmt: skip


WEEK = "updated_at >= :week AND started_at < :now"
EARLIER = "updated_at >= :ever AND started_at < :week"
NOW = "updated_at >= :since AND started_at < :now"
THEN = "updated_at >= :before AND started_at < :since"
ANSWERED_NOW = "answered_at >= :since AND answered_at < :now"
ANSWERED_THEN = "answered_at >= :before AND answered_at < :since"
EVER_SINCE = "answered_at >= :ever AND answered_at < :today"
# The same figures as each page shows, each as its plain aggregate and nothing more (no
# quotes, no "new" people, no HTML): what the page's time is held against.
QUERIES = {
    "overview": [_runs(WEEK), _people(WEEK), _runs(EARLIER), _people(EARLIER)],
    "results": [
        _people(NOW), _people(THEN), _runs(NOW),
        _tallies(ANSWERED_NOW), _tallies(ANSWERED_THEN),
        _steps(ANSWERED_NOW), _steps(ANSWERED_THEN),
        "SELECT g.value, x.value, count(DISTINCT g.participant) FROM answers AS g"
        " JOIN answers AS x ON x.run_id = g.run_id AND x.step = 'week'"
        " WHERE g.guide_id = :guide AND g.step = 'changed' AND g.answered_at >= :since"
        " AND g.answered_at < :now GROUP BY g.value, x.value",
    ],
    "report": [
        _people("updated_at >= :ever AND started_at < :today"),
        _runs("updated_at >= :ever AND started_at < :today"),
        _tallies(EVER_SINCE), _steps(EVER_SINCE),
    ],
}  # fmt: skip


def positional(sql: str) -> tuple[str, list[str]]:
    """A query's :names as PostgreSQL's $1, $2... and the names in that order."""
    names: list[str] = []

    def number(found: re.Match[str]) -> str:
        if found.group(1) not in names:
            names.append(found.group(1))
        return f"${names.index(found.group(1)) + 1}"

    return re.sub(r":([a-z]+)", number, sql), names


async def time_sql(
    run: Callable[[str, dict[str, Any]], Awaitable[None]], params: dict[str, Any], loads: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for page, queries in QUERIES.items():
        times = []
        for _ in range(loads):
            began = time.perf_counter()
            for sql in queries:
                await run(sql, params)
            times.append(time.perf_counter() - began)
        found[page] = times
    return found


async def plain_sqlite(db: Path, params: dict[str, Any], loads: int) -> dict[str, list[float]]:
    connection = sqlite3.connect(db)

    async def run(sql: str, values: dict[str, Any]) -> None:
        wanted = {k: v for k, v in values.items() if f":{k}" in sql}
        connection.execute(sql, wanted).fetchall()

    try:
        return await time_sql(run, {k: ts(v) if isinstance(v, datetime) else v
                                    for k, v in params.items()}, loads)  # fmt: skip
    finally:
        connection.close()


async def plain_postgres(url: str, params: dict[str, Any], loads: int) -> dict[str, list[float]]:
    import asyncpg

    connection = await asyncpg.connect(url)

    async def run(sql: str, values: dict[str, Any]) -> None:
        text, names = positional(sql)
        await connection.fetch(text, *[values[n] for n in names])

    try:
        return await time_sql(run, params, loads)
    finally:
        await connection.close()


# The pages, over HTTP from the real server ---------------------------------------------


async def serve(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "run", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(60), aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    if answer.status == 200:
                        return process
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def console_link(env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "console", "link", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    found = re.search(r"t=([A-Za-z0-9_-]+)", out.decode())
    assert process.returncode == 0 and found, err.decode()
    return found.group(1)


async def time_pages(
    base: str, token: str, pages: dict[str, str], loads: int
) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.post(f"{base}/console/signin", data={"t": token},
                                allow_redirects=False) as answer:  # fmt: skip
            assert answer.status == 303, await answer.text()
        for name, path in pages.items():
            times = []
            for n in range(loads + 3):
                began = time.perf_counter()
                async with session.get(base + path) as answer:
                    body = await answer.read()
                    assert answer.status == 200, (path, body[:300])
                if n >= 3:  # the first few warm the server's caches up
                    times.append(time.perf_counter() - began)
            found[name] = times
            print(f"{name}: {len(body):,} bytes, p95 {percentile(times, 0.95) * 1000:.0f} ms",
                  file=sys.stderr)  # fmt: skip
    return found


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def bench(loads: int, postgres: bool) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        guides = here / "guides"
        shutil.copytree(ROOT / "guides", guides)
        checkin = guides / f"{GUIDE}.yaml"
        checkin.write_text(
            checkin.read_text("utf-8").replace("version: 1\n", "version: 1\npublic: true\n", 1),
            "utf-8",
        )
        port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("KT_", "TELEGRAM_", "SLACK_"))
        }
        env.update(KT_DATA_DIR=str(here / "data"), KT_GUIDES_DIR=str(guides), KT_SECRET_KEY=SECRET,
                   KT_PORT=str(port), KT_CONSOLE="1")  # fmt: skip
        (here / "data").mkdir()
        today = now.date()
        since = datetime.combine(today - timedelta(days=27), datetime.min.time(), UTC)
        midnight = datetime.combine(today, datetime.min.time(), UTC)
        params = {"guide": GUIDE, "since": since, "before": since - timedelta(days=28),
                  "week": now - timedelta(days=7), "now": midnight + timedelta(days=1),
                  "today": midnight, "ever": EVER}  # fmt: skip
        pages = {
            "overview": "/console/",
            "results": f"/console/results/{GUIDE}?from={(today - timedelta(days=27)).isoformat()}"
            f"&to={today.isoformat()}&q=week&by=changed",
            "report": f"/report/{GUIDE}",
        }
        began = time.perf_counter()
        if postgres:
            async with fresh_database() as url:
                await fill_postgres(url, now)
                filled = time.perf_counter() - began
                env["KT_DATABASE_URL"] = url
                http = await _pages(env, port, pages, loads)
                plain = await plain_postgres(url, params, loads)
                http["report, made afresh"] = await made_afresh(PostgresStorage(url), guides,
                                                                midnight, loads)  # fmt: skip
        else:
            db = here / "data" / "kitchen-table.db"
            await fill_sqlite(db, now)
            filled = time.perf_counter() - began
            http = await _pages(env, port, pages, loads)
            plain = await plain_sqlite(db, params, loads)
            http["report, made afresh"] = await made_afresh(SQLiteStorage(db), guides, midnight,
                                                            loads)  # fmt: skip
    backend = "PostgreSQL" if postgres else "SQLite"
    body_rows = []
    plain["report, made afresh"] = plain["report"]
    for name in [*pages, "report, made afresh"]:
        page_p95, sql_p95 = percentile(http[name], 0.95), percentile(plain[name], 0.95)
        body_rows.append([name, backend, f"{median(http[name]) * 1000:.0f}", f"{page_p95 * 1000:.0f}",
                          f"{sql_p95 * 1000:.1f}", f"{page_p95 / sql_p95:.1f}x",
                          "met" if page_p95 < 0.3 and page_p95 <= 3 * sql_p95 else "not met"])  # fmt: skip
    body = table(["page", "backend", "p50 ms", "p95 ms", "plain GROUP BY p95 ms",
                  "page / GROUP BY", "target"], body_rows)  # fmt: skip
    notes = (
        f"{PEOPLE * RUNS_EACH * 5:,} answers from {PEOPLE:,} people over {WEEKS} weeks (filled "
        f"in {filled:.1f} s); {loads} loads of each page over HTTP from `kitchen-table run` "
        "(console on, no chat platform), signed in as an admin; the plain GROUP BYs are the "
        "same figures' aggregates alone, on the benchmark's own connection. Target: p95 under "
        "300 ms on 2 cores and within 3x the plain query. "
        f"Command: `python benchmarks/console.py{' --postgres' if postgres else ''}`."
    )
    publish(f"Console pages ({backend})", body, notes)


async def made_afresh(storage: Any, guides: Path, until: datetime, loads: int) -> list[float]:
    """The public report's figures as each instance makes them once an hour (its loads
    over HTTP are then served as made): `build_results` over every answer, in process."""
    from bot.library import GuideLibrary
    from bot.reports.results import build_results

    guide = GuideLibrary.from_paths([guides]).get(GUIDE)
    assert guide is not None and guide.guide is not None
    await storage.open()
    times = []
    try:
        for n in range(loads + 3):
            began = time.perf_counter()
            await build_results(storage, guide.guide, EVER, until, min_group=5)
            if n >= 3:
                times.append(time.perf_counter() - began)
    finally:
        await storage.close()
    return times


async def _pages(
    env: dict[str, str], port: int, pages: dict[str, str], loads: int
) -> dict[str, list[float]]:
    process = await serve(env, port)
    try:
        token = await console_link(env)
        return await time_pages(f"http://127.0.0.1:{port}", token, pages, loads)
    finally:
        process.terminate()
        await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    asyncio.run(bench(args.loads, args.postgres))


if __name__ == "__main__":
    main()
