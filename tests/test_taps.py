"""Taps on Telegram as a worker sees them (#19), through the fake Bot API over HTTP.

Each tap leaves the question it answered where it was, its buttons replaced by the
answer chosen (nothing left to tap), and brings the next question as a new message at
the bottom of the chat: a message the phone announces, and the newest thing on
screen even when the tap was on a question further up. One edit that marked the
choice and carried the next question would save a request per tap, but it would put
the next question wherever the tapped message was, with no notification: see
docs/taps/*.png and benchmarks/RESULTS.md, "Session 8: taps (#19), finished".

The mark and the next question are one outbox row (the mark travels inside the
question's, its reference to the tapped message in clear: only its number in the chat,
which names no one): the tests below say that nothing is lost or repeated for it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app.web import make_web_app, start_web
from bot.channels.telegram.channel import SECRET_HEADER, telegram_limits, webhook_secrets
from bot.delivery.channel import Capabilities, fit
from bot.library import GuideLibrary
from bot.messages import Outbound
from tests.conftest import GUIDES, ROOT, FakeClock
from tests.fake_telegram import FakeTelegram
from tests.test_telegram import CHAT, SECRET, Phone

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

TAP_HEAVY = ROOT / "benchmarks" / "guides"
# (what the person taps or types, a few words of the question it answers' successor)
WALK = [
    ("I agree", "Which shift did you work most this week?"),
    ("Evening", "How safe did you feel at work?"),
    ("4", "Did you get your schedule a week ahead?"),
    ("No", "What one thing would you change about your shifts?"),
]


@pytest.fixture
async def phone(fake: FakeTelegram, tmp_path: Path) -> AsyncIterator[Phone]:
    device = Phone(
        fake, tmp_path / "kt.db", GuideLibrary.from_paths([GUIDES, TAP_HEAVY]), FakeClock()
    )
    await device.open()
    yield device
    await device.close()


class Chat:
    """The chat as the phone shows it: each message's text and buttons, oldest first,
    after every call the bot made (sends add a message at the bottom, edits change one
    in place)."""

    def __init__(self, fake: FakeTelegram, chat: int = CHAT) -> None:
        self.messages: dict[int, dict[str, Any]] = {}
        for call in fake.calls:
            params = call.params
            if int(params.get("chat_id", 0)) != chat or params.get("_failed"):
                continue
            if call.method == "sendMessage":
                self.messages[params["_message_id"]] = {
                    "text": params["text"],
                    "buttons": labels(params),
                }
            elif call.method in ("editMessageReplyMarkup", "editMessageText"):
                shown = self.messages[params["message_id"]]
                shown["buttons"] = labels(params)
                shown["text"] = params.get("text", shown["text"])

    def newest(self) -> dict[str, Any]:
        return list(self.messages.values())[-1]

    def holding(self, words: str) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if words in m["text"]]


def labels(params: dict[str, Any]) -> list[tuple[str, bool]]:
    """Each button's label, and whether tapping it does anything."""
    rows = params.get("reply_markup", {}).get("inline_keyboard", [])
    return [(b["text"], b.get("callback_data") != "noop") for row in rows for b in row]


async def test_each_tap_keeps_its_answer_in_place_and_the_next_question_comes_below(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start tap-heavy")
    asked = "Is that all right with you?"
    for label, following in WALK:
        sends = len(fake.sent())
        await phone.tap(label)
        chat = Chat(fake)
        (answered,) = chat.holding(asked)
        # The question keeps its words, and shows the answer, with nothing left to tap.
        assert asked in answered["text"]
        assert answered["buttons"] == [(f"✓ {label}", False)]
        # The next question is one new message (one notification), at the bottom.
        assert len(fake.sent()) == sends + 1
        assert following in chat.newest()["text"]
        asked = following
    done = await phone.type("Fewer split shifts")
    assert done == ["Thank you! Your answers help everyone on shift."]
    # Scrolled back, every question reads with its answer, each in its own message.
    chat = Chat(fake)
    shown = [(m["text"].split("\n")[-1], m["buttons"]) for m in chat.messages.values()]
    assert shown[1:6] == [
        ("Is that all right with you?", [("✓ I agree", False)]),
        ("Which shift did you work most this week?", [("✓ Evening", False)]),
        ("<i>1 = Not at all · 5 = Very</i>", [("✓ 4", False)]),
        ("Did you get your schedule a week ahead?", [("✓ No", False)]),
        ("<i>You can skip this one with /skip.</i>", []),
    ]
    assert fake.calls_to("editMessageText") == []  # no text ever changes under them


async def test_a_tap_on_a_question_further_up_still_brings_the_next_one_to_the_bottom(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start tap-heavy")
    await phone.tap("I agree")
    # /help answers, then asks the question again below it: two copies on screen.
    await phone.type("/help")
    assert len(Chat(fake).holding("Which shift")) == 2
    # They scroll up and tap the first copy, above the help.
    await phone.tap("Evening", back=1)
    chat = Chat(fake)
    upper, _ = chat.holding("Which shift")
    assert upper["buttons"] == [("✓ Evening", False)]
    assert "How safe did you feel at work?" in chat.newest()["text"]
    # The copy below is answered now too: tapping it changes nothing, says so, and
    # brings the question under way back to the bottom.
    stale = await phone.tap("Night", back=1)
    assert "already answered" in stale[0] and "How safe" in stale[-1]
    assert (await phone.state()).answers["shift"] == "evening"


async def test_a_tap_costs_one_edit_and_one_message_and_is_answered_in_the_webhook_reply(
    phone: Phone, fake: FakeTelegram
):
    path, token = webhook_secrets(SECRET)
    app = make_web_app()
    app.router.add_post(f"/telegram/{path}", phone.channel.webhook_handler(token))
    runner = await start_web(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/telegram/{path}"
    try:
        async with aiohttp.ClientSession() as session:

            async def post(update: dict[str, Any]) -> object:
                async with session.post(url, json=update, headers={SECRET_HEADER: token}) as r:
                    assert r.status == 200
                    body = await r.read()
                await phone.deliver()
                return (await r.json()) if body else None

            await post(fake.message_update(CHAT, "/start tap-heavy"))
            before = Counter(c.method for c in fake.calls)
            for label, _ in WALK:
                message_id, rows = phone.last_keyboard()
                data = next(b["callback_data"] for row in rows for b in row if b["text"] == label)
                update = fake.tap_update(CHAT, data, message_id)
                reply = await post(update)
                assert reply == {
                    "method": "answerCallbackQuery",
                    "callback_query_id": update["callback_query"]["id"],
                }
        made = Counter(c.method for c in fake.calls) - before
        assert made == {"editMessageReplyMarkup": len(WALK), "sendMessage": len(WALK)}
    finally:
        await runner.cleanup()


async def test_a_tapped_message_owed_an_edit_names_nobody_in_the_outbox_or_the_data_folder(
    phone: Phone, fake: FakeTelegram, tmp_path: Path
):
    # A private chat's id is its person's Telegram id: written in clear anywhere, it
    # would name them to whoever copies the database. The tapped message's reference is
    # kept unsealed (its number within the chat), so this guards that it stays only that.
    chat = 7_311_500_421
    await phone.type("/start tap-heavy", chat=chat)
    message_id, rows = phone.last_keyboard(chat)
    data = next(b["callback_data"] for row in rows for b in row if b["text"] == "I agree")
    fake.queue(fake.tap_update(chat, data, message_id))
    phone.offset = await phone.channel.poll_once(phone.offset)
    await phone.channel.settle()
    # Stored, not yet sent: the next question, carrying the mark on the tapped one (one
    # row for both, so a tap costs one row).
    (owed,) = await phone.storage.claim_due("telegram", phone.clock(), 100)
    payload = json.loads(owed.payload)
    assert "Which shift did you work most this week?" in payload["text"]
    assert payload["mark"]["text"] == "I agree" and "edit" not in payload
    assert payload["mark"]["edit"] == str(message_id)  # its number in the chat, no more
    assert str(chat) not in owed.payload
    assert phone.identity.unseal(owed.address) == str(chat)  # the chat: sealed
    # Paired with the sealed address only at send time, it still marks the tapped message.
    phone.clock.advance(minutes=10)  # past the claim's lease
    await phone.deliver()
    (mark,) = fake.edits()
    assert (mark["chat_id"], mark["message_id"]) == (chat, message_id)
    assert "Which shift did you work most this week?" in fake.sent(chat)[-1]["text"]
    # Through to the end, nothing in the data folder names them, deleted rows included.
    for label in ("Evening", "4", "No"):
        await phone.tap(label, chat=chat)
    await phone.type("Fewer split shifts", chat=chat)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files)
    for path in files:
        assert str(chat).encode() not in path.read_bytes(), path


async def test_a_mark_refused_for_good_still_lets_the_next_question_come(
    phone: Phone, fake: FakeTelegram
):
    await phone.type("/start tap-heavy")
    # e.g. "Bad Request: message to edit not found": they deleted the question.
    fake.fail_next("editMessageReplyMarkup", 400)
    sent = await phone.tap("I agree")
    assert sent == [Chat(fake).newest()["text"]] and "Which shift" in sent[0]
    phone.clock.advance(hours=1)
    await phone.deliver()
    assert len(fake.calls_to("editMessageReplyMarkup")) == 1  # not tried again
    assert await phone.storage.claim_due("telegram", phone.clock(), 10) == []


@pytest.mark.parametrize("failing", ["editMessageReplyMarkup", "sendMessage"])
async def test_when_the_mark_or_the_next_question_fails_both_come_later_the_question_once(
    phone: Phone, fake: FakeTelegram, failing: str
):
    await phone.type("/start tap-heavy")
    fake.fail_next(failing, 500)
    assert await phone.tap("I agree") == []
    phone.clock.advance(seconds=2)  # the first retry's backoff
    await phone.deliver()
    chat = Chat(fake)
    (answered,) = chat.holding("Is that all right with you?")
    assert answered["buttons"] == [("✓ I agree", False)]
    assert sum("Which shift" in t for t in fake.texts()) == 1
    assert "Which shift" in chat.newest()["text"]
    # The mark went before the question, the second time round too.
    methods = [c.method for c in fake.calls if not c.params.get("_failed")]
    assert methods[-2:] == ["editMessageReplyMarkup", "sendMessage"]


def test_a_channel_that_cannot_edit_is_told_the_tapped_answer_before_what_follows():
    mark = Outbound(text="Evening", input="answered", step="shift", edit="17")
    message = Outbound(text="How safe did you feel at work?", mark=mark)
    shown = fit(message, Capabilities(buttons=True, files=True))
    assert shown.mark is None and shown.edit is None
    assert shown.text == "✓ Evening\n\nHow safe did you feel at work?"
    assert fit(message, Capabilities(edit=True, buttons=True, files=True)) == message


async def test_taps_faster_than_telegrams_limit_for_a_chat_wait_their_turn_and_all_arrive(
    phone: Phone, fake: FakeTelegram
):
    # Telegram's own limits (about one message a second in a chat, a burst of three), on
    # the test's clock: someone tapping as fast as they can outruns them.
    phone.channel.limits = telegram_limits()
    phone.channel.clock = lambda: phone.clock().timestamp()
    await phone.type("/start tap-heavy")
    asked = "Is that all right with you?"
    waited = 0
    for label, following in WALK:
        await phone.tap(label)
        for _ in range(3):
            if following in Chat(fake).newest()["text"]:
                break
            phone.clock.advance(seconds=1)
            waited += 1
            await phone.deliver()
        chat = Chat(fake)
        assert following in chat.newest()["text"], (label, waited)
        (answered,) = chat.holding(asked)
        assert answered["buttons"] == [(f"✓ {label}", False)]
        asked = following
    assert waited > 0  # the limit was met: the test says something
    assert sum("Which shift" in t for t in fake.texts()) == 1
