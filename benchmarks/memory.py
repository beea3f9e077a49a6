"""Memory per conversation: the bot's resident memory with 100,000 people mid-guide.

Fills a database with people halfway through the weekly check-in, starts
`kitchen-table run` (webhook mode) against the fake Bot API, lets a sample of
them answer, and reads the process's peak resident memory (VmHWM). The baseline
is the same process with an empty database, measured in the same run.

    python benchmarks/memory.py [--people 100000] [--sample 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import publish, table
from benchmarks.fake_api import FakeApi
from benchmarks.inbound import Walker, start_target, stop_target
from bot.flows.engine import Flow
from bot.flows.events import TextInput
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.privacy import Identity
from storage.sqlite import SQLiteStorage

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"benchmark-secret-key-0123456789"


async def populate(data: Path, people: int) -> None:
    """People who agreed and answered the first question of the weekly check-in."""
    storage = SQLiteStorage(data / "kitchen-table.db")
    await storage.open()
    await storage.close()
    loaded = GuideLibrary.from_paths([ROOT / "guides"]).get("weekly-checkin")
    assert loaded is not None and loaded.guide is not None
    flow = Flow(loaded.guide, load_phrasebook())
    now = datetime.now(UTC)
    identity = Identity(SECRET)
    db = sqlite3.connect(data / "kitchen-table.db")
    db.execute(
        "INSERT INTO guide_sources (hash, guide_id, version, source) VALUES (?, ?, ?, ?)",
        (loaded.hash, "weekly-checkin", loaded.guide.version, loaded.source),
    )
    participants, runs = [], []
    for n in range(people):
        chat = 10**9 + n
        pid = identity.pseudonym("telegram", str(chat))
        outcome = flow.start(run_id=f"run{n}", guide_hash=loaded.hash, language="en", now=now)
        for answer in ("yes", "4"):
            outcome = flow.resume(outcome.state, TextInput(answer), now)
        state = outcome.state
        participants.append((pid, "telegram", identity.seal(str(chat)), "en", state.run_id, 0))
        runs.append((state.run_id, pid, state.guide_id, state.guide_version, state.guide_hash,
                     state.status.value, state.model_dump_json(), now.isoformat(), now.isoformat()))  # fmt: skip
    # Columns named: later migrations add columns (runs.gathering) this must not follow.
    db.executemany(
        "INSERT INTO participants (id, channel, address, language, current_run, unreachable)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        participants,
    )
    db.executemany(
        "INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status, state,"
        " started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        runs,
    )
    db.commit()
    db.close()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(people: int, sample: int) -> tuple[float, float]:
    api = FakeApi()
    await api.start()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        if people:
            await populate(data, people)
        process = await start_target("kitchen-table", api, data)
        try:
            async with aiohttp.ClientSession() as session:
                walker = Walker(api, session)
                began = time.perf_counter()
                step = max(1, people // sample) if people else 1
                chats = [10**9 + n * step for n in range(sample)]
                await asyncio.gather(*(walker.say(c, "40", "change", True) for c in chats))
                elapsed = time.perf_counter() - began
            return peak_rss_mb(process.pid), elapsed
        finally:
            await stop_target(process)
            await api.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2000)
    args = parser.parse_args()
    empty, _ = await measure(0, 0)
    full, elapsed = await measure(args.people, args.sample)
    body = table(
        ["database", "peak RSS MB", "ratio to empty"],
        [["empty", f"{empty:.0f}", "1.00"],
         [f"{args.people:,} people mid-guide, {args.sample:,} answering", f"{full:.0f}", f"{full / empty:.2f}"]],
    )  # fmt: skip
    publish(
        "Memory per conversation",
        body,
        f"Target < 150 MB. {args.sample:,} answers from people spread over the database took {elapsed:.1f} s.",
    )


if __name__ == "__main__":
    asyncio.run(main())
