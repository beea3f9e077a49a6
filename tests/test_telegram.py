"""Telegram, end to end over real HTTP: python-telegram-bot talks to a fake Bot API
server on 127.0.0.1. What a worker would see on their phone, and what is kept."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.build import build_house, command_menu
from bot.app.web import make_web_app, start_web
from bot.channels.http import RequestRefused
from bot.channels.telegram.channel import (
    SECRET_HEADER,
    HeldBack,
    TelegramChannel,
    make_bot,
    parse_update,
    webhook_secrets,
)
from bot.delivery.deliverer import Deliverer
from bot.delivery.ratelimit import RateLimits
from bot.flows.run import RunState
from bot.library import GuideLibrary
from bot.privacy import Identity
from storage.sqlite import SQLiteStorage
from tests.conftest import GUIDES, FakeClock, load
from tests.fake_telegram import TOKEN, FakeTelegram

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

SECRET = b"telegram-test-secret-123"
CHAT = 4242

GUIDE = """
guide: phone
version: 1
title: Work on the phone
consent: We keep answers without names.
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
  - id: helps
    choose_many: What would help?
    options: [Training, A union, Better pay]
  - id: worry
    scale: How worried are you?
    labels: {1: Not at all, 5: Very}
  - id: story
    ask: Tell us one thing.
  - id: bye
    say: "You said: {{ story }}"
"""


class Phone:
    """One bot process (storage, dispatcher, delivery, Telegram channel) and a fake Telegram."""

    def __init__(
        self, fake: FakeTelegram, db: Path, library: GuideLibrary, clock: FakeClock
    ) -> None:
        self.fake = fake
        self.db = db
        self.library = library
        self.clock = clock
        self.offset: int | None = None

    async def open(self) -> None:
        self.storage = SQLiteStorage(self.db)
        await self.storage.open()
        from bot.locales import load_phrasebook

        identity = Identity(SECRET)
        self.identity = identity
        self.deliverer = Deliverer(self.storage, identity, {}, self.clock)
        self.house = build_house(
            storage=self.storage,
            library=self.library,
            identity=identity,
            phrases=load_phrasebook(),
            clock=self.clock,
        )
        self.dispatcher = self.house.dispatcher
        generous = RateLimits(
            overall=(1000, 1000.0), per_chat=(1000, 1000.0), per_group=(1000, 1000.0)
        )
        self.channel = TelegramChannel(
            make_bot(TOKEN, self.fake.url, read_timeout=0.5),
            self.dispatcher.handle,
            limits=generous,
            poll_timeout=0,
            menu=command_menu(self.house.router, self.dispatcher.phrases),
        )
        await self.channel.start()
        self.deliverer.channels["telegram"] = self.channel

    async def close(self) -> None:
        await self.channel.stop()
        await self.storage.close()

    async def deliver(self) -> None:
        await self.deliverer.drain("telegram")

    async def receive(self, update: dict[str, Any]) -> list[str]:
        """Let Telegram deliver an update by long polling; return the texts sent back."""
        before = len(self.fake.sent())
        self.fake.queue(update)
        self.offset = await self.channel.poll_once(self.offset)
        await self.channel.settle()
        await self.deliver()
        return [p["text"] for p in self.fake.sent()[before:]]

    async def type(self, text: str, chat: int = CHAT, **extra: Any) -> list[str]:
        return await self.receive(self.fake.message_update(chat, text, **extra))

    def last_keyboard(
        self, chat: int = CHAT, back: int = 0
    ) -> tuple[int, list[list[dict[str, Any]]]]:
        with_keyboards = [p for p in self.fake.sent(chat) if "reply_markup" in p]
        for params in reversed(with_keyboards[: len(with_keyboards) - back]):
            if "reply_markup" in params:
                return params["_message_id"], params["reply_markup"]["inline_keyboard"]
        raise AssertionError("no keyboard was sent")

    async def tap(self, label: str, chat: int = CHAT, back: int = 0) -> list[str]:
        """Tap a button on the newest keyboard, or on one `back` keyboards earlier."""
        message_id, rows = self.last_keyboard(chat, back)
        for row in rows:
            for button in row:
                if button["text"] == label:
                    data = button["callback_data"]
                    update = self.fake.tap_update(chat, data, message_id)
                    return await self.receive(update)
        raise AssertionError(f"no button {label!r} in {rows}")

    async def state(self, chat: int = CHAT) -> RunState:
        person = await self.storage.participant(self.identity.pseudonym("telegram", str(chat)))
        assert person is not None and person.current_run is not None
        run = await self.storage.run(person.current_run)
        assert run is not None
        return RunState.model_validate_json(run.state)


@pytest.fixture
async def phone(fake: FakeTelegram, tmp_path: Path) -> AsyncIterator[Phone]:
    library = GuideLibrary()
    library.add(load(GUIDE, "phone.yaml"))
    for loaded in GuideLibrary.from_paths([GUIDES]).all():
        library.add(loaded)
    device = Phone(fake, tmp_path / "kt.db", library, FakeClock())
    await device.open()
    yield device
    await device.close()


def labels(rows: list[list[dict[str, Any]]]) -> list[str]:
    return [button["text"] for row in rows for button in row]


async def test_a_guide_with_buttons_and_typed_answers(phone: Phone, fake: FakeTelegram):
    hello = await phone.type("/start")
    assert "Which conversation" in hello[0]
    assert "Work on the phone" in labels(phone.last_keyboard()[1])
    await phone.tap("Work on the phone")
    assert labels(phone.last_keyboard()[1]) == ["I agree", "No thanks"]
    first = await phone.tap("I agree")
    assert first == ["<i>1 of 4</i>\nWhat do you do?"]
    assert fake.edits()[-1]["reply_markup"]["inline_keyboard"][0][0]["text"] == "✓ I agree"
    await phone.tap("Health care")
    assert fake.edits()[-1]["reply_markup"]["inline_keyboard"] == [
        [{"text": "✓ Health care", "callback_data": "noop"}]
    ]
    # choose_many: toggles tick in place, then Done.
    assert await phone.tap("Training") == []
    _, rows = fake.edits()[-1]["message_id"], fake.edits()[-1]["reply_markup"]["inline_keyboard"]
    assert labels(rows) == ["✓ Training", "A union", "Better pay", "Done"]
    await phone.tap("Better pay")
    scale = await phone.tap("Done")
    assert "How worried are you?" in scale[0]
    assert "1 = Not at all · 5 = Very" in scale[0]
    assert labels(phone.last_keyboard()[1]) == ["1", "2", "3", "4", "5"]
    await phone.tap("4")
    done = await phone.type("Less <b>hours</b> & a <a href=x>link</a>")
    assert done == [
        "You said: Less &lt;b&gt;hours&lt;/b&gt; &amp; a &lt;a href=x&gt;link&lt;/a&gt;"
    ]
    state = await phone.state()
    assert state.status == "finished"
    assert state.answers == {
        "sector": "health-care",
        "helps": ["training", "better-pay"],
        "worry": 4,
        "story": "Less <b>hours</b> & a <a href=x>link</a>",
    }
    # Every tap was answered, so no button kept spinning.
    taps = sum(1 for u in fake.updates if "callback_query" in u)
    assert len(fake.calls_to("answerCallbackQuery")) == taps
    assert all(p["parse_mode"] == "HTML" for p in fake.sent())


async def test_deep_link_starts_a_guide_in_the_users_language(phone: Phone):
    replies = await phone.type("/start changing-work", language="es")
    assert "¿Te parece bien?" in replies[-1]
    assert labels(phone.last_keyboard()[1]) == ["Estoy de acuerdo", "No, gracias"]


async def test_the_same_update_twice_is_processed_once(phone: Phone, fake: FakeTelegram):
    await phone.type("/start phone")
    await phone.tap("I agree")
    update = fake.message_update(CHAT, "2")
    first = await phone.receive(update)
    again = await phone.receive(dict(update))
    assert len(first) == 1 and again == []
    assert (await phone.state()).answers == {"sector": "health-care"}


async def test_a_stale_keyboard_never_changes_an_earlier_answer(phone: Phone, fake: FakeTelegram):
    await phone.type("/start phone")
    await phone.tap("I agree")
    await phone.tap("Retail")
    stale = await phone.tap("Other", back=1)
    assert "already answered" in stale[0]
    assert (await phone.state()).answers == {"sector": "retail"}


async def test_429_waits_retry_after_then_sends_the_same_message(phone: Phone, fake: FakeTelegram):
    await phone.type("/start phone")
    fake.fail_next("sendMessage", 429, retry_after=3)
    sent = await phone.tap("I agree")
    assert sent == []
    phone.clock.advance(seconds=2)
    await phone.deliver()
    assert not any("What do you do?" in t for t in fake.texts())
    phone.clock.advance(seconds=1)
    await phone.deliver()
    assert sum("What do you do?" in t for t in fake.texts()) == 1


async def test_a_server_error_retries_with_backoff(phone: Phone, fake: FakeTelegram):
    fake.fail_next("sendMessage", 500)
    fake.fail_next("sendMessage", 502)
    assert await phone.type("/start") == []
    phone.clock.advance(seconds=2)
    await phone.deliver()
    assert fake.texts() == []
    phone.clock.advance(seconds=4)
    await phone.deliver()
    assert len(fake.texts()) == 1


async def test_a_message_telegram_refuses_for_good_is_dropped_and_the_next_one_goes(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start phone")
    fake.fail_next("sendMessage", 400)  # e.g. "Bad Request: message text is empty"
    assert await phone.tap("I agree") == []
    phone.clock.advance(hours=1)
    await phone.deliver()
    assert len(fake.calls_to("sendMessage")) == 3  # intro, consent, the refused one: no retry
    assert await phone.storage.claim_due("telegram", phone.clock(), 10) == []
    assert any("What do you do?" in t for t in await phone.type("/help"))  # asked again


async def test_a_blocked_user_is_marked_unreachable_and_never_retried(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start phone")
    await phone.tap("I agree")
    fake.blocked.add(CHAT)
    await phone.type("1")
    person = await phone.storage.participant(phone.identity.pseudonym("telegram", str(CHAT)))
    assert person is not None and person.unreachable
    attempts = len(fake.calls_to("sendMessage"))
    phone.clock.advance(hours=1)
    await phone.deliver()
    assert len(fake.calls_to("sendMessage")) == attempts
    assert await phone.storage.claim_due("telegram", phone.clock(), 10) == []


async def test_polling_leaves_an_update_with_telegram_while_storage_fails(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start phone")
    writer = phone.storage._w
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(writer._executor, writer._connection.execute, "PRAGMA query_only=ON")
    update = fake.queue(fake.message_update(CHAT, "yes"))
    with pytest.raises(HeldBack) as held:
        await phone.channel.poll_once(phone.offset)
    assert held.value.offset == update["update_id"]  # asked for again next time
    assert (await phone.state()).status == "consent"
    await loop.run_in_executor(
        writer._executor, writer._connection.execute, "PRAGMA query_only=OFF"
    )
    phone.offset = await phone.channel.poll_once(held.value.offset)
    await phone.deliver()
    assert (await phone.state()).status == "active"
    assert sum("What do you do?" in t for t in fake.texts()) == 1


async def test_a_group_that_moved_to_a_supergroup_is_not_retried_forever(
    phone: Phone, fake: FakeTelegram
):
    fake.fail_next("sendMessage", 400, migrate_to_chat_id=-1001234)
    await phone.type("/help", chat=-100, chat_type="group")
    phone.clock.advance(hours=1)
    await phone.deliver()
    assert len(fake.calls_to("sendMessage")) == 1
    assert await phone.storage.claim_due("telegram", phone.clock(), 10) == []


async def test_a_restart_resumes_at_the_same_step(phone: Phone, fake: FakeTelegram):
    await phone.type("/start phone")
    await phone.tap("I agree")
    await phone.tap("Other")
    await phone.close()
    await phone.open()
    back = await phone.type("/start phone")
    assert back[0].startswith("Welcome back")
    assert "What would help?" in back[1]
    await phone.tap("A union")
    assert "How worried" in (await phone.tap("Done"))[0]


async def test_owed_messages_are_sent_after_a_restart(phone: Phone, fake: FakeTelegram):
    await phone.type("/start phone")
    fake.fail_next("sendMessage", 500)
    await phone.tap("I agree")
    await phone.close()
    await phone.open()
    phone.clock.advance(minutes=1)
    await phone.deliver()
    assert sum("What do you do?" in t for t in fake.texts()) == 1


async def test_in_a_group_the_bot_only_points_to_a_private_chat(phone: Phone, fake: FakeTelegram):
    assert await phone.type("what a nice day", chat=-100, chat_type="group") == []
    replies = await phone.type("/start@KitchenTableBot phone", chat=-100, chat_type="supergroup")
    assert "only collect answers in a private chat" in replies[0]
    _, rows = phone.last_keyboard(-100)
    assert rows[0][0]["url"] == "https://t.me/KitchenTableBot"
    assert await phone.storage.count_runs(phone.identity.pseudonym("telegram", "777")) == 0


async def test_photos_voice_stickers_and_edits_get_a_friendly_answer(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start phone")
    photo = await phone.receive(
        fake.message_update(
            CHAT, None, photo=[{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
        )
    )
    assert "only read text" in photo[0]
    voice = await phone.receive(
        fake.message_update(
            CHAT, None, voice={"file_id": "v", "file_unique_id": "v", "duration": 2}
        )
    )
    assert "only read text" in voice[0]
    edited = fake.message_update(CHAT, "changed")
    edited["edited_message"] = edited.pop("message")
    assert "first version" in (await phone.receive(edited))[0]


async def test_long_texts_are_split_at_paragraphs(phone: Phone, fake: FakeTelegram):
    from bot.messages import Outbound

    paragraph = "Work is changing & we talk about it. " * 50
    text = "\n\n".join([paragraph.strip()] * 4)
    await phone.channel.send(str(CHAT), Outbound(text=text))
    pieces = fake.texts(CHAT)
    assert len(pieces) >= 2
    assert all(len(p) <= 4096 for p in pieces)
    assert all(p.startswith("Work is changing") for p in pieces)
    assert "".join(pieces).count("&amp;") == text.count("&")


async def queue_long(phone: Phone, paragraphs: int) -> list[str]:
    """A long message with a button owed to CHAT (a report, say), sent in pieces:
    each paragraph fills most of one."""
    from bot.messages import Outbound, OutButton
    from storage.rows import Commit, OutboxRow

    texts = [f"Part {n}: " + "we talk about work. " * 190 for n in range(1, paragraphs + 1)]
    message = Outbound(text="\n\n".join(texts), buttons=[OutButton(label="OK", value="ok")])
    row = OutboxRow("telegram", "someone", phone.identity.seal(str(CHAT)),
                    message.model_dump_json(exclude_defaults=True), phone.clock())  # fmt: skip
    await phone.storage.commit(Commit(outbox=[row]))
    return texts


@pytest.mark.parametrize("fault", [500, 429])
async def test_a_long_message_that_fails_part_way_goes_on_from_where_it_stopped(
    phone: Phone, fake: FakeTelegram, fault: int
):
    """A failure or a wait on the second piece of three sends the second and third
    later, never the first again; the button comes with the last."""
    parts = await queue_long(phone, 3)
    fake.fail_next("sendMessage", fault, after=1, retry_after=5)
    await phone.deliver()
    assert [p.startswith("Part 1") for p in fake.texts(CHAT)] == [True]
    phone.clock.advance(seconds=5)
    await phone.deliver()
    pieces = fake.texts(CHAT)
    assert [p.split(":")[0] for p in pieces] == ["Part 1", "Part 2", "Part 3"]
    assert [p.strip() for p in pieces] == [t.strip() for t in parts]
    assert ["reply_markup" in p for p in fake.sent(CHAT)] == [False, False, True]
    assert await phone.storage.claim_due("telegram", phone.clock() + timedelta(days=1), 9) == []


async def test_each_piece_of_a_long_message_waits_for_its_chats_limit(
    phone: Phone, fake: FakeTelegram
):
    """Each piece is a message to Telegram's limits: at one a second to a chat, four
    pieces take three seconds more, each sent once."""
    phone.channel.limits = RateLimits(
        overall=(1000, 1000.0), per_chat=(1, 1.0), per_group=(1000, 1000.0)
    )
    phone.channel.clock = lambda: phone.clock().timestamp()  # the limits on the test's time
    await queue_long(phone, 4)
    seen = []
    for _ in range(4):
        await phone.deliver()
        seen.append(len(fake.texts(CHAT)))
        phone.clock.advance(seconds=1)
    assert seen == [1, 2, 3, 4]
    assert [p.split(":")[0] for p in fake.texts(CHAT)] == ["Part 1", "Part 2", "Part 3", "Part 4"]


async def test_language_command_offers_buttons(phone: Phone):
    await phone.type("/start changing-work")
    replies = await phone.type("/language")
    assert "Which language" in replies[0]
    assert labels(phone.last_keyboard()[1]) == ["English", "Español"]
    switched = await phone.tap("Español")
    assert switched[0] == "Muy bien, seguimos en español."


async def webhook_post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=update, headers=headers) as response,
    ):
        return response.status


async def test_webhook_mode(phone: Phone, fake: FakeTelegram):
    path, token = webhook_secrets(SECRET)
    app = make_web_app()
    app.router.add_post(f"/telegram/{path}", phone.channel.webhook_handler(token))
    runner = await start_web(app, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/telegram/{path}"
    try:
        await phone.channel.set_webhook(url, token)
        assert fake.calls_to("setWebhook")[0]["secret_token"] == token
        start = fake.message_update(CHAT, "/start weekly-checkin")
        assert await webhook_post(url, start, None) == 403
        assert await webhook_post(url, start, "wrong") == 403
        assert (
            await phone.storage.participant(phone.identity.pseudonym("telegram", str(CHAT))) is None
        )
        for malformed in ([start], {"message": start["message"]}, {"update_id": "7"}):
            assert await webhook_post(url, malformed, token) == 400  # type: ignore[arg-type]
        assert await webhook_post(url, start, token) == 200
        assert await webhook_post(url, start, token) == 200  # Telegram retrying: processed once
        await phone.deliver()
        assert sum("Is that all right with you?" in t for t in fake.texts()) == 1
        _, rows = phone.last_keyboard()
        agree = fake.tap_update(CHAT, rows[0][0]["callback_data"], phone.last_keyboard()[0])
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=agree, headers={SECRET_HEADER: token}) as tapped,
        ):
            # The tap is answered in the webhook's own reply, after its commit: no call.
            assert tapped.status == 200
            assert await tapped.json() == {
                "method": "answerCallbackQuery",
                "callback_query_id": agree["callback_query"]["id"],
            }
        assert fake.calls_to("answerCallbackQuery") == []
        assert (await phone.state()).status == "active"  # committed before the reply
        for answer in ["4", "40", "yes", "New rota", "A full lunch break"]:
            assert await webhook_post(url, fake.message_update(CHAT, answer), token) == 200
        await phone.deliver()
        assert (await phone.state()).status == "finished"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as health,
        ):
            assert health.status == 200
    finally:
        await runner.cleanup()


async def test_a_shipped_guide_walked_through_in_telegram(phone: Phone, fake: FakeTelegram):
    await phone.type("/start weekly-checkin")
    await phone.tap(labels(phone.last_keyboard()[1])[0])
    steps = 0
    while (await phone.state()).status == "active" and steps < 20:
        steps += 1
        state = await phone.state()
        try:
            _, rows = phone.last_keyboard()
        except AssertionError:
            rows = []
        last = fake.sent(CHAT)[-1]
        if "reply_markup" in last and labels(rows):
            choice = next(b for b in labels(rows) if b != "Done")
            await phone.tap(choice)
            if (await phone.state()).step == state.step and "Done" in labels(rows):
                await phone.tap("Done")
        else:
            await phone.type("42" if "hour" in last["text"].lower() else "It was a steady week.")
    final = await phone.state()
    assert final.status == "finished"
    assert final.answers
    assert json.dumps(final.answers)


async def test_platform_faults_at_random_lose_nothing_and_repeat_nothing(
    phone: Phone, fake: FakeTelegram
):
    """Sends fail a third of the time (500, 429, garbage instead of JSON, a dropped
    connection, no answer at all): everyone still finishes, and each question reaches
    them once."""
    import random

    people = [5000 + n for n in range(8)]
    answers = ["1", "1, 2", "3", "Fine, thanks"]
    for chat in people:
        await phone.type("/start phone", chat=chat)
    fake.chaos = random.Random(11)

    async def settle() -> None:
        for _ in range(60):
            if not await phone.storage.claim_due("telegram", phone.clock() + timedelta(hours=1), 1):
                return
            phone.clock.advance(seconds=30)
            await phone.deliver()
        raise AssertionError("messages still owed after many retries")

    await settle()
    fake.chaos = random.Random(12)
    for chat in people:
        await phone.type("yes", chat=chat)
    await settle()
    for answer in answers:
        for chat in people:
            await phone.type(answer, chat=chat)
        await settle()
    for chat in people:
        state = await phone.state(chat)
        assert state.status == "finished"
        assert state.answers["story"] == "Fine, thanks"
        texts = fake.texts(chat)
        for question in [
            "What do you do?",
            "What would help?",
            "How worried are you?",
            "Tell us one thing.",
        ]:
            assert sum(question in t for t in texts) == 1, (chat, question, texts)
    faults = {c.params.get("_fault") for c in fake.calls} - {None}
    assert faults == {"500", "429", "garbage", "drop", "hang"}


async def test_a_gathering_in_a_group_from_launch_to_a_shared_summary(
    phone: Phone, fake: FakeTelegram
):
    group, host = -100500, 777  # the fake sends every group message from user 777
    phone.house.roles.admins.add(phone.identity.pseudonym("telegram", str(host)))
    await phone.type("/launch weekly-checkin Supper at St. Anne's", chat=group, chat_type="group")
    invite = fake.sent(group)[-1]
    assert "Supper at St. Anne" in invite["text"]
    join = invite["reply_markup"]["inline_keyboard"][0][0]
    assert join["url"].startswith("https://t.me/KitchenTableBot?start=join-")
    code = join["url"].rsplit("-", 1)[1]
    assert any(f"Join code: {code}" in t for t in fake.texts(host))  # told privately
    for n in range(7):
        chat = 9000 + n
        await phone.type(f"/start join-{code}", chat=chat)
        for answer in ["yes", "4", str(36 + n), "no", f"More rest <i>{n}</i> & fewer doubles"]:
            await phone.type(answer, chat=chat)
        assert "Thank you" in fake.texts(chat)[-1]
    # The host checks on the room privately, and refreshes the figures in place.
    await phone.type("/status", chat=group, chat_type="group")
    status = fake.sent(host)[-1]
    assert "finished 7" in status["text"] and status["parse_mode"] == "HTML"
    await phone.tap("Refresh", chat=host)
    edit = fake.calls_to("editMessageText")[-1]
    assert edit["message_id"] == status["_message_id"] and "finished 7" in edit["text"]
    # A QR code of the deep link, for the room to scan.
    await phone.type("/qr", chat=group, chat_type="group")
    photo = fake.calls_to("sendPhoto")[-1]
    assert int(photo["chat_id"]) == group and photo["photo"].startswith(b"\x89PNG")
    assert code in photo["caption"]
    await phone.type("/close --share", chat=group, chat_type="group")
    shared, private = fake.sent(group)[-2], fake.sent(host)[-1]
    for summary in (shared, private):
        assert summary["parse_mode"] == "HTML"
        assert "7 took part and 7 finished" in summary["text"]
        assert "Middle value: 39" not in summary["text"]  # hours 36..42: no one's shows
        assert "split their answers into ranges" in summary["text"]
        assert "More rest &lt;i&gt;" in summary["text"] and "&amp; fewer" in summary["text"]
        assert "<i>0</i>" not in summary["text"]
    assert "is closed" in fake.texts(group)[-1]
    late = await phone.type("/start join-" + code, chat=9100)
    assert "has closed" in late[-1]


async def test_a_command_in_a_room_without_a_gathering_leaves_other_rooms_alone(
    phone: Phone, fake: FakeTelegram
):
    first, second, host = -100501, -100502, 777  # the fake sends group messages from 777
    phone.house.roles.admins.add(phone.identity.pseudonym("telegram", str(host)))
    await phone.type("/launch weekly-checkin Supper", chat=first, chat_type="group")
    code = fake.sent(first)[-1]["reply_markup"]["inline_keyboard"][0][0]["url"].rsplit("-", 1)[1]
    for command in ("/close", "/next", "/qr"):
        await phone.type(command, chat=second, chat_type="group")
    assert "is closed" not in " ".join(fake.texts(first))
    assert not [c for c in fake.calls_to("sendPhoto") if int(c["chat_id"]) == second]
    assert "gathering&#x27;s code" in fake.texts(host)[-1]  # not the other room's (HTML)
    # The gathering in the first room is still open: someone can join it.
    joined = await phone.type(f"/start join-{code}", chat=9200)
    assert "has closed" not in " ".join(joined)


async def test_webhook_requests_telegram_could_not_have_sent_get_a_4xx_and_one_log_line(
    phone: Phone, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
):
    path, token = webhook_secrets(SECRET)
    app = make_web_app()
    app.router.add_post(f"/telegram/{path}", phone.channel.webhook_handler(token))
    runner = await start_web(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/telegram/{path}"
    deep = b"[" * 100_000 + b"]" * 100_000
    json_type = "application/json"
    bad: list[tuple[bytes, str, int]] = [
        (deep, json_type, 400),  # nested 100,000 levels deep: was 500
        (b'{"update_id": 5, "message": ' + deep + b"}", json_type, 400),
        (b"{not json", json_type, 400),
        (b"\xff\xfe\xfa not utf-8", json_type, 400),
        (b"", json_type, 400),
        (b"[1, 2]", json_type, 400),  # JSON, but not an object
        (b"null", json_type, 400),
        (b'"update"', json_type, 400),
        (b'{"message": {"text": "hi"}}', json_type, 400),  # no update_id
        (b'{"update_id": [1]}', json_type, 400),
        (b'{"update_id": 5}', "text/plain", 415),
        (b'{"update_id": 5}', "application/x-www-form-urlencoded", 415),
        (b'{"update_id": 5, "pad": "' + b"x" * 2_000_000 + b'"}', json_type, 413),
    ]
    try:
        async with aiohttp.ClientSession() as session:
            for body, content_type, status in bad:
                caplog.clear()
                headers = {SECRET_HEADER: token, "Content-Type": content_type}
                async with session.post(url, data=body, headers=headers) as response:
                    assert response.status == status, (body[:40], content_type)
                # Logged once, in one line, with no stack trace.
                lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
                assert len(lines) == 1, (body[:40], [r.getMessage() for r in lines])
                assert lines[0].exc_info is None and "\n" not in lines[0].getMessage()
            # Oddly shaped fields in a real update: nothing to answer, acknowledged.
            odd = {"update_id": 9, "message": {"chat": {"id": {}}, "from": "me", "text": [1]}}
            headers = {SECRET_HEADER: token}
            async with session.post(url, json=odd, headers=headers) as response:
                assert response.status == 200
            start = fake.message_update(CHAT, "/start weekly-checkin")
            async with session.post(url, json=start, headers=headers) as response:
                assert response.status == 200  # and a real update still works
        await phone.deliver()
        assert sum("Is that all right with you?" in t for t in fake.texts()) == 1
    finally:
        await runner.cleanup()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(["update_id", "message", "callback_query", "edited_message"]),
            json_values,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_any_webhook_body_is_an_update_or_refused_with_a_4xx(body: bytes) -> None:
    try:
        update = parse_update("application/json", body)
    except RequestRefused as refused:
        assert 400 <= refused.status < 500
    else:
        assert isinstance(update, dict) and "update_id" in update


async def test_telegram_offers_the_routers_commands_in_each_language(phone: Phone, fake):
    menus = {
        c.get("language_code", ""): json.loads(c["commands"])
        if isinstance(c["commands"], str)
        else c["commands"]
        for c in fake.calls_to("setMyCommands")
    }
    assert set(menus) == {"", "en", "es"}
    names = [c["command"] for c in menus["en"]]
    assert names == [c.name for c in phone.house.router.listed()]
    assert {"mydata", "forget", "join", "skip"} <= set(names)
    spanish = {c["command"]: c["description"] for c in menus["es"]}
    assert spanish["forget"] == "borra todo lo que guardamos de ti"
