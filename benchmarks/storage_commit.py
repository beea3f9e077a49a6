"""CPU per answer in storage, SQLite against PostgreSQL.

What the dispatcher asks of storage for each answer under the inbound benchmark: the
person's conversation read (`conversation`), then the turn's one commit (the inbound
key, the person, their run, the answer, the next question owed), and delivery's share
(the message claimed and recorded as sent). People answer at once, as under load, so
each backend batches what it can (SQLite's group commit and merged writes,
PostgreSQL's commits together in one call).

CPU is the process's (`time.process_time`: the event loop and, for SQLite, its writer
thread) and, for PostgreSQL, the server's too: each of the pool's backends, read from
/proc/<pid>/stat (its `pg_backend_pid()`), so the same machine must run the server.
Also shown: every postgres process (the WAL writer, checkpointer and the rest), which
counts whatever else uses the server meanwhile.

    python benchmarks/storage_commit.py [--people 200] [--answers 10] [--runs 3]
        [--url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage.postgres import PostgresStorage
from storage.protocol import Storage
from storage.rows import AnswerRow, Commit, OutboxRow, ParticipantRow, RunRow
from storage.sqlite import SQLiteStorage

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TICK = os.sysconf("SC_CLK_TCK")
STATE = '{"step": "q%d", "language": "en", "answers": {"week": 4, "hours": 40}}'
PAYLOAD = '{"text": "How many hours did you work this week?", "buttons": []}'


def commit_for(person: int, answer: int) -> Commit:
    who = f"p{person:06d}"
    at = START + timedelta(seconds=answer)
    run = RunRow(f"r{person}", who, "weekly-checkin", 1, "h1", "active", STATE % answer, START, at)
    return Commit(
        inbound_key=f"telegram:{person}:{answer}",
        participant=ParticipantRow(who, "telegram", b"sealed-address" * 4, "en", run.id),
        runs=[run],
        answers=[AnswerRow(run.id, f"q{answer}", who, "weekly-checkin", 1, "text", '"40"', at)],
        outbox=[OutboxRow("telegram", who, b"sealed-address" * 4, PAYLOAD, at)],
    )


async def person(store: Storage, n: int, answers: int, offset: int) -> None:
    for answer in range(offset, offset + answers):
        await store.conversation(f"p{n:06d}", f"telegram:{n}:{answer}")
        assert await store.commit(commit_for(n, answer))


async def deliver(store: Storage, until: datetime) -> int:
    sent = 0
    while rows := await store.claim_due("telegram", until, 500):
        await asyncio.gather(*(store.outbox_sent([row.id or 0]) for row in rows))
        sent += len(rows)
    return sent


def cpu_of(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # a process that ended meanwhile
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def postgres_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


async def backends(store: PostgresStorage) -> list[int]:
    """The server processes of every connection in the store's pool."""
    pool = store.pool
    held = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        return [int(await c.fetchval("SELECT pg_backend_pid()")) for c in held]
    finally:
        for connection in held:
            await pool.release(connection)


async def measure(store: Storage, people: int, answers: int) -> dict[str, float]:
    # Warm up: every person has a run, every connection of a pool is made, every
    # statement prepared.
    await asyncio.gather(*(person(store, n, 1, 0) for n in range(people)))
    await deliver(store, START + timedelta(days=1))
    pids = await backends(store) if isinstance(store, PostgresStorage) else []
    everyone = postgres_processes() if pids else []
    process, server, whole = time.process_time(), cpu_of(pids), cpu_of(everyone)
    began = time.perf_counter()
    await asyncio.gather(*(person(store, n, answers, 1) for n in range(people)))
    sent = await deliver(store, START + timedelta(days=1))
    elapsed = time.perf_counter() - began
    count = people * answers
    assert sent == count, (sent, count)
    result = {
        "python": (time.process_time() - process) / count,
        "server": (cpu_of(pids) - server) / count,
        "postgres": (cpu_of(everyone) - whole) / count,
        "rate": count / elapsed,
    }
    return result


async def one_run(backend: str, url: str, people: int, answers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        schema = f"kt_bench_{secrets.token_hex(4)}"
        store: Storage
        if backend == "sqlite":
            store = SQLiteStorage(Path(folder) / "kt.db")
        else:
            store = PostgresStorage(url, pool_size=10, schema=schema)
        await store.open()
        try:
            return await measure(store, people, answers)
        finally:
            await store.close()
            if backend == "postgres":
                connection = await asyncpg.connect(url)
                await connection.execute(f"DROP SCHEMA {schema} CASCADE")
                await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=200, help="people answering at once")
    parser.add_argument("--answers", type=int, default=10, help="answers each")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "KT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    medians: dict[str, dict[str, float]] = {}
    for backend in ("sqlite", "postgres"):
        runs = [
            asyncio.run(one_run(backend, args.url, args.people, args.answers))
            for _ in range(args.runs)
        ]
        medians[backend] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print(
        f"{args.people} people answering at once, {args.answers} answers each; medians of"
        f" {args.runs} runs. CPU per answer (conversation read, commit, claim, sent):\n"
    )
    print("| backend | Python | server backends | all postgres processes | total | answers/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for backend, m in medians.items():
        total = m["python"] + m["server"]
        print(
            f"| {backend} | {m['python'] * 1e6:.0f} µs | {m['server'] * 1e6:.0f} µs"
            f" | {m['postgres'] * 1e6:.0f} µs | {total * 1e6:.0f} µs | {m['rate']:.0f} |"
        )
    sqlite = medians["sqlite"]["python"]
    postgres = medians["postgres"]["python"] + medians["postgres"]["server"]
    print(
        f"\nPostgreSQL / SQLite, CPU per answer (Python + server backends): {postgres / sqlite:.2f}x"
    )


if __name__ == "__main__":
    main()
