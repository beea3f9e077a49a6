"""Shared by the benchmarks: the machine's description, medians, RESULTS.md, and for
runs on PostgreSQL a fresh database each and the CPU of the server's processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def webhook_env(
    token: str, api_url: str, port: int, folder: Path, guides: Path, secret: str, **settings: str
) -> dict[str, str]:
    """The environment of one `kitchen-table run` in webhook mode on `port`, with its own
    data folder; `settings` add or override (KT_DATABASE_URL, limits...). Nothing of the
    caller's KT_ settings leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    env.update(
        TELEGRAM_BOT_TOKEN=token,
        KT_TELEGRAM_API_URL=api_url,
        KT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        KT_PORT=str(port),
        KT_DATA_DIR=str(folder),
        KT_GUIDES_DIR=str(guides),
        KT_SECRET_KEY=secret,
        **settings,
    )
    return env


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, "
        f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def publish(title: str, body: str, notes: str = "") -> None:
    """Print a result table and append it, with the machine, to RESULTS.md
    (unless KT_BENCH_DRY is set)."""
    text = f"## {title}\n\n{machine()}\n\n{body}\n" + (f"\n{notes}\n" if notes else "")
    print(text)
    if os.environ.get("KT_BENCH_DRY"):
        return  # a trial run (e.g. while other work shares the machine): print only
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write("\n" + text)


# PostgreSQL, for the benchmarks that run the bot on it (inbound.py --postgres,
# fanout.py --postgres): a fresh database per run on a server on this machine, and
# the CPU its processes use, read from /proc.

SERVER_URL = os.environ.get("KT_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None: it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def with_database(url: str, name: str) -> str:
    """The same server's URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def fresh_database(server: str = SERVER_URL) -> AsyncIterator[str]:
    """A database made for one run (CREATE DATABASE on `server`'s server), its schema
    brought up to date by `kitchen-table db upgrade`, dropped afterwards: its URL."""
    import asyncpg

    name = f"kt_bench_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f"CREATE DATABASE {name}")
        url = with_database(server, name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
        env.update(KT_DATABASE_URL=url)
        upgrade = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "db", "upgrade", env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        said, _ = await upgrade.communicate()
        if upgrade.returncode != 0:
            raise RuntimeError(f"kitchen-table db upgrade failed: {said.decode()}")
        yield url
    finally:
        # FORCE: a bot killed mid-run may have left connections behind.
        await connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await connection.close()


BACKGROUND, OURS, OTHERS = "background", "ours", "others"


def postgres_processes() -> dict[int, str]:
    """Every process whose name starts with "postgres", with its command line (which,
    for a connection's backend, names the user, the database and the client)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("postgres"):
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # it ended meanwhile
    return found


def postgres_kind(cmdline: str, ours: frozenset[str]) -> str:
    """A connection's backend of one of the `ours` databases (OURS), of another database
    (OTHERS: other engineers' tests on the same server), or the server's own
    (BACKGROUND: the postmaster, WAL writer, checkpointer, background writer,
    autovacuum...)."""
    title = cmdline.strip().removeprefix("postgres:").strip()
    words = title.split()
    if words and words[0].endswith(":"):  # the cluster's name, "15/main:"
        words = words[1:]
    # "user database host(port) state" or "user database [local] state"
    if len(words) >= 3 and (words[2].endswith(")") or words[2] == "[local]"):
        return OURS if words[1] in ours else OTHERS
    return BACKGROUND


class ServerCpu:
    """The CPU that PostgreSQL's processes use between start() and stop(), by kind.

    Read from /proc every `every` seconds, so that a process that ends meanwhile
    (an autovacuum worker, a test's connection) is counted up to its last reading;
    one that starts meanwhile counts from zero."""

    def __init__(self, databases: frozenset[str], every: float = 0.2) -> None:
        self.databases = databases
        self.every = every
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None

    def _read(self, starting: bool) -> None:
        for pid, cmdline in postgres_processes().items():
            cpu = process_cpu(pid)
            if cpu is None:
                continue
            if pid not in self.first:
                self.first[pid] = cpu if starting else 0.0
            self.last[pid] = cpu
            # A backend's title names its database once it has connected.
            if self.kinds.get(pid, BACKGROUND) == BACKGROUND:
                self.kinds[pid] = postgres_kind(cmdline, self.databases)

    async def _keep_reading(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            self._read(starting=False)

    def start(self) -> None:
        self._read(starting=True)
        self._task = asyncio.create_task(self._keep_reading())

    async def stop(self) -> dict[str, float]:
        """CPU seconds by kind: OURS, BACKGROUND, OTHERS."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._read(starting=False)
        used = {OURS: 0.0, BACKGROUND: 0.0, OTHERS: 0.0}
        for pid, last in self.last.items():
            used[self.kinds[pid]] += last - self.first[pid]
        return used
