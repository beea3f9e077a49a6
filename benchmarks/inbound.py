"""Inbound throughput and latency: people walking a guide by Telegram webhook.

Starts a fake Bot API on 127.0.0.1, then `kitchen-table run` (webhook mode) and the
baseline (benchmarks/baseline_bot.py, a ConversationHandler with PicklePersistence),
each in its own process. Every simulated person sends an answer, waits until the
fake API has received the bot's reply, and answers again. Latency is from the
webhook call to the reply reaching the fake API.

Two guides: the weekly check-in (the default, answers mostly typed) and `tap-heavy`
(benchmarks/guides/tap-heavy.yaml, #19: consent and three questions tapped on the
newest inline keyboard, one typed answer). Besides speed, it counts the Bot API calls
each answer costs, and apart from them the webhook replies that carry a method.

On PostgreSQL (#20), `--postgres` measures in one run Kitchen Table on SQLite, on
PostgreSQL with one instance, and with two `kitchen-table run` processes on the same
database, each on its own port, the webhook calls spread over them in turn (as a load
balancer would: one person's answers go to either). Each PostgreSQL run gets a fresh
database (CREATE DATABASE on KT_BENCH_DATABASE_URL's server, then `kitchen-table db
upgrade`), dropped afterwards. CPU per answer is then of every process together: the
bots, and PostgreSQL's processes read from /proc (the backends of the run's database
and the server's own background processes; other databases' backends, other people's
tests on a shared server, are shown apart). Every run counts what was lost and
duplicated: replies that never came, messages a chat got twice, and answers, runs
and consents missing or stored twice in the database.

A control, `postgres-apart` (with `--spread people`): two instances that share
nothing, each with a fresh database of its own on the same server. Beside
`postgres-x2` with the same spread, it separates what a second process costs on this
machine from what sharing one database costs:

    python benchmarks/inbound.py --targets postgres,postgres-x2,postgres-apart \
        --spread people --paced-rate 1

    python benchmarks/inbound.py [--guide weekly-checkin|tap-heavy] [--people 1000]
                                 [--runs 3] [--paced-rate 200]
                                 [--postgres | --targets kitchen-table,postgres-x2,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (
    BACKGROUND,
    OTHERS,
    OURS,
    ServerCpu,
    fresh_database,
    median,
    percentile,
    publish,
    table,
    webhook_env,
)
from benchmarks.fake_api import TOKEN, FakeApi
from bot.app.cli import settle_garbage_collector

ROOT = Path(__file__).resolve().parent.parent
TYPE, TAP = "type", "tap"
# Per guide: (type or tap, what the person types or the button they tap, a word the
# bot's reply to it contains). The first step starts the guide and is no answer.
WALKS = {
    "weekly-checkin": [
        (TYPE, "/start weekly-checkin", "all right"),
        (TYPE, "yes", "week at work"),
        (TYPE, "4", "hours"),
        (TYPE, "40", "change"),
        (TYPE, "no", "better"),
        (TYPE, "More rest, fewer double shifts", "Thank you"),
    ],
    "tap-heavy": [
        (TYPE, "/start tap-heavy", "all right"),
        (TAP, "I agree", "shift"),
        (TAP, "Evening", "safe"),
        (TAP, "4", "schedule"),
        (TAP, "No", "change"),
        (TYPE, "Fewer split shifts", "Thank you"),
    ],
}
TITLES = {"weekly-checkin": "weekly check-in", "tap-heavy": "tap-heavy guide"}
WALK = WALKS["weekly-checkin"]  # set by --guide
ANSWERS_PER_PERSON = len(WALK) - 1
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# What is measured: (the bot, its database, how many instances). "kitchen-table" and
# "baseline" are what `make bench` compares; the others are Kitchen Table on PostgreSQL.
TARGETS = {
    "kitchen-table": ("kitchen-table", "sqlite", 1),
    "baseline": ("baseline", "pickle", 1),
    "postgres": ("kitchen-table", "postgres", 1),
    "postgres-x2": ("kitchen-table", "postgres", 2),
    "postgres-apart": ("kitchen-table", "postgres", 2),
}
# A control, not a configuration anyone would run: two instances that share nothing,
# each with a database of its own on the same server, each person's calls to one of
# them. Set beside "postgres-x2" (with --spread people), it tells what two processes
# cost on this machine apart from what sharing one database costs.
APART = {"postgres-apart"}
LABELS = {
    "kitchen-table": "kitchen-table, SQLite",
    "baseline": "baseline (PicklePersistence)",
    "postgres": "kitchen-table, PostgreSQL, 1 instance",
    "postgres-x2": "kitchen-table, PostgreSQL, 2 instances",
    "postgres-apart": "kitchen-table, PostgreSQL, 2 instances, a database each (control)",
}
REPLY_WAIT = 15.0  # seconds a person waits for a reply before counting it lost


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PROFILE: str | None = None  # set by --profile: py-spy writes a speedscope file here
QUIET = True  # the bots' logs are thrown away, unless --bot-logs
# How webhook calls are spread over several instances: in turn ("turns", one person's
# answers go to any), or by person ("people", each person's to one instance).
SPREAD = "turns"
POOL_SIZE: int | None = None  # KT_DB_POOL_SIZE for the bots on PostgreSQL (theirs if None)


def guides_for(guide: str, into: Path) -> Path:
    """The folder of guides the bot reads: the shipped ones, and for a guide that
    only the benchmarks have, copies of the shipped ones beside it."""
    if (ROOT / "guides" / f"{guide}.yaml").exists():
        return ROOT / "guides"
    for path in (ROOT / "guides").iterdir():
        if path.is_file():
            shutil.copy(path, into / path.name)
    shutil.copy(ROOT / "benchmarks" / "guides" / f"{guide}.yaml", into / f"{guide}.yaml")
    return into


async def start_target(
    name: str, api: FakeApi, data: Path, guides: Path, database_urls: Sequence[str] = ()
) -> list[asyncio.subprocess.Process]:
    """Start the target's processes (one per instance) and wait until each has
    registered its webhook with the fake API. On PostgreSQL, instance n uses database
    `database_urls[n % len(database_urls)]`: one for all, or one each."""
    bot, _, instances = TARGETS[name]
    api.reset()
    processes = []
    for instance in range(instances):
        port = free_port()
        folder = data / f"instance-{instance}"
        folder.mkdir()
        env = webhook_env(
            TOKEN, api.url, port, folder, guides, "benchmark-secret-key-0123456789",
            # A benchmark sends faster than Telegram lets a free bot: lift our own limits.
            KT_TELEGRAM_MAX_PER_SECOND="100000",
            KT_TELEGRAM_MAX_PER_CHAT="1000",
        )  # fmt: skip
        if database_urls:
            env["KT_DATABASE_URL"] = database_urls[instance % len(database_urls)]
            if POOL_SIZE:
                env["KT_DB_POOL_SIZE"] = str(POOL_SIZE)
        command = [sys.executable, "-m", "bot", "run"]
        if bot == "baseline":
            command = [sys.executable, str(ROOT / "benchmarks" / "baseline_bot.py")]
        if PROFILE and bot != "baseline" and instance == 0:
            spy = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "speedscope",
                "--threads",
                "-o",
                PROFILE,
                "--",
            ]
            command = spy + command
        processes.append(
            await asyncio.create_subprocess_exec(
                *command,
                env=env,
                cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL if QUIET else None,
            )
        )
    await api.webhooks_set(instances)
    return processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stop_target(processes: list[asyncio.subprocess.Process]) -> None:
    # py-spy writes its profile on Ctrl-C, and the bot stops cleanly on either.
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGINT if PROFILE else signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), 60)


class Walker:
    def __init__(self, api: FakeApi, session: aiohttp.ClientSession) -> None:
        self.api = api
        self.session = session
        # Every instance's webhook, taken in turn: one person's answers go to any.
        self.urls = [hook["url"] for hook in api.webhooks or [api.webhook]]
        self.turns = count()
        self.headers = {SECRET_HEADER: api.webhook.get("secret_token", "")}
        self.update_ids = count(1)
        self.lost = 0  # replies that never came (the person went on without them)
        self.latencies: list[float] = []
        # Calls each chat had made for it once its guide had started (its first reply
        # arrived), by method: the calls of its answers are what comes after.
        self.started: dict[int, Counter[str]] = {}
        # Webhook replies that carried a Bot API method, by method, for answers.
        self.replied: Counter[str] = Counter()

    def tap_update(self, chat: int, label: str) -> dict[str, Any]:
        """A person's tap on the button labelled `label` of the chat's newest keyboard."""
        newest = self.api.newest_keyboard(chat)
        if newest is None:
            raise RuntimeError(f"chat {chat} has no keyboard to tap {label!r} on")
        message_id, markup = newest
        for row in markup["inline_keyboard"]:
            for button in row:
                # A label may carry more than the answer ("4", "1 · Not at all"): its
                # first word is what the person reads as the answer.
                if button["text"] == label or button["text"].split()[0] == label:
                    data = button["callback_data"]
                    break
            else:
                continue
            break
        else:
            raise RuntimeError(f"chat {chat}: no button {label!r} in {markup}")
        update_id = next(self.update_ids)
        person = {"id": chat, "is_bot": False, "first_name": "P", "language_code": "en"}
        return {
            "update_id": update_id,
            "callback_query": {
                # The chat leads the id, so the fake API can tell whose answerCallbackQuery it is.
                "id": f"{chat}-{update_id}",
                "from": person,
                "chat_instance": str(chat),
                "data": data,
                "message": {
                    "message_id": message_id,
                    # A real date: PTB takes a message dated 0 for an inaccessible one.
                    "date": int(time.time()),
                    "chat": {"id": chat, "type": "private"},
                    "from": {"id": 424242, "is_bot": True, "first_name": "Bench"},
                    "text": "…",
                },
            },
        }

    async def say(self, chat: int, kind: str, text: str, marker: str, record: bool) -> None:
        if kind == TAP:
            await self.post(chat, self.tap_update(chat, text), marker, record)
            return
        update: dict[str, Any] = {
            "update_id": next(self.update_ids),
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": chat, "type": "private"},
                "from": {"id": chat, "is_bot": False, "first_name": "P", "language_code": "en"},
                "text": text,
            },
        }
        if text.startswith("/"):
            # Telegram marks commands with an entity; PTB's CommandHandler relies on it.
            length = len(text.split()[0])
            update["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        await self.post(chat, update, marker, record)

    async def post(self, chat: int, update: dict[str, Any], marker: str, record: bool) -> None:
        inbox = self.api.inboxes[chat]
        began = time.perf_counter()
        turn = chat if SPREAD == "people" else next(self.turns)
        url = self.urls[turn % len(self.urls)]
        async with self.session.post(url, json=update, headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"webhook answered {response.status}")
            body = await response.read()
        if record and body.startswith(b"{"):
            method = json.loads(body).get("method")
            if method:
                self.replied[method] += 1
        try:
            async with asyncio.timeout(REPLY_WAIT):
                while marker not in await inbox.get():
                    pass
        except TimeoutError:
            self.lost += 1
            return
        if record:
            self.latencies.append(time.perf_counter() - began)
        else:
            self.started[chat] = Counter(self.api.chat_calls[chat])

    def answer_calls(self) -> Counter[str]:
        """The Bot API calls made for the answers of every chat walked, by method."""
        calls: Counter[str] = Counter()
        for chat, before in self.started.items():
            calls.update(self.api.chat_calls[chat] - before)
        return calls

    async def walk(self, chat: int, pace: float = 0.0, offset: float = 0.0) -> None:
        if offset:
            await asyncio.sleep(offset)
        for index, (kind, text, marker) in enumerate(WALK):
            started = time.perf_counter()
            await self.say(chat, kind, text, marker, record=index > 0)
            if pace:
                await asyncio.sleep(max(0.0, pace - (time.perf_counter() - started)))


async def settled(api: FakeApi, quiet: float = 0.3, longest: float = 10.0) -> None:
    """Wait until the fake API has taken no call for `quiet` seconds: what a bot sends
    after a person's next question (an answered keyboard's edit) belongs to the answer."""
    deadline = time.perf_counter() + longest
    while time.perf_counter() < deadline:
        api.called.clear()
        try:
            await asyncio.wait_for(api.called.wait(), quiet)
        except TimeoutError:
            return


async def measure(
    name: str, guide: str, people: int, paced_rate: int, first_chat: int
) -> dict[str, float]:
    backend = TARGETS[name][1]
    api = FakeApi()
    await api.start()
    async with contextlib.AsyncExitStack() as stack:
        data = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        guides = guides_for(guide, Path(stack.enter_context(tempfile.TemporaryDirectory())))
        database_urls: list[str] = []
        if backend == "postgres":
            for _ in range(TARGETS[name][2] if name in APART else 1):
                database_urls.append(await stack.enter_async_context(fresh_database()))
        processes = await start_target(name, api, data, guides, database_urls)
        server = ServerCpu(frozenset(url.rsplit("/", 1)[1] for url in database_urls))
        try:
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as session:
                # As fast as people can go: throughput and its latencies.
                walker = Walker(api, session)
                bot_cpu = sum(cpu_seconds(p.pid) for p in processes)
                own_cpu = time.process_time()
                server.start()
                began = time.perf_counter()
                await asyncio.gather(*(walker.walk(first_chat + n) for n in range(people)))
                elapsed = time.perf_counter() - began
                await settled(api)
                postgres = await server.stop()
                bot_cpu = sum(cpu_seconds(p.pid) for p in processes) - bot_cpu
                own_cpu = time.process_time() - own_cpu
                flat_out = walker.latencies
                calls = walker.answer_calls()
                # Paced: `paced_rate` answers a second in all, one a second per person.
                paced = Walker(api, session)
                paced.update_ids = count(10**7)
                crowd = paced_rate
                # CPU at this pace too: the machine is not saturated, so nothing waits
                # to be batched with more than it would be in ordinary use.
                paced_server = ServerCpu(server.databases)
                paced_server.start()
                paced_bots = sum(cpu_seconds(p.pid) for p in processes)
                await asyncio.gather(
                    *(
                        paced.walk(first_chat + 10**6 + n, pace=1.0, offset=n / crowd)
                        for n in range(crowd)
                    )
                )
                await settled(api)
                paced_bots = sum(cpu_seconds(p.pid) for p in processes) - paced_bots
                paced_postgres = await paced_server.stop()
        finally:
            await stop_target(processes)
            await api.stop()
        walked = people + paced_rate
        if backend == "sqlite":
            stored = stored_in_sqlite(data / "instance-0" / "kitchen-table.db", guide, walked)
        elif database_urls:
            stored = await stored_in_postgres(database_urls, guide, walked)
        else:
            stored = {}  # the baseline keeps no answers we can count
    answers = people * ANSWERS_PER_PERSON
    exited = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGTERM)]
    if exited:
        print(f"{name}: an instance exited with {exited}", file=sys.stderr)
    return {
        "rate": answers / elapsed,
        # CPU milliseconds per answer: the bots', PostgreSQL's (the run's database's
        # backends, the server's background processes, other databases' backends),
        # and the simulated people's + fake API's.
        "bot_cpu_ms": bot_cpu * 1000 / answers,
        "db_cpu_ms": postgres[OURS] * 1000 / answers,
        "background_cpu_ms": postgres[BACKGROUND] * 1000 / answers,
        "others_cpu_ms": postgres[OTHERS] * 1000 / answers,
        "load_cpu_ms": own_cpu * 1000 / answers,
        # The same at the paced rate: bots + the database's backends + server background.
        "paced_cpu_ms": (paced_bots + paced_postgres[OURS] + paced_postgres[BACKGROUND])
        * 1000
        / (crowd * ANSWERS_PER_PERSON),
        "p50": percentile(flat_out, 0.5) * 1000,
        "p99": percentile(flat_out, 0.99) * 1000,
        "paced_p50": percentile(paced.latencies, 0.5) * 1000,
        "paced_p99": percentile(paced.latencies, 0.99) * 1000,
        # Bot API calls per answer, as requests the bot makes, and as methods it puts
        # in its webhook replies (which Telegram runs without saying how it went).
        "calls": calls.total() / answers,
        "replied": walker.replied.total() / answers,
        # Lost and duplicated, over both phases: replies, messages, stored rows.
        "lost_replies": walker.lost + paced.lost,
        "duplicate_messages": api.duplicates(),
        **stored,
        **{f"calls:{method}": n / answers for method, n in sorted(calls.items())},
        **{f"replied:{method}": n / answers for method, n in sorted(walker.replied.items())},
    }


# What the database holds after a run, the same SQL on either backend: every person
# walked should have one run of the guide, one consent, and one answer for each
# answered question (ANSWERS_PER_PERSON, less the consent, which is kept apart).
STORED = {
    "people": "SELECT count(DISTINCT participant) FROM runs WHERE guide_id = {g}",
    "runs": "SELECT count(*) FROM runs WHERE guide_id = {g}",
    "consents": "SELECT count(*) FROM consents WHERE guide_id = {g}",
    "answers": "SELECT count(*) FROM answers WHERE guide_id = {g}",
    "distinct_answers": "SELECT count(*) FROM (SELECT DISTINCT participant, step "
    "FROM answers WHERE guide_id = {g}) AS kept",
}


def losses(counts: dict[str, int], walked: int) -> dict[str, float]:
    """Answers lost and duplicated from what the database holds, for `walked` people."""
    owed = walked * (ANSWERS_PER_PERSON - 1)
    return {
        "lost_answers": owed - counts["distinct_answers"],
        "duplicate_answers": counts["answers"] - counts["distinct_answers"],
        "lost_people": walked - counts["people"],
        "duplicate_runs": counts["runs"] - counts["people"],
        "lost_consents": max(0, walked - counts["consents"]),
        "duplicate_consents": max(0, counts["consents"] - walked),
    }


def stored_in_sqlite(path: Path, guide: str, walked: int) -> dict[str, float]:
    import sqlite3

    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counts = {
            key: int(connection.execute(sql.format(g="?"), (guide,)).fetchone()[0])
            for key, sql in STORED.items()
        }
    finally:
        connection.close()
    return losses(counts, walked)


async def stored_in_postgres(urls: Sequence[str], guide: str, walked: int) -> dict[str, float]:
    """As `stored_in_sqlite`, added up over the databases (each person's rows are in one)."""
    import asyncpg

    counts = dict.fromkeys(STORED, 0)
    for url in urls:
        connection = await asyncpg.connect(url)
        try:
            for key, sql in STORED.items():
                counts[key] += int(await connection.fetchval(sql.format(g="$1"), guide))
        finally:
            await connection.close()
    return losses(counts, walked)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guide", choices=list(WALKS), default="weekly-checkin")
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paced-rate", type=int, default=200)
    parser.add_argument("--profile", help="record the bot with py-spy into this file")
    parser.add_argument("--only", choices=list(TARGETS))
    parser.add_argument(
        "--targets",
        default="kitchen-table,baseline",
        help=f"what to measure, in each run, comma-separated: {', '.join(TARGETS)}",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="measure Kitchen Table on SQLite, and on PostgreSQL with one and two "
        "instances (--targets kitchen-table,postgres,postgres-x2); the server is "
        "KT_BENCH_DATABASE_URL's (postgresql://postgres@127.0.0.1:5432/test)",
    )
    parser.add_argument("--bot-logs", action="store_true", help="show the bots' logs")
    parser.add_argument(
        "--spread",
        choices=["turns", "people"],
        default="turns",
        help="several instances take webhook calls in turn, or each person's calls go "
        "to one instance",
    )
    parser.add_argument(
        "--pool-size", type=int, help="KT_DB_POOL_SIZE for the bots on PostgreSQL (default: theirs)"
    )
    args = parser.parse_args()
    # The simulated people and the fake API share the machine with the bot under test:
    # spare them the collector's default pace, as the bot spares itself.
    settle_garbage_collector()
    global PROFILE, WALK, ANSWERS_PER_PERSON, QUIET, SPREAD, POOL_SIZE
    PROFILE = args.profile
    POOL_SIZE = args.pool_size
    SPREAD = args.spread
    QUIET = not args.bot_logs
    WALK = WALKS[args.guide]
    ANSWERS_PER_PERSON = len(WALK) - 1
    names = args.targets.split(",")
    if args.postgres:
        names = ["kitchen-table", "postgres", "postgres-x2"]
    if args.only:
        names = [args.only]
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"--targets: unknown {', '.join(sorted(unknown))}")
    if APART & set(names) and SPREAD != "people":
        # Each instance knows only the people whose calls came to it.
        parser.error("postgres-apart needs --spread people")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for run in range(args.runs):
        # Each run in another order, so drift on a noisy machine hits every target.
        for name in names[run % len(names) :] + names[: run % len(names)]:
            results[name].append(
                await measure(name, args.guide, args.people, args.paced_rate, 10**8 * (run + 1))
            )
            print(f"run {run + 1} {name}: {results[name][-1]}", file=sys.stderr)
    if args.only:  # a probe while profiling, not a comparison: nothing is published
        return
    if set(names) == {"kitchen-table", "baseline"}:
        publish_against_baseline(args, results)
    else:
        publish_backends(args, results)


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    """Medians of the runs; losses and duplicates added up over them."""
    keys = sorted({key for r in runs for key in r})
    summary = {key: median([r.get(key, 0.0) for r in runs]) for key in keys}
    for key in keys:
        if key.startswith(("lost_", "duplicate_")):
            summary[key] = sum(r.get(key, 0.0) for r in runs)
    return summary


def publish_against_baseline(
    args: argparse.Namespace, results: dict[str, list[dict[str, float]]]
) -> None:
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        summary[name] = summarize(runs)
        s = summary[name]
        rows.append([name, f"{s['rate']:.0f}", f"{s['p50']:.1f}", f"{s['p99']:.1f}",
                     f"{s['paced_p50']:.1f}", f"{s['paced_p99']:.1f}",
                     f"{s['bot_cpu_ms']:.2f}", f"{s['load_cpu_ms']:.2f}",
                     f"{s['calls']:.2f} + {s['replied']:.2f}", calls_by_method(s)])  # fmt: skip
    ratio = summary["kitchen-table"]["rate"] / summary["baseline"]["rate"]
    cpu_ratio = summary["baseline"]["bot_cpu_ms"] / summary["kitchen-table"]["bot_cpu_ms"]
    body = table(
        [
            "bot",
            "answers/s",
            "p50 ms",
            "p99 ms",
            f"p50 ms at {args.paced_rate}/s",
            f"p99 ms at {args.paced_rate}/s",
            "bot CPU ms/answer",
            "load CPU ms/answer",
            "API calls/answer (requests + webhook replies)",
            "by method",
        ],
        rows,
    )
    notes = (
        f"{args.people} people × {ANSWERS_PER_PERSON} answers each, medians of {args.runs} runs. "
        f"API calls per answer: the Bot API requests the bot makes for an answer, "
        f"plus the methods it returns in its webhook replies. "
        f"Throughput ratio kitchen-table / baseline: **{ratio:.2f}x**; bot CPU per answer, "
        f"baseline / kitchen-table: **{cpu_ratio:.2f}x**. Kitchen Table commits every "
        "answer (synchronous=FULL) before its reply is sent; the baseline's PicklePersistence "
        "writes to disk only every 60 s, so its answers are not durable when it replies. "
        "CPU per answer is the bot process's, and the load generator's (simulated people "
        "and fake Bot API, one process) on the same cores."
    )
    publish(
        f"Inbound throughput and latency ({TITLES[args.guide]} over Telegram webhooks)", body, notes
    )


LOSSES = [
    ("lost_replies", "duplicate_messages"),
    ("lost_answers", "duplicate_answers"),
    ("lost_people", "duplicate_runs"),
    ("lost_consents", "duplicate_consents"),
]


def total_cpu(result: dict[str, float]) -> float:
    """CPU ms per answer of every process that served it: the bots, the run's
    database's backends and the server's background processes."""
    return result["bot_cpu_ms"] + result["db_cpu_ms"] + result["background_cpu_ms"]


def publish_backends(args: argparse.Namespace, results: dict[str, list[dict[str, float]]]) -> None:
    """Kitchen Table on each database (and instances), with CPU of every process."""
    rows = []
    summary = {name: summarize(runs) for name, runs in results.items()}
    for name, s in summary.items():
        totals = [total_cpu(r) for r in results[name]]
        lost = ", ".join(f"{s.get(a, 0):.0f} / {s.get(b, 0):.0f}" for a, b in LOSSES)
        rows.append([LABELS[name], f"{s['rate']:.0f}", f"{s['p50']:.1f}", f"{s['p99']:.1f}",
                     f"{s['paced_p50']:.1f}", f"{s['paced_p99']:.1f}",
                     f"{s['bot_cpu_ms']:.2f}", f"{s['db_cpu_ms']:.2f}",
                     f"{s['background_cpu_ms']:.2f}",
                     ", ".join(f"{t:.2f}" for t in totals) + f" → **{median(totals):.2f}**",
                     f"{s['others_cpu_ms']:.2f}", f"{s['load_cpu_ms']:.2f}",
                     ", ".join(f"{r['paced_cpu_ms']:.2f}" for r in results[name])
                     + f" → **{s['paced_cpu_ms']:.2f}**",
                     f"{s['calls']:.2f} + {s['replied']:.2f}",
                     "n/a" if name == "baseline" else lost])  # fmt: skip
    body = table(
        [
            "bot",
            "answers/s",
            "p50 ms",
            "p99 ms",
            f"p50 ms at {args.paced_rate}/s",
            f"p99 ms at {args.paced_rate}/s",
            "bots CPU ms/answer",
            "its database's backends",
            "server background",
            "all together, each run → median",
            "other databases' backends",
            "load generator",
            f"all together at {args.paced_rate}/s, each run → median",
            "API calls/answer",
            "lost / duplicated: replies / messages, answers, runs, consents",
        ],
        rows,
    )
    # Ratios within each run (the same minutes of a shared machine), then their median.
    ratios = []
    comparisons: tuple[tuple[str, str, str, float | None], ...] = (
        ("postgres", "kitchen-table", "PostgreSQL 1 instance / SQLite", 1.5),
        ("postgres-x2", "postgres", "PostgreSQL 2 instances / 1 instance", 1.1),
        # The control: what two processes cost on this machine, and what sharing adds.
        ("postgres-apart", "postgres", "2 instances sharing nothing (control) / 1", None),
        ("postgres-x2", "postgres-apart", "2 instances on one database / 2 sharing nothing",
         None),
    )  # fmt: skip
    for over, under, what, target in comparisons:
        if over in results and under in results:
            each = [
                total_cpu(a) / total_cpu(b)
                for a, b in zip(results[over], results[under], strict=False)
            ]
            verdict = (
                ""
                if target is None
                else f" (target ≤ {target}x: "
                + ("met)" if median(each) <= target else "**not met**)")
            )
            paced = [
                a["paced_cpu_ms"] / b["paced_cpu_ms"]
                for a, b in zip(results[over], results[under], strict=False)
            ]
            ratios.append(
                f"{what}, CPU per answer of all processes: flat out "
                + ", ".join(f"{r:.2f}" for r in each)
                + f" → **{median(each):.2f}x**{verdict}; at "
                f"{args.paced_rate}/s "
                + ", ".join(f"{r:.2f}" for r in paced)
                + f" → **{median(paced):.2f}x**"
            )
    notes = (
        f"{args.people} people × {ANSWERS_PER_PERSON} answers each flat out, then "
        f"{args.paced_rate} people answering once a second ({args.paced_rate} answers/s); "
        f"medians of {args.runs} runs, the targets in turn in each run. CPU per answer "
        "(flat out, and again at the paced rate) of every process: the bots (each `kitchen-table run`), and "
        "PostgreSQL's processes read from /proc every 0.2 s (every process whose name "
        "starts with postgres; a connection's backend is told apart by the database its "
        "title names): the run's own database's backends, and the server's background "
        "processes (postmaster, WAL writer, checkpointer, background writer, autovacuum), "
        "which also serve whatever else uses the server. 'All together' is bots + "
        "its database's backends + server background; other databases' backends (other "
        "tests on a shared server) are shown apart and not counted. Lost / duplicated are "
        "added up over the runs and both phases: replies a person waited for in vain "
        f"({REPLY_WAIT:.0f} s) / messages a chat got twice; answers (one per question), runs "
        "(one per person) and consents (one per person) missing / stored twice. "
        + (
            "Two instances take the webhook calls in turn, so one person's answers go to both."
            if args.spread == "turns"
            else "Each person's webhook calls go to one instance (by chat id)."
        )
        + "\n\n"
        + "\n\n".join(ratios)
    )
    publish(
        f"Inbound on SQLite and PostgreSQL, one and two instances ({TITLES[args.guide]})",
        body,
        notes,
    )


def calls_by_method(summary: dict[str, float]) -> str:
    """`sendMessage 1.00, answerCallbackQuery 0.80 (reply)` from a run's summary."""
    parts = [
        f"{key.split(':', 1)[1]} {value:.2f}" + (" (reply)" if key.startswith("replied:") else "")
        for key, value in summary.items()
        if key.startswith(("calls:", "replied:")) and value
    ]
    return ", ".join(parts) or "none"


if __name__ == "__main__":
    asyncio.run(main())
