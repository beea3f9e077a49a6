"""Digest at scale: a weekly digest over 1,000,000 stored answers, against a plain GROUP BY.

Fills a database with two weeks of answers to the weekly check-in (a scale, a
number, a choice and two free-text questions per run), then, each in a fresh
process, times (a) the baseline, one `SELECT step, value, count(*) ... GROUP BY`
over the whole answers table, and (b) the digest for the latest week (with the
week before for the changes), rendered as text. Reports wall time and peak
resident memory (VmHWM) of each, and the CPU seconds its process spent (all threads:
the digest groups themes in a thread), and of a worker process grouping a big question's
themes (CPU of all, peak of the largest), as medians of several runs.

    python benchmarks/digest.py [--answers 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median, publish, table

ROOT = Path(__file__).resolve().parent.parent
END = datetime(2026, 11, 23, tzinfo=UTC)
WORDS = ["rest", "pay", "shifts", "schedule", "training", "union", "break", "overtime", "nurse", "warehouse", "boss", "safety", "childcare", "bus", "rent", "hours", "weekend", "tired", "respect", "raise"]  # fmt: skip

BASELINE = """
import sqlite3, sys, time
began, cpu_began = time.perf_counter(), time.process_time()
db = sqlite3.connect(sys.argv[1])
rows = db.execute("SELECT step, value, count(*) FROM answers GROUP BY step, value").fetchall()
elapsed = time.perf_counter() - began
"""
DIGEST = """
import asyncio, sys, time
from datetime import datetime, timedelta
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from bot.reports.digest import build_digest
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.reports.render import Reports
from storage.sqlite import SQLiteStorage

async def main():
    storage = SQLiteStorage(Path(sys.argv[1]))
    await storage.open()
    library = GuideLibrary.from_paths([Path(sys.argv[2]) / "guides"])
    end = datetime.fromisoformat(sys.argv[3])
    global cpu_began
    began, cpu_began = time.perf_counter(), time.process_time()
    digest = await build_digest(storage, library, end - timedelta(days=7), end, min_group=5)
    text = Reports(load_phrasebook()).render("digest", "text", "en", d=digest)
    elapsed = time.perf_counter() - began
    await storage.close()
    return elapsed, text

elapsed, text = asyncio.run(main())
assert "Weekly check-in" in text, text[:500]
"""
REPORT = """
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
import resource
children = resource.getrusage(resource.RUSAGE_CHILDREN)  # a worker grouping themes, if any
print(elapsed, peak / 1024, time.process_time() - cpu_began, children.ru_utime + children.ru_stime,
      children.ru_maxrss / 1024)
"""


def fill(db: Path, answers: int) -> None:
    """Two weeks of the weekly check-in: five answers a run, spread evenly in time."""
    import asyncio

    from storage.sqlite import SQLiteStorage  # creates the schema

    async def create() -> None:
        storage = SQLiteStorage(db)
        await storage.open()
        await storage.close()

    asyncio.run(create())
    chooser = random.Random(1)
    runs = answers // 5
    span = timedelta(days=14) / runs
    connection = sqlite3.connect(db)
    with connection:
        connection.executemany(
            "INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status,"
            " state, started_at, updated_at) VALUES (?, ?, 'weekly-checkin', 1, 'h', ?, ?, ?, ?)",
            [
                (f"r{n}", f"{n % (runs // 2):032x}", "finished" if n % 7 else "active",
                 '{"step": "hours"}', (END - timedelta(days=14) + span * n).isoformat(),
                 (END - timedelta(days=14) + span * n).isoformat())
                for n in range(runs)
            ],
        )  # fmt: skip

        def answer_rows():  # type: ignore[no-untyped-def]
            for n in range(runs):
                at = (END - timedelta(days=14) + span * n).isoformat()
                who = f"{n % (runs // 2):032x}"
                text = " ".join(chooser.choices(WORDS, k=6))
                yield (f"r{n}", "week", who, "scale", str(chooser.randint(1, 5)), at)
                yield (f"r{n}", "hours", who, "number", str(chooser.randint(0, 70)), at)
                yield (
                    f"r{n}",
                    "changed",
                    who,
                    "choose",
                    json.dumps(chooser.choice(["yes", "no"])),
                    at,
                )
                yield (f"r{n}", "what_changed", who, "ask", json.dumps(text), at)
                yield (f"r{n}", "better_week", who, "ask", json.dumps(text[::-1]), at)

        connection.executemany(
            "INSERT INTO answers (run_id, step, participant, guide_id, guide_version, kind, value,"
            " answered_at) VALUES (?, ?, ?, 'weekly-checkin', 1, ?, ?, ?)",
            answer_rows(),
        )
    connection.close()


def measure(script: str, *args: str) -> tuple[float, float, float, float, float]:
    done = subprocess.run(
        [sys.executable, "-c", script + REPORT, *args], capture_output=True, text=True,
        check=True, timeout=600,
    )  # fmt: skip
    seconds, megabytes, cpu, worker_cpu, worker_mb = done.stdout.split()
    return float(seconds), float(megabytes), float(cpu), float(worker_cpu), float(worker_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "kt.db"
        fill(db, args.answers)
        results: dict[str, list[tuple[float, float, float, float, float]]] = {
            "GROUP BY": [],
            "digest": [],
        }
        for run in range(args.runs):
            results["GROUP BY"].append(measure(BASELINE, str(db)))
            results["digest"].append(measure(DIGEST, str(db), str(ROOT), END.isoformat()))
            print(
                f"run {run + 1}: {results['GROUP BY'][-1]} {results['digest'][-1]}", file=sys.stderr
            )
    summary = {name: [median([r[n] for r in rs]) for n in range(5)]
               for name, rs in results.items()}  # fmt: skip
    base_time = summary["GROUP BY"][0]
    rows = [[name, f"{t:.2f}", f"{t / base_time:.2f}", f"{cpu:.2f}", f"{rss:.0f}",
             f"{worker_cpu:.2f}", f"{worker_mb:.0f}"]
            for name, (t, rss, cpu, worker_cpu, worker_mb) in summary.items()]  # fmt: skip
    body = table(["query", "seconds", "ratio to GROUP BY", "CPU s", "peak RSS MB",
                  "worker CPU s", "worker peak MB"], rows)  # fmt: skip
    notes = (
        f"{args.answers:,} answers over two weeks, medians of {args.runs} runs, each in a fresh "
        "process. Targets: digest time ≤ 2x the GROUP BY, peak RSS < 200 MB."
    )
    publish("Digest at scale", body, notes)


if __name__ == "__main__":
    main()
