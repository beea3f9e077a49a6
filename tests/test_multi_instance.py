"""Three `kitchen-table run` processes on one PostgreSQL database, behind the fake Bot API.

A crowd answers the weekly check-in through Telegram webhooks, each update sent to
whichever instance a load balancer would pick; one instance is killed with SIGKILL in
the middle of the burst (its updates go to the others meanwhile, as a balancer's
health check would send them) and started again. Every acknowledged answer must be
stored once, every run end at the right step, every owed message arrive, none be sent
by two instances (beyond the one in flight at the kill), and the send rate the fake
sees must stay within the bot's limits overall, across all instances together.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.channels.telegram.channel import SECRET_HEADER, webhook_secrets
from bot.delivery.deliverer import CONCURRENCY
from bot.privacy import Identity
from storage.postgres import PostgresStorage
from tests.conftest import ROOT
from tests.fake_telegram import FakeTelegram
from tests.pg import fresh_database
from tests.test_process_crash import STEP_OF_ANSWER, WALK
from tests.test_telegram_process import SECRET, free_port, start_bot

pytestmark = pytest.mark.postgres

INSTANCES = 3
PEOPLE = 24
PER_SECOND = 20  # the bot's overall Telegram limit, set low so that it binds


class TimedCalls(list[Any]):
    """The fake's record of calls, with the moment each arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def append(self, call: Any) -> None:
        self.at.append(time.monotonic())
        super().append(call)


class Crowd:
    """People answering as fast as the bot replies, each update to a random live instance.

    Like Telegram, an update that was not acknowledged is sent again, with the same
    update_id, until one instance takes it."""

    def __init__(self, fake: FakeTelegram, urls: list[str], token: str) -> None:
        self.fake = fake
        self.urls = urls
        self.down: set[int] = set()
        self.headers = {SECRET_HEADER: token}
        self.acked: dict[int, int] = {}
        self.total = 0
        self.enough = asyncio.Event()
        self.kill_after = 0
        self.random = random.Random(7)

    async def walk(self, session: aiohttp.ClientSession, chat: int) -> None:
        while (index := self.acked.get(chat, -1) + 1) < len(WALK):
            if index:
                marker = WALK[index - 1][1]
                await self.fake.wait_until(
                    lambda m=marker: any(m in t for t in self.fake.texts(chat)), 60
                )
            update = self.fake.message_update(chat, WALK[index][0])
            while True:
                live = [n for n in range(len(self.urls)) if n not in self.down]
                target = self.urls[self.random.choice(live)]
                try:
                    async with session.post(target, json=update, headers=self.headers) as reply:
                        if reply.status == 200:
                            break
                except aiohttp.ClientError:
                    pass  # that instance died under us: a balancer tries another
                await asyncio.sleep(0)
            self.acked[chat] = index
            self.total += 1
            if self.kill_after and self.total >= self.kill_after:
                self.enough.set()


def most_within(moments: list[float], seconds: float) -> int:
    """The most sends the fake saw in any span of `seconds`."""
    most, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_three_instances_one_killed_lose_and_repeat_nothing(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    url = await fresh_database()
    env = {
        "KT_DATABASE_URL": url,
        "KT_TELEGRAM_MAX_PER_SECOND": str(PER_SECOND),
        "KT_DB_POOL_SIZE": "4",
    }
    # As the README says: the schema first, then the instances.
    upgrade = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "db", "upgrade", cwd=ROOT,
        env={**os.environ, "KT_SECRET_KEY": SECRET, "KT_DATA_DIR": str(tmp_path / "cli"), **env},
    )  # fmt: skip
    assert await upgrade.wait() == 0

    fake.calls = TimedCalls()
    path, token = webhook_secrets(SECRET.encode())
    ports = [free_port() for _ in range(INSTANCES)]
    urls = [f"http://127.0.0.1:{port}/telegram/{path}" for port in ports]

    async def start(n: int) -> asyncio.subprocess.Process:
        return await start_bot(
            fake, tmp_path / f"data{n}", KT_PORT=str(ports[n]),
            KT_PUBLIC_URL=f"http://127.0.0.1:{ports[n]}", **env,
        )  # fmt: skip

    bots = [await start(n) for n in range(INSTANCES)]
    chats = [900 + n for n in range(PEOPLE)]
    crowd = Crowd(fake, urls, token)
    crowd.kill_after = PEOPLE * 2
    try:
        await fake.wait_until(lambda: len(fake.calls_to("setWebhook")) == INSTANCES, 60)
        async with aiohttp.ClientSession() as session:
            walkers = [asyncio.create_task(crowd.walk(session, chat)) for chat in chats]
            await asyncio.wait_for(crowd.enough.wait(), 60)
            crowd.down.add(0)
            bots[0].send_signal(signal.SIGKILL)
            await bots[0].wait()
            bots[0] = await start(0)
            await fake.wait_until(lambda: len(fake.calls_to("setWebhook")) == INSTANCES + 1, 60)
            crowd.down.clear()
            await asyncio.wait_for(asyncio.gather(*walkers), 120)
            for chat in chats:
                await fake.wait_until(
                    lambda c=chat: any("Thank you" in t for t in fake.texts(c)), 60
                )
    finally:
        for n, bot in enumerate(bots):
            if bot.returncode is None:
                bot.terminate()
                await asyncio.wait_for(bot.wait(), 30)
            assert bot.stderr is not None
            said = (await bot.stderr.read()).decode()
            print(f"--- instance {n} (exit {bot.returncode}):\n{said[-4000:]}")
            assert bot.returncode == 0, said[-2000:]

    # Every answer stored once, every run at its end.
    storage = PostgresStorage(url, pool_size=2)
    await storage.open()
    try:
        identity = Identity(SECRET.encode())
        for chat in chats:
            person = await storage.participant(identity.pseudonym("telegram", str(chat)))
            assert person is not None
            assert await storage.count_runs(person.id) == 1, chat
            assert not await storage.open_runs(person.id), chat  # finished
            assert person.current_run is not None
            stored = {a.step for a in await storage.answers(person.current_run)}
            assert set(STEP_OF_ANSWER.values()) <= stored, (chat, stored)
    finally:
        await storage.close()

    # Each message once, but for what was in flight when the instance died.
    duplicates = 0
    for chat in chats:
        texts = fake.texts(chat)
        for _, marker in WALK:
            copies = [t for t in texts if marker in t]
            assert 1 <= len(copies) <= 2, (chat, marker, texts)
            duplicates += len(copies) - 1
    assert duplicates <= CONCURRENCY, duplicates
    # Questions asked in order, to each person.
    for chat in chats:
        firsts = [next(i for i, t in enumerate(fake.texts(chat)) if m in t) for _, m in WALK]
        assert firsts == sorted(firsts), (chat, fake.texts(chat))

    # The limit held for the three together.
    sends = [
        at for at, call in zip(fake.calls.at, fake.calls, strict=True)
        if call.method == "sendMessage" and not call.params.get("_failed")
    ]  # fmt: skip
    assert len(sends) >= PEOPLE * len(WALK)
    # The fake notes a send when this test's own event loop, busy walking the crowd,
    # gets to it: bunched by up to a few hundred ms. So the limit is checked over four
    # seconds, where that bunching is lost (measured: 80 at a limit of 20/s, while the
    # busiest one-second span saw 25-29); with each instance counting only its own sends,
    # the same four seconds saw 168. The bunching also moves a few sends across the
    # span's ends (81-85 seen in some runs on main, in 4 s whose reservations were at
    # most 80; 96 once, with both backends' suites running at once on two cores, as
    # `make test` runs them): a second's worth of slack, far below what per-instance
    # limits give.
    spans = [most_within(sends, w) for w in (1, 2, 4)]
    print("most sends within 1 s, 2 s, 4 s:", spans)
    assert spans[2] <= 5 * PER_SECOND, spans
    per_chat = Counter(int(c.params["chat_id"]) for c in fake.calls if c.method == "sendMessage")
    assert set(per_chat) == set(chats)
