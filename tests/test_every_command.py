"""Every command the router declares, through every door: the terminal, Telegram and Slack.

The list of commands comes from the router, so a command added without an entry
in `EXPECTED` fails here, and a channel that turns a command into `/help` (as
Slack's own list once did for /mydata and /forget) fails too. Bot-level
confirmations are answered both by tapping and by typing, in every channel.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bot.flows.events import Tap
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from tests.conftest import ROOT, FakeClock, Harness
from tests.fake_slack import FakeSlack
from tests.fake_telegram import FakeTelegram
from tests.storage_suite import new_storage
from tests.test_slack import Workspace
from tests.test_telegram import Phone

_EN = yaml.safe_load((ROOT / "bot" / "locales" / "en.yaml").read_text(encoding="utf-8"))


def fragment(key: str) -> str:
    """The longest run of plain words in a phrase: what any channel shows of it."""
    runs = re.findall(r"[A-Za-z][A-Za-z ,]{4,}[A-Za-z]", re.sub(r"\{[^}]*\}|/\w+", "|", _EN[key]))
    return max(runs, key=len)


@dataclass(frozen=True)
class Expect:
    """How to check one command: run as whom, with what, and the phrase it answers with."""

    arg: str
    phrase: str
    admin: bool = False
    in_a_guide: bool = True  # with a guide under way (its consent question asked)


# Run in this order, one fresh person each (the gathering commands share the admin's).
EXPECTED: dict[str, Expect] = {
    "start": Expect("changing-work", "consent_question", in_a_guide=False),
    "guides": Expect("", "guides_prompt"),
    "skip": Expect("", "consent_again"),
    "back": Expect("", "consent_again"),
    "help": Expect("", "command_mydata"),
    "privacy": Expect("", "privacy"),
    "language": Expect("", "language_prompt"),
    "stop": Expect("", "declined"),
    "mydata": Expect("", "mydata_heading"),
    "forget": Expect("", "forget_confirm"),
    "leave": Expect("", "cohort_left"),
    "pause": Expect("", "checkins_none"),  # a fresh person is in no check-ins
    "resume": Expect("", "checkins_none"),
    "timezone": Expect("", "timezone_is"),
    "schedule": Expect("", "schedules_none", admin=True),
    "digest": Expect("", "digest_heading", admin=True),
    "join": Expect("NOSUCH", "join_unknown"),
    "redeem": Expect("NOSUCH", "redeem_failed"),
    "launch": Expect("changing-work Tuesday supper", "launched", admin=True, in_a_guide=False),
    "status": Expect("{code}", "status_counts", admin=True, in_a_guide=False),
    "next": Expect("{code}", "not_paced", admin=True, in_a_guide=False),
    "qr": Expect("{code}", "qr_caption", admin=True, in_a_guide=False),
    "summary": Expect("{code}", "summary_heading", admin=True, in_a_guide=False),
    "close": Expect("{code}", "summary_heading", admin=True, in_a_guide=False),
}


def plain(texts: list[str]) -> str:
    """What a person reads, whatever the markup: entities undone, Slack's one command
    written as the others write it, white space folded."""
    text = html.unescape(" ".join(texts)).replace("/kitchen-table ", "/")
    text = re.sub(r"[*_`]", "", text)
    return " ".join(text.split())


@dataclass
class Door:
    """One channel as a person uses it: type, tap a labelled button, become an admin."""

    name: str
    type: Callable[[str, str], Awaitable[list[str]]]
    tap: Callable[[str, str], Awaitable[list[str]]]
    make_admin: Callable[[str], Awaitable[None]]
    router_names: set[str]


@pytest.fixture(params=["terminal", "telegram", "slack"])
async def door(
    request: pytest.FixtureRequest, tmp_path: Path, fake: FakeTelegram, slack_api: FakeSlack
) -> AsyncIterator[Door]:
    guides = GuideLibrary.from_paths([ROOT / "guides"])
    if request.param == "telegram":
        device = Phone(fake, tmp_path / "kt.db", guides, FakeClock())
        await device.open()
        users: dict[str, int] = {}

        def chat(user: str) -> int:
            return users.setdefault(user, 7000 + len(users))

        def shown(user: str, before: int) -> list[str]:
            """Every text and caption the bot sent to this chat since `before` calls."""
            return [
                str(c.params.get("text") or c.params.get("caption") or "")
                for c in fake.calls[before:]
                if str(c.params.get("chat_id")) == str(chat(user)) and not c.params.get("_failed")
            ]

        async def tg_type(user: str, text: str) -> list[str]:
            before = len(fake.calls)
            await device.type(text, chat=chat(user))
            return shown(user, before)

        async def tg_tap(user: str, label: str) -> list[str]:
            before = len(fake.calls)
            await device.tap(label, chat=chat(user))
            return shown(user, before)

        async def tg_admin(user: str) -> None:
            device.house.roles.admins.add(device.identity.pseudonym("telegram", str(chat(user))))

        try:
            yield Door("telegram", tg_type, tg_tap, tg_admin, device.house.router.names())
        finally:
            await device.close()
        return
    if request.param == "slack":
        async with Workspace(slack_api, tmp_path / "data") as ws:
            seen: dict[str, int] = {}

            def texts(user: str) -> list[str]:
                posts = slack_api.posts("T1", f"U{user}")
                new, seen[user] = posts[seen.get(user, 0) :], len(posts)
                return [str(p.get("text", "")) for p in new]

            async def sl_type(user: str, text: str) -> list[str]:
                texts(user)
                if text.startswith("/"):
                    await ws.command(text[1:], user=f"U{user}")
                else:
                    await ws.say(text, user=f"U{user}")
                return texts(user)

            async def sl_tap(user: str, label: str) -> list[str]:
                texts(user)
                await ws.click(label, user=f"U{user}")
                return texts(user)

            async def sl_admin(user: str) -> None:
                ws.bot.house.roles.admins.add(ws.bot.identity.pseudonym("slack", f"T1:U{user}"))

            yield Door("slack", sl_type, sl_tap, sl_admin, ws.bot.house.router.names())
        return
    storage = new_storage(tmp_path / "kt.db")  # the run's backend (tests/storage_suite.py)
    await storage.open()
    harness = Harness(storage, guides, FakeClock(), load_phrasebook())

    async def t_type(user: str, text: str) -> list[str]:
        return [m.text for m in await harness.say(text, user=user)]

    async def t_tap(user: str, label: str) -> list[str]:
        for _, message in reversed(harness.channel.sent):
            for button in message.buttons:
                if button.label == label:
                    tap = Tap(button.step, button.value)
                    return [m.text for m in await harness.say(None, user=user, tap=tap)]  # type: ignore[arg-type]
        raise AssertionError(f"no button {label!r}")

    async def t_admin(user: str) -> None:
        harness.house.roles.admins.add(harness.pseudonym(user))

    try:
        yield Door("terminal", t_type, t_tap, t_admin, harness.house.router.names())
    finally:
        await storage.close()


async def test_every_declared_command_does_what_it_says_in_every_channel(door: Door) -> None:
    assert door.router_names == set(EXPECTED), "a command was declared without a check here"
    code = ""
    for number, (name, expect) in enumerate(EXPECTED.items()):
        user = "host" if expect.admin else f"p{number}"
        if expect.admin:
            await door.make_admin(user)
        if expect.in_a_guide:
            await door.type(user, "/start changing-work")
        said = plain(await door.type(user, f"/{name} {expect.arg.format(code=code)}".strip()))
        assert fragment(expect.phrase) in said, f"/{name} in {door.name}: {said[:300]}"
        if name != "help":
            assert fragment("help_intro") not in said, f"/{name} in {door.name} answered with /help"
        if name == "launch":
            found = re.search(r"Join code: ([A-Z0-9]{6})", said)
            assert found is not None
            code = found.group(1)


async def test_a_confirmation_reaches_its_question_typed_or_tapped(door: Door) -> None:
    forgotten = fragment("forgotten")
    # Typed: "1" answers "are you sure?", not the guide's consent question behind it.
    await door.type("typist", "/start changing-work")
    await door.type("typist", "/forget")
    assert forgotten in plain(await door.type("typist", "1"))
    assert fragment("mydata_nothing") in plain(await door.type("typist", "/mydata"))
    # Typed as a word, in the person's language.
    await door.type("worder", "/start changing-work")
    await door.type("worder", "/forget")
    assert forgotten in plain(await door.type("worder", "yes"))
    # Tapped.
    await door.type("tapper", "/start changing-work")
    await door.type("tapper", "/forget")
    assert forgotten in plain(await door.tap("tapper", _EN["forget_yes"]))
    # A reply that answers neither choice is the guide's again: nothing is erased.
    await door.type("other", "/start changing-work")
    await door.type("other", "/forget")
    await door.type("other", "maybe later")
    assert fragment("mydata_heading") in plain(await door.type("other", "/mydata"))


async def test_the_guides_menu_takes_a_typed_number(door: Door) -> None:
    said = plain(await door.type("menu", "hello"))
    assert fragment("guides_prompt") in said
    started = plain(await door.type("menu", "1"))
    assert fragment("consent_question") in started  # the first guide on the menu begins
