"""Inbound throughput and latency: people walking the weekly check-in by Telegram webhook.

Starts a fake Bot API on 127.0.0.1, then `kitchen-table run` (webhook mode) and the
baseline (benchmarks/baseline_bot.py, a ConversationHandler with PicklePersistence),
each in its own process. Every simulated person sends an answer, waits until the
fake API has received the bot's reply, and answers again. Latency is from the
webhook call to the reply reaching the fake API.

    python benchmarks/inbound.py [--people 1000] [--runs 3] [--paced-rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median, percentile, publish, table
from benchmarks.fake_api import TOKEN, FakeApi
from bot.app.cli import settle_garbage_collector

ROOT = Path(__file__).resolve().parent.parent
# (what the person types, a word the bot's reply to it contains)
WALK = [
    ("/start weekly-checkin", "all right"),
    ("yes", "week at work"),
    ("4", "hours"),
    ("40", "change"),
    ("no", "better"),
    ("More rest, fewer double shifts", "Thank you"),
]
ANSWERS_PER_PERSON = len(WALK) - 1
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PROFILE: str | None = None  # set by --profile: py-spy writes a speedscope file here


async def start_target(name: str, api: FakeApi, data: Path) -> asyncio.subprocess.Process:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        KT_TELEGRAM_API_URL=api.url,
        KT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        KT_PORT=str(port),
        KT_DATA_DIR=str(data),
        KT_GUIDES_DIR=str(ROOT / "guides"),
        KT_SECRET_KEY="benchmark-secret-key-0123456789",
        # A benchmark sends faster than Telegram lets a free bot: lift our own limits.
        KT_TELEGRAM_MAX_PER_SECOND="100000",
        KT_TELEGRAM_MAX_PER_CHAT="1000",
    )
    command = [sys.executable, "-m", "bot", "run"]
    if name == "baseline":
        command = [sys.executable, str(ROOT / "benchmarks" / "baseline_bot.py")]
    if PROFILE and name != "baseline":
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
    api.reset()
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(api.webhook_set.wait(), 30)
    return process


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stop_target(process: asyncio.subprocess.Process) -> None:
    # py-spy writes its profile on Ctrl-C, and the bot stops cleanly on either.
    process.send_signal(signal.SIGINT if PROFILE else signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 60)


class Walker:
    def __init__(self, api: FakeApi, session: aiohttp.ClientSession) -> None:
        self.api = api
        self.session = session
        self.url = api.webhook["url"]
        self.headers = {SECRET_HEADER: api.webhook.get("secret_token", "")}
        self.update_ids = count(1)
        self.latencies: list[float] = []

    async def say(self, chat: int, text: str, marker: str, record: bool) -> None:
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
        inbox = self.api.inboxes[chat]
        began = time.perf_counter()
        async with self.session.post(self.url, json=update, headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"webhook answered {response.status}")
        while marker not in await asyncio.wait_for(inbox.get(), 30):
            pass
        if record:
            self.latencies.append(time.perf_counter() - began)

    async def walk(self, chat: int, pace: float = 0.0, offset: float = 0.0) -> None:
        if offset:
            await asyncio.sleep(offset)
        for index, (text, marker) in enumerate(WALK):
            started = time.perf_counter()
            await self.say(chat, text, marker, record=index > 0)
            if pace:
                await asyncio.sleep(max(0.0, pace - (time.perf_counter() - started)))


async def measure(name: str, people: int, paced_rate: int, first_chat: int) -> dict[str, float]:
    api = FakeApi()
    await api.start()
    with tempfile.TemporaryDirectory() as data:
        process = await start_target(name, api, Path(data))
        try:
            connector = aiohttp.TCPConnector(limit=256)
            async with aiohttp.ClientSession(connector=connector) as session:
                # As fast as people can go: throughput and its latencies.
                walker = Walker(api, session)
                bot_cpu = cpu_seconds(process.pid)
                own_cpu = time.process_time()
                began = time.perf_counter()
                await asyncio.gather(*(walker.walk(first_chat + n) for n in range(people)))
                elapsed = time.perf_counter() - began
                bot_cpu = cpu_seconds(process.pid) - bot_cpu
                own_cpu = time.process_time() - own_cpu
                flat_out = walker.latencies
                # Paced: `paced_rate` answers a second in all, one a second per person.
                paced = Walker(api, session)
                paced.update_ids = count(10**7)
                crowd = paced_rate
                await asyncio.gather(
                    *(
                        paced.walk(first_chat + 10**6 + n, pace=1.0, offset=n / crowd)
                        for n in range(crowd)
                    )
                )
        finally:
            await stop_target(process)
            await api.stop()
    return {
        "rate": people * ANSWERS_PER_PERSON / elapsed,
        # CPU milliseconds per answer: the bot's, and the simulated people's + fake API's.
        "bot_cpu_ms": bot_cpu * 1000 / (people * ANSWERS_PER_PERSON),
        "load_cpu_ms": own_cpu * 1000 / (people * ANSWERS_PER_PERSON),
        "p50": percentile(flat_out, 0.5) * 1000,
        "p99": percentile(flat_out, 0.99) * 1000,
        "paced_p50": percentile(paced.latencies, 0.5) * 1000,
        "paced_p99": percentile(paced.latencies, 0.99) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paced-rate", type=int, default=200)
    parser.add_argument("--profile", help="record the bot with py-spy into this file")
    parser.add_argument("--only", choices=["kitchen-table", "baseline"])
    args = parser.parse_args()
    # The simulated people and the fake API share the machine with the bot under test:
    # spare them the collector's default pace, as the bot spares itself.
    settle_garbage_collector()
    global PROFILE
    PROFILE = args.profile
    results: dict[str, list[dict[str, float]]] = {"kitchen-table": [], "baseline": []}
    for run in range(args.runs):
        for name in (
            [args.only] if args.only else results
        ):  # alternate, so drift on a noisy machine hits both
            results[name].append(
                await measure(name, args.people, args.paced_rate, 10**8 * (run + 1))
            )
            print(f"run {run + 1} {name}: {results[name][-1]}", file=sys.stderr)
    if args.only:  # a probe while profiling, not a comparison: nothing is published
        return
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        summary[name] = {key: median([r[key] for r in runs]) for key in runs[0]}
        s = summary[name]
        rows.append([name, f"{s['rate']:.0f}", f"{s['p50']:.1f}", f"{s['p99']:.1f}",
                     f"{s['paced_p50']:.1f}", f"{s['paced_p99']:.1f}",
                     f"{s['bot_cpu_ms']:.2f}", f"{s['load_cpu_ms']:.2f}"])  # fmt: skip
    ratio = summary["kitchen-table"]["rate"] / summary["baseline"]["rate"]
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
        ],
        rows,
    )
    notes = (
        f"{args.people} people × {ANSWERS_PER_PERSON} answers each, medians of {args.runs} runs. "
        f"Throughput ratio kitchen-table / baseline: **{ratio:.2f}x**. Kitchen Table commits every "
        "answer (synchronous=FULL) before its reply is sent; the baseline's PicklePersistence "
        "writes to disk only every 60 s, so its answers are not durable when it replies. "
        "CPU per answer is the bot process's, and the load generator's (simulated people "
        "and fake Bot API, one process) on the same cores."
    )
    publish("Inbound throughput and latency (weekly check-in over Telegram webhooks)", body, notes)


if __name__ == "__main__":
    asyncio.run(main())
