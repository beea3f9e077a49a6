"""Kill `kitchen-table run` with SIGKILL in a burst of Telegram webhook answers, restart it.

The whole product this time, not one layer: the fake Bot API, the real process in
webhook mode, a crowd answering at once, by typing (the weekly check-in) or by tapping
buttons (the tap-heavy guide, whose taps are answered in the webhook's own reply).
What the platform saw acknowledged (HTTP 200) must be stored, each run must carry on
at the right step, every reply still owed must arrive after the restart (the next
question, and the edit that marks a tapped question answered), and no question may
be asked again except the one message that was in flight at the kill (at-least-once:
a send that reached Telegram just before the kill can't be known to have done so).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from bot.channels.telegram.channel import SECRET_HEADER, webhook_secrets
from bot.delivery.deliverer import CONCURRENCY
from bot.flows.run import RunState, RunStatus
from bot.messages import Outbound
from bot.privacy import Identity
from storage.rows import Commit, OutboxRow, ParticipantRow
from storage.sqlite import SQLiteStorage
from tests.conftest import ROOT
from tests.fake_telegram import FakeTelegram
from tests.test_telegram_process import SECRET, free_port, start_bot, stop_bot

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

PEOPLE = 16
TYPE, TAP = "type", "tap"
# What a person types and a few words of the bot's answer to it (the next question).
WALK = [
    ("/start weekly-checkin", "Is that all right"),
    ("yes", "How was your past week"),
    ("4", "how many hours"),
    ("38", "anything change at work in the past week"),
    ("no", "next week better"),
    ("Fewer double shifts", "Thank you"),
]
STEP_OF_ANSWER = {2: "week", 3: "hours", 4: "changed", 5: "better_week"}
# The tap-heavy guide (benchmarks/guides/tap-heavy.yaml): the button a person taps on
# the question before, or what they type, and a few words of the bot's answer.
TAP_WALK = [
    (TYPE, "/start tap-heavy", "Is that all right"),
    (TAP, "I agree", "Which shift"),
    (TAP, "Evening", "How safe"),
    (TAP, "4", "schedule a week ahead"),
    (TAP, "No", "What one thing"),
    (TYPE, "Fewer split shifts", "Thank you"),
]
TAP_STEP_OF_ANSWER = {2: "shift", 3: "safe", 4: "notice", 5: "change"}


class Crowd:
    """People answering as fast as the bot replies; remembers what was acknowledged.

    Like Telegram, an update the bot did not acknowledge is sent again, with the same
    update_id, once the bot is back. A tap is on the newest keyboard of the question
    being answered, as a person taps what is in front of them."""

    def __init__(
        self,
        fake: FakeTelegram,
        url: str,
        token: str,
        walk: list[tuple[str, str, str]] | None = None,
    ) -> None:
        self.fake = fake
        self.url = url
        self.headers = {SECRET_HEADER: token}
        self.steps = walk or [(TYPE, said, marker) for said, marker in WALK]
        self.acked: dict[int, int] = {}  # chat -> index in the walk of the last answer acked
        self.pending: dict[int, dict[str, object]] = {}  # chat -> update not yet acked
        # Each acknowledged tap: (chat, the message tapped on, the label tapped).
        self.tapped: list[tuple[int, int, str]] = []
        # The webhook replies to acknowledged taps, as JSON.
        self.replies: list[tuple[dict[str, object], object]] = []
        self.total = 0
        self.enough = asyncio.Event()
        self.kill_after = 0

    def update_for(self, chat: int, index: int) -> dict[str, object]:
        kind, said, _ = self.steps[index]
        if kind == TYPE:
            return self.fake.message_update(chat, said)
        asked = self.steps[index - 1][2]
        question = [p for p in self.fake.sent(chat) if asked in p["text"] and "reply_markup" in p]
        newest = question[-1]
        for row in newest["reply_markup"]["inline_keyboard"]:
            for button in row:
                if button["text"] == said:
                    return self.fake.tap_update(
                        chat, button["callback_data"], newest["_message_id"]
                    )
        raise AssertionError(f"no button {said!r} on {newest}")

    async def walk(self, session: aiohttp.ClientSession, chat: int) -> None:
        while (index := self.acked.get(chat, -1) + 1) < len(self.steps):
            update = self.pending.get(chat)
            if update is None:
                if index:
                    marker = self.steps[index - 1][2]
                    await self.fake.wait_until(
                        lambda m=marker: any(m in t for t in self.fake.texts(chat))
                    )
                update = self.pending[chat] = self.update_for(chat, index)
            try:
                async with session.post(self.url, json=update, headers=self.headers) as reply:
                    if reply.status != 200:
                        return
                    body = await reply.read()
            except aiohttp.ClientError:
                return  # the bot died under us: not acknowledged, to be sent again
            del self.pending[chat]
            self.acked[chat] = index
            query = update.get("callback_query")
            if isinstance(query, dict):
                self.tapped.append((chat, query["message"]["message_id"], self.steps[index][1]))
                self.replies.append((query, json.loads(body) if body else None))
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


def marked(fake: FakeTelegram, chat: int, message_id: int, label: str) -> bool:
    """Whether the question a person tapped on shows their answer, and nothing to tap."""
    edits = [e for e in fake.edits() if int(e["chat_id"]) == chat and e["message_id"] == message_id]
    answered = [[{"text": f"✓ {label}", "callback_data": "noop"}]]
    return bool(edits) and edits[-1]["reply_markup"]["inline_keyboard"] == answered


async def test_sigkill_mid_burst_of_taps_answered_in_webhook_replies(
    fake: FakeTelegram, tmp_path: Path
):
    """The same crash, in a crowd tapping through the tap-heavy guide: each tap is
    acknowledged by a webhook reply that also answers it (answerCallbackQuery), sent
    after the tap's turn is committed. Every acknowledged tap is stored, every question
    and every mark of a tapped question still owed arrives after the restart, and no
    tap costs a callback answer of its own."""
    guides = tmp_path / "guides"
    shutil.copytree(ROOT / "guides", guides)
    shutil.copy(ROOT / "benchmarks" / "guides" / "tap-heavy.yaml", guides)
    data = tmp_path / "data"
    port = free_port()
    path, token = webhook_secrets(SECRET.encode())
    url = f"http://127.0.0.1:{port}/telegram/{path}"
    env = {
        "KT_PORT": str(port),
        "KT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "KT_GUIDES_DIR": str(guides),
    }
    chats = [800 + n for n in range(PEOPLE)]
    crowd = Crowd(fake, url, token, TAP_WALK)
    # Past everyone's start: most of what is acknowledged by the kill is taps.
    crowd.kill_after = random.Random(19).randint(PEOPLE * 2, PEOPLE * 4)

    bot = await start_bot(fake, data, **env)
    await fake.wait_until(lambda: fake.calls_to("setWebhook"))
    async with aiohttp.ClientSession() as session:
        walkers = [asyncio.create_task(crowd.walk(session, chat)) for chat in chats]
        await asyncio.wait_for(crowd.enough.wait(), 60)
        bot.send_signal(signal.SIGKILL)
        await bot.wait()
        sent_before_kill = {chat: list(fake.texts(chat)) for chat in chats}
        tapped_before_kill = list(crowd.tapped)
        for task in walkers:
            task.cancel()
        await asyncio.gather(*walkers, return_exceptions=True)
    acked = dict(crowd.acked)
    assert sum(acked.values()) >= crowd.kill_after - PEOPLE  # the burst really happened
    assert len(tapped_before_kill) >= PEOPLE, "the burst was not of taps"
    # Each acknowledged tap was answered in the reply that acknowledged it.
    for query, reply in crowd.replies:
        assert reply == {"method": "answerCallbackQuery", "callback_query_id": query["id"]}
    owed = [c for c, last in acked.items() if TAP_WALK[last][2] not in "".join(sent_before_kill[c])]
    unmarked = [tap for tap in tapped_before_kill if not marked(fake, *tap)]
    assert owed or unmarked, "the kill came when nothing was owed: the test would prove nothing"

    # Everything acknowledged is in the database (read with the bot stopped).
    storage = SQLiteStorage(data / "kitchen-table.db")
    await storage.open()
    try:
        identity = Identity(SECRET.encode())
        for chat, last in acked.items():
            person = await storage.participant(identity.pseudonym("telegram", str(chat)))
            assert person is not None and person.current_run is not None
            run = await storage.run(person.current_run)
            assert run is not None
            if last >= 1:  # the consent tap
                assert RunState.model_validate_json(run.state).status is not RunStatus.CONSENT
            stored = {a.step for a in await storage.answers(run.id)}
            for index in range(1, last + 1):
                if index in TAP_STEP_OF_ANSWER:
                    assert TAP_STEP_OF_ANSWER[index] in stored, (chat, index, stored)
    finally:
        await storage.close()

    # Restarted, the bot sends what it owed; everyone taps on to the end.
    bot = await start_bot(fake, data, **env)
    try:
        await fake.wait_until(lambda: len(fake.calls_to("setWebhook")) == 2)
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(
                asyncio.gather(*(crowd.walk(session, chat) for chat in chats)), 60
            )
            for chat in chats:
                await fake.wait_until(lambda c=chat: any("Thank you" in t for t in fake.texts(c)))
        # Every question tapped on, before the kill or after, shows the answer given.
        await fake.wait_until(lambda: all(marked(fake, *tap) for tap in crowd.tapped))
    finally:
        await stop_bot(bot)

    assert fake.calls_to("answerCallbackQuery") == []  # every tap answered in a reply
    for chat in chats:
        texts = fake.texts(chat)
        for _, _, marker in TAP_WALK:
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
