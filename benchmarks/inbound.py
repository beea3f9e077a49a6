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

    python benchmarks/inbound.py [--guide weekly-checkin|tap-heavy] [--people 1000]
                                 [--runs 3] [--paced-rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median, percentile, publish, table
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PROFILE: str | None = None  # set by --profile: py-spy writes a speedscope file here


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
    name: str, api: FakeApi, data: Path, guides: Path
) -> asyncio.subprocess.Process:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT_")}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        KT_TELEGRAM_API_URL=api.url,
        KT_PUBLIC_URL=f"http://127.0.0.1:{port}",
        KT_PORT=str(port),
        KT_DATA_DIR=str(data),
        KT_GUIDES_DIR=str(guides),
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
        async with self.session.post(self.url, json=update, headers=self.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"webhook answered {response.status}")
            body = await response.read()
        if record and body.startswith(b"{"):
            method = json.loads(body).get("method")
            if method:
                self.replied[method] += 1
        while marker not in await asyncio.wait_for(inbox.get(), 30):
            pass
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
    api = FakeApi()
    await api.start()
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as folder:
        guides = guides_for(guide, Path(folder))
        process = await start_target(name, api, Path(data), guides)
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
                await settled(api)
                bot_cpu = cpu_seconds(process.pid) - bot_cpu
                own_cpu = time.process_time() - own_cpu
                flat_out = walker.latencies
                calls = walker.answer_calls()
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
    answers = people * ANSWERS_PER_PERSON
    return {
        "rate": answers / elapsed,
        # CPU milliseconds per answer: the bot's, and the simulated people's + fake API's.
        "bot_cpu_ms": bot_cpu * 1000 / (people * ANSWERS_PER_PERSON),
        "load_cpu_ms": own_cpu * 1000 / (people * ANSWERS_PER_PERSON),
        "p50": percentile(flat_out, 0.5) * 1000,
        "p99": percentile(flat_out, 0.99) * 1000,
        "paced_p50": percentile(paced.latencies, 0.5) * 1000,
        "paced_p99": percentile(paced.latencies, 0.99) * 1000,
        # Bot API calls per answer, as requests the bot makes, and as methods it puts
        # in its webhook replies (which Telegram runs without saying how it went).
        "calls": calls.total() / answers,
        "replied": walker.replied.total() / answers,
        **{f"calls:{method}": n / answers for method, n in sorted(calls.items())},
        **{f"replied:{method}": n / answers for method, n in sorted(walker.replied.items())},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guide", choices=list(WALKS), default="weekly-checkin")
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paced-rate", type=int, default=200)
    parser.add_argument("--profile", help="record the bot with py-spy into this file")
    parser.add_argument("--only", choices=["kitchen-table", "baseline"])
    args = parser.parse_args()
    # The simulated people and the fake API share the machine with the bot under test:
    # spare them the collector's default pace, as the bot spares itself.
    settle_garbage_collector()
    global PROFILE, WALK, ANSWERS_PER_PERSON
    PROFILE = args.profile
    WALK = WALKS[args.guide]
    ANSWERS_PER_PERSON = len(WALK) - 1
    results: dict[str, list[dict[str, float]]] = {"kitchen-table": [], "baseline": []}
    for run in range(args.runs):
        for name in (
            [args.only] if args.only else results
        ):  # alternate, so drift on a noisy machine hits both
            results[name].append(
                await measure(name, args.guide, args.people, args.paced_rate, 10**8 * (run + 1))
            )
            print(f"run {run + 1} {name}: {results[name][-1]}", file=sys.stderr)
    if args.only:  # a probe while profiling, not a comparison: nothing is published
        return
    rows = []
    summary: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        keys = sorted({key for r in runs for key in r})
        summary[name] = {key: median([r.get(key, 0.0) for r in runs]) for key in keys}
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
