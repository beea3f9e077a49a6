"""Kill `kitchen-table run` with SIGKILL in a burst of Telegram webhook answers, restart it.

The whole product this time, not one layer: the fake Bot API, the real process in
webhook mode, a crowd answering the weekly check-in at once. What the platform saw
acknowledged (HTTP 200) must be stored, each run must carry on at the right step,
every reply still owed must arrive after the restart, and no question may be asked
again except the one message that was in flight at the kill (at-least-once: a send
that reached Telegram just before the kill can't be known to have done so).
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bot.channels.telegram.channel import SECRET_HEADER, webhook_secrets
from bot.delivery.deliverer import CONCURRENCY
from bot.messages import Outbound
from bot.privacy import Identity
from storage.rows import Commit, OutboxRow, ParticipantRow
from storage.sqlite import SQLiteStorage
from tests.fake_telegram import FakeTelegram
from tests.test_telegram_process import SECRET, free_port, start_bot, stop_bot

PEOPLE = 16
# What a person types and a few words of the bot's answer to it (the next question).
WALK = [
    ("/start weekly-checkin", "Is that all right"),
    ("yes", "How was your week"),
    ("4", "how many hours"),
    ("38", "anything change"),
    ("no", "next week better"),
    ("Fewer double shifts", "Thank you"),
]
STEP_OF_ANSWER = {2: "week", 3: "hours", 4: "changed", 5: "better_week"}


class Crowd:
    """People answering as fast as the bot replies; remembers what was acknowledged.

    Like Telegram, an update the bot did not acknowledge is sent again, with the same
    update_id, once the bot is back."""

    def __init__(self, fake: FakeTelegram, url: str, token: str) -> None:
        self.fake = fake
        self.url = url
        self.headers = {SECRET_HEADER: token}
        self.acked: dict[int, int] = {}  # chat -> index in WALK of the last answer acked
        self.pending: dict[int, dict[str, object]] = {}  # chat -> update not yet acked
        self.total = 0
        self.enough = asyncio.Event()
        self.kill_after = 0

    async def walk(self, session: aiohttp.ClientSession, chat: int) -> None:
        while (index := self.acked.get(chat, -1) + 1) < len(WALK):
            update = self.pending.get(chat)
            if update is None:
                if index:
                    marker = WALK[index - 1][1]
                    await self.fake.wait_until(
                        lambda m=marker: any(m in t for t in self.fake.texts(chat))
                    )
                update = self.pending[chat] = self.fake.message_update(chat, WALK[index][0])
            try:
                async with session.post(self.url, json=update, headers=self.headers) as reply:
                    if reply.status != 200:
                        return
            except aiohttp.ClientError:
                return  # the bot died under us: not acknowledged, to be sent again
            del self.pending[chat]
            self.acked[chat] = index
            self.total += 1
            if self.kill_after and self.total >= self.kill_after:
                self.enough.set()


async def test_sigkill_mid_burst_loses_nothing_and_resumes(fake: FakeTelegram, tmp_path: Path):
    data = tmp_path / "data"
    port = free_port()
    path, token = webhook_secrets(SECRET.encode())
    url = f"http://127.0.0.1:{port}/telegram/{path}"
    env = {"KT_PORT": str(port), "KT_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    chats = [700 + n for n in range(PEOPLE)]
    crowd = Crowd(fake, url, token)
    crowd.kill_after = random.Random(4).randint(PEOPLE * 2, PEOPLE * 4)

    bot = await start_bot(fake, data, **env)
    await fake.wait_until(lambda: fake.calls_to("setWebhook"))
    async with aiohttp.ClientSession() as session:
        walkers = [asyncio.create_task(crowd.walk(session, chat)) for chat in chats]
        await asyncio.wait_for(crowd.enough.wait(), 60)
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
        sent_before_kill = {chat: list(fake.texts(chat)) for chat in chats}
        # Those still waiting for a reply that will now come only after the restart.
        for task in walkers:
            task.cancel()
        await asyncio.gather(*walkers, return_exceptions=True)
    acked = dict(crowd.acked)
    assert sum(acked.values()) >= crowd.kill_after - PEOPLE  # the burst really happened
    owed = [c for c, last in acked.items() if WALK[last][1] not in "".join(sent_before_kill[c])]
    assert owed, "the kill came when no reply was owed: the test would prove nothing"

    # Everything acknowledged is in the database (read with the bot stopped).
    storage = SQLiteStorage(data / "kitchen-table.db")
    await storage.open()
    try:
        identity = Identity(SECRET.encode())
        for chat, last in acked.items():
            person = await storage.participant(identity.pseudonym("telegram", str(chat)))
            assert person is not None and person.current_run is not None
            stored = {a.step for a in await storage.answers(person.current_run)}
            for index in range(1, last + 1):
                if index in STEP_OF_ANSWER:
                    assert STEP_OF_ANSWER[index] in stored, (chat, index, stored)
    finally:
        await storage.close()

    # Restarted, the bot sends what it owed; everyone carries on to the end.
    bot = await start_bot(fake, data, **env)
    try:
        await fake.wait_until(lambda: len(fake.calls_to("setWebhook")) == 2)
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(
                asyncio.gather(*(crowd.walk(session, chat) for chat in chats)), 60
            )
            for chat in chats:
                await fake.wait_until(lambda c=chat: any("Thank you" in t for t in fake.texts(c)))
    finally:
        await stop_bot(bot)

    for chat in chats:
        texts = fake.texts(chat)
        for _, marker in WALK:
            copies = [t for t in texts if marker in t]
            assert copies, (chat, marker, texts)
            if len(copies) > 1:
                # Only the message in flight at the kill may come twice, and only once more.
                before = [t for t in sent_before_kill[chat] if marker in t]
                assert len(copies) == 2 and before == copies[:1], (chat, marker, texts)
                assert sent_before_kill[chat][-1:] == before, (chat, marker, texts)


OWED = 400  # messages owed, one to each of this many people: one delivery round
KILLED_AFTER = 150  # sends the fake Bot API has seen when the bot is killed


async def test_sigkill_mid_delivery_repeats_only_what_was_in_flight(
    fake: FakeTelegram, tmp_path: Path
):
    """A crash in the middle of a delivery round: a message the platform took before the
    kill may come again only if its call was still in flight (or just answered and not
    yet written down), so duplicates are bounded by the delivery's concurrency, not by
    how many messages were sent before the kill. Nothing owed is lost."""
    data = tmp_path / "data"
    env = {"KT_PORT": str(free_port()), "KT_TELEGRAM_MAX_PER_SECOND": "200"}
    bot = await start_bot(fake, data, **env)  # creates the database
    await fake.wait_until(lambda: fake.calls_to("getUpdates"))
    await stop_bot(bot)

    identity = Identity(SECRET.encode())
    now = datetime.now(UTC)
    chats = [5000 + n for n in range(OWED)]
    storage = SQLiteStorage(data / "kitchen-table.db")
    await storage.open()
    try:
        commits = []
        for n, chat in enumerate(chats):
            person = identity.pseudonym("telegram", str(chat))
            address = identity.seal(str(chat))
            text = f"Owed message {n:04d}."
            payload = Outbound(text=text).model_dump_json()
            commits.append(
                Commit(
                    participant=ParticipantRow(person, "telegram", address),
                    outbox=[OutboxRow("telegram", person, address, payload, now)],
                )
            )
        assert all(await storage.commit_many(commits))
    finally:
        await storage.close()

    bot = await start_bot(fake, data, **env)
    await fake.wait_until(lambda: len(fake.sent()) >= KILLED_AFTER, 60)
    bot.send_signal(signal.SIGKILL)
    await bot.wait()
    before_kill = len(fake.sent())

    bot = await start_bot(fake, data, **env)
    try:
        await fake.wait_until(
            lambda: len({t for t in fake.texts() if t.startswith("Owed message")}) == OWED, 60
        )
    finally:
        await stop_bot(bot)

    copies = Counter(t for t in fake.texts() if t.startswith("Owed message"))
    assert len(copies) == OWED  # nothing lost
    duplicates = sum(count - 1 for count in copies.values())
    print(f"sent before the kill: {before_kill}, duplicates: {duplicates}")
    assert all(count <= 2 for count in copies.values()), copies.most_common(3)
    # In flight at the kill: at most CONCURRENCY calls, each holding its place until the
    # platform's acceptance is written down.
    assert duplicates <= CONCURRENCY, (duplicates, before_kill)
