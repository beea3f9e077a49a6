"""The fault suite on PostgreSQL: what a full disk is to SQLite, a database that can't be
reached for a while is to PostgreSQL.

Two ways the database goes away (`REFUSED`, `RESTARTED`), a parameter of the tests:

- "refused": the database stops taking connections (`ALTER DATABASE ... ALLOW_CONNECTIONS
  false`) and every session on it is ended (`pg_terminate_backend`), from a superuser's
  connection to another database; then it takes connections again. As an operator
  does for a maintenance window.
- "restarted": the server's port stops answering and every connection is cut, as while
  PostgreSQL restarts or the network between them fails. The bot reaches PostgreSQL
  through a small TCP relay of the test's own (`Relay`), which the test closes and
  opens again: the server itself is shared with other tests and is never restarted.

What is checked is what a person (or Telegram) would notice: while the database is away
a turn fails as a storage failure, nothing of it is kept (no answer without its run's
new step, no reply owed without its answer), webhooks answer 503 so Telegram sends the
update again, /healthz says the database is unreachable; once it is back, the bot
carries on by itself (no restart), each update sent again is handled once, every
acknowledged answer is stored once, and every reply owed arrives.

Beside it, the crash and platform-fault tests of SQLite (tests/test_process_crash.py,
tests/test_telegram.py) on PostgreSQL: `kitchen-table run` killed mid-burst, and the
Bot API failing for a while. Each test has a database of its own (tests/pg.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.app.chat import chat
from bot.channels.telegram.channel import webhook_secrets
from bot.flows.run import RunState
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.messages import Inbound, NotStored
from bot.privacy import Identity
from storage.failures import STORAGE_FAILURES
from storage.postgres import PostgresStorage
from storage.postgres.connection import LEASE
from tests.conftest import ROOT, FakeClock, Harness, load
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.pg import drop_databases, fresh_database
from tests.pg_relay import Relay
from tests.storage_suite import DATABASE_URL
from tests.test_process_crash import STEP_OF_ANSWER, WALK, Crowd
from tests.test_telegram_process import SECRET, free_port

pytestmark = pytest.mark.postgres


@pytest.fixture
async def url() -> AsyncIterator[str]:
    yield await fresh_database()
    await drop_databases()


# The database going away and coming back ---------------------------------------------


class Outage(Protocol):
    """A way for the database to be away: `url` is where the bot connects."""

    url: str

    async def cut(self) -> None: ...

    async def restore(self) -> None: ...

    async def close(self) -> None: ...


class Refused:
    """The database refuses connections, and every session on it has been ended."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = urlsplit(url).path.lstrip("/")

    async def _admin(self, *statements: str) -> None:
        # A superuser's connection to another database (the tests' own).
        connection = await asyncpg.connect(DATABASE_URL)
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    async def cut(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        connection = await asyncpg.connect(DATABASE_URL)
        try:
            # Ended until none is left: a session that was connecting meanwhile is ended too.
            async with asyncio.timeout(20):
                while True:
                    ended = await connection.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = $1 AND pid <> pg_backend_pid()",
                        self.name,
                    )
                    if not ended:
                        break
                    await asyncio.sleep(0.05)  # polling a condition, not timing
        finally:
            await connection.close()

    async def restore(self) -> None:
        await self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    async def close(self) -> None:
        await self.restore()  # a test that failed while the database was away


async def make_outage(kind: str, url: str) -> Outage:
    if kind == REFUSED:
        return Refused(url)
    return await Relay(url).start()


# The two ways the database goes away (see the module's docstring).
REFUSED = "refused"
RESTARTED = "restarted"


async def until(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Wait for something this process does in the background (polling a condition)."""
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)  # polling a condition, not timing


def harness(store: PostgresStorage) -> Harness:
    library = GuideLibrary()
    library.add(load(GUIDE, "pulse.yaml"))
    return Harness(store, library, FakeClock(), load_phrasebook())


# 1. In process: a dispatcher on PostgreSQL, the database away mid-burst ------------------

GUIDE = """
guide: pulse
version: 1
title: Weekly pulse
consent: Your answers are kept without your name.
steps:
  - id: week
    scale: How was your week?
  - id: change
    ask: What changed?
  - id: thanks
    say: Thank you!
"""
# What each person sends, and a few words of the bot's reply to it.
PULSE = [
    ("/start pulse", "kept without your name"),
    ("yes", "How was your week?"),
    ("{week}", "What changed?"),
    ("Story of {user}", "Thank you!"),
]
PEOPLE = 12
CUT_AT = PEOPLE + 9  # answers acknowledged when the database goes away


def said(user: str, index: int) -> Inbound:
    """Person `user`'s `index`th message, keyed as the platform would key it."""
    week = str(int(user.removeprefix("user")) % 5 + 1)
    text = PULSE[index][0].format(week=week, user=user)
    return Inbound("terminal", user, user, text, key=f"{user}-{index}")


async def owed_texts(url: str) -> dict[str, list[str]]:
    """The replies waiting in the outbox, per participant (read beside the bot)."""
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT participant, payload FROM outbox ORDER BY id")
    finally:
        await connection.close()
    owed: dict[str, list[str]] = {}
    for participant, payload in rows:
        owed.setdefault(participant, []).append(json.loads(payload)["text"])
    return owed


@pytest.mark.parametrize("kind", [REFUSED, RESTARTED])
async def test_database_away_mid_burst_keeps_nothing_half_done_and_recovers(
    url: str, kind: str
) -> None:
    """A crowd answering through the dispatcher; the database goes away mid-burst.
    (Refused connections raised SQLSTATE 55000, which was no storage failure: a webhook
    acknowledged the update, and it was lost.)"""
    outage = await make_outage(kind, url)
    store = PostgresStorage(outage.url, pool_size=4)
    await store.open()
    try:
        h = harness(store)
        users = [f"user{n}" for n in range(PEOPLE)]
        acked: dict[str, int] = {}  # user -> index of the last message acknowledged
        failures: list[BaseException] = []  # what each person's failed turn raised
        cut_asked, cut_done = asyncio.Event(), asyncio.Event()

        async def walk(user: str) -> None:
            for index in range(len(PULSE)):
                if cut_asked.is_set():
                    await cut_done.wait()  # the database is going away: next turn after
                try:
                    await h.dispatcher.handle(said(user, index))
                except Exception as error:  # anything else than NotStored fails below
                    failures.append(error)
                    return  # not acknowledged: the platform will send it again
                acked[user] = index
                if sum(i + 1 for i in acked.values()) >= CUT_AT:
                    cut_asked.set()

        async def cut_when_asked() -> None:
            await cut_asked.wait()
            await outage.cut()
            cut_done.set()

        cutter = asyncio.create_task(cut_when_asked())
        await asyncio.wait_for(asyncio.gather(*(walk(u) for u in users)), 30)
        await asyncio.wait_for(cutter, 30)
        assert failures, "nobody met the database away: the test would prove nothing"
        for failure in failures:
            # NotStored: the webhook answers 503, the person is told to try again.
            assert isinstance(failure, NotStored), repr(failure)
            assert isinstance(failure.__cause__, STORAGE_FAILURES), repr(failure.__cause__)

        # While away, a turn fails as a storage failure, and the terminal says so.
        with pytest.raises(NotStored) as away:
            await h.dispatcher.handle(Inbound("terminal", "zoe", "zoe", "/start pulse", key="z"))
        assert isinstance(away.value.__cause__, STORAGE_FAILURES), repr(away.value.__cause__)
        told = io.StringIO()
        await chat(h.dispatcher, h.deliverer, "/start pulse", "zoe", "en", io.StringIO(""), told)
        assert h.dispatcher.phrases.text("en", "storage_error") in told.getvalue()

        await outage.restore()
        # Nothing half done: each run's step and answers, and the replies owed, agree.
        # Read through the bot's own pool: it reconnects by itself.
        owed = await owed_texts(url)
        for user in users:
            person = await store.participant(h.pseudonym(user))
            if person is None:
                assert user not in acked
                continue
            run = await store.run(person.current_run)  # type: ignore[arg-type]
            assert run is not None
            state = RunState.model_validate_json(run.state)
            stored = {a.step: a.value for a in await store.answers(run.id)}
            assert set(stored) == set(state.answers), (user, stored, state.answers)
            replies = owed.get(h.pseudonym(user), [])
            done = [i for i, (_, reply) in enumerate(PULSE) if any(reply in t for t in replies)]
            # Every acknowledged message's reply is owed, and at most one more (a commit
            # that went through as the database went away, not acknowledged).
            assert done == list(range(len(done))), (user, replies)
            assert len(done) - 1 - acked.get(user, -1) in (0, 1), (user, replies, acked)
            assert ("week" in stored) == (len(done) > 2), (user, stored, replies)
            assert ("change" in stored) == (len(done) > 3), (user, stored, replies)

        # The platform sends everything again, acknowledged or not: each once.
        accepted: Counter[str] = Counter()
        for user in users:
            for index in range(len(PULSE)):
                message = said(user, index)
                if (await h.dispatcher.handle(message)).accepted:
                    accepted[message.key or ""] += 1
        assert max(accepted.values()) == 1
        await h.dispatcher.settle()
        await h.deliverer.drain("terminal")
        for n, user in enumerate(users):
            person = await store.participant(h.pseudonym(user))
            assert person is not None and person.current_run is not None
            state = RunState.model_validate_json((await store.run(person.current_run)).state)  # type: ignore[union-attr]
            assert state.status == "finished"
            assert state.answers == {"week": n % 5 + 1, "change": f"Story of {user}"}
            texts = h.channel.texts(user)
            for _, reply in PULSE:
                assert sum(reply in t for t in texts) == 1, (user, reply, texts)
        assert await store.claim_due("terminal", h.clock(), 10) == []  # nothing left owed
    finally:
        await store.close()
        await outage.close()


class Watched:
    """A store as delivery sees it, noting when delivery met the database away."""

    def __init__(self, store: PostgresStorage) -> None:
        self._store = store
        self.claim_failed = asyncio.Event()
        self.next_due_failed = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim_due(self, *args: Any) -> Any:
        try:
            return await self._store.claim_due(*args)
        except STORAGE_FAILURES:
            self.claim_failed.set()
            raise

    async def next_due(self, *args: Any) -> Any:
        try:
            return await self._store.next_due(*args)
        except STORAGE_FAILURES:
            self.next_due_failed.set()
            raise


async def test_delivery_carries_on_by_itself_once_the_database_is_back(url: str) -> None:
    """The bot's delivery loop, running while the database is away: once it is back,
    what is owed goes out without a new message to wake it, and without a restart.
    (Asking when the next message is due once ended the loop for good.)"""
    relay = await Relay(url).start()
    store = PostgresStorage(relay.url, pool_size=2)
    await store.open()
    h = harness(store)
    watched = Watched(store)
    h.deliverer.storage = watched
    runner: asyncio.Task[None] | None = None
    try:
        for index in range(2):  # the consent, then the first question: owed
            assert (await h.dispatcher.handle(said("user0", index))).accepted
        await relay.cut()
        runner = asyncio.create_task(h.deliverer.run())
        await asyncio.wait_for(watched.claim_failed.wait(), 10)
        await asyncio.wait_for(watched.next_due_failed.wait(), 10)
        await relay.restore()
        replies = [reply for _, reply in PULSE[:2]]

        def delivered() -> bool:
            return all(any(r in t for t in h.channel.texts("user0")) for r in replies)

        with contextlib.suppress(TimeoutError):  # said below, with what the loop raised
            await until(lambda: delivered() or runner.done(), 30)
        assert delivered(), (
            h.channel.texts("user0"),
            runner.done() and not runner.cancelled() and runner.exception(),
        )
    finally:
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        await store.close()
        await relay.close()


async def test_a_connection_its_server_ended_fails_the_turn_as_a_storage_failure(
    url: str,
) -> None:
    """A server shutting down tells each session's client FATAL, then closes the socket.
    A turn that takes such a connection from the pool in between fails, as a storage
    failure (503: the platform sends it again), and the next one is served on a new
    connection. (asyncpg raised InternalClientError there, which was acknowledged.)"""
    relay = await Relay(url).start()
    store = PostgresStorage(relay.url, pool_size=1)  # one connection: the turn gets it
    await store.open()
    h = harness(store)
    try:
        assert (await h.dispatcher.handle(said("user0", 0))).accepted
        await relay.shut_down()
        for _ in range(5):
            # Loop turns, not time: the client's socket callbacks read the FATAL.
            await asyncio.sleep(0)
        failure: BaseException | None = None
        try:
            await asyncio.wait_for(h.dispatcher.handle(said("user0", 1)), 10)
        except Exception as error:
            failure = error
        await relay.cut()
        await relay.restore()
        assert isinstance(failure, NotStored), repr(failure)
        assert (await h.dispatcher.handle(said("user0", 1))).accepted  # the retry
    finally:
        await store.close()
        await relay.close()


async def test_someone_in_the_terminal_is_told_to_send_it_again_not_that_the_disk_is_full(
    url: str,
) -> None:
    """The terminal's answer to a failed turn names no cause it can't know (it said the
    disk was full, whatever failed)."""
    relay = await Relay(url).start()
    store = PostgresStorage(relay.url, pool_size=1)
    await store.open()
    h = harness(store)
    try:
        await relay.cut()
        for language in ("en", "es"):
            told = io.StringIO()
            await chat(
                h.dispatcher, h.deliverer, "/start pulse", "ana", language, io.StringIO(""), told
            )
            text = told.getvalue()
            assert text.strip() == h.dispatcher.phrases.text(language, "storage_error")
            assert "disk" not in text and "disco" not in text, text
    finally:
        await store.close()
        await relay.close()


# The real process ---------------------------------------------------------------------

PROCESS_PEOPLE = 16
# The questions the crowd answers (tests/test_process_crash.py's WALK), in order.
PATH = [STEP_OF_ANSWER[index] for index in sorted(STEP_OF_ANSWER)]


def environment(data: Path, url: str, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KT_", "SLACK_"))}
    base.pop("TELEGRAM_BOT_TOKEN", None)
    return {
        **base,
        "KT_DATA_DIR": str(data),
        "KT_GUIDES_DIR": str(ROOT / "guides"),
        "KT_SECRET_KEY": SECRET,
        "KT_DATABASE_URL": url,
        **env,
    }


async def upgrade(data: Path, url: str) -> None:
    """`kitchen-table db upgrade`, as an operator runs it before the first start (not
    blocking the event loop: the test's relay to PostgreSQL runs on it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "db", "upgrade", env=environment(data, url), cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()


class Bot:
    """`kitchen-table run` on PostgreSQL in Telegram webhook mode; its log in a file (a
    pipe nobody reads would fill with the outage's warnings and stop the bot)."""

    def __init__(self, fake: FakeTelegram, data: Path, url: str) -> None:
        self.fake = fake
        self.data = data
        self.url = url
        self.port = free_port()
        path, self.token = webhook_secrets(SECRET.encode())
        self.hook = f"http://127.0.0.1:{self.port}/telegram/{path}"
        self.health = f"http://127.0.0.1:{self.port}/healthz"
        self.log = data / "bot.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        env = environment(
            self.data, self.url, TELEGRAM_BOT_TOKEN=TOKEN, KT_TELEGRAM_API_URL=self.fake.url,
            KT_PORT=str(self.port), KT_PUBLIC_URL=f"http://127.0.0.1:{self.port}",
        )  # fmt: skip
        registered = len(self.fake.calls_to("setWebhook"))
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", env=env, cwd=ROOT,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        await self.fake.wait_until(lambda: len(self.fake.calls_to("setWebhook")) > registered)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        """Stop it as an operator does; it must exit cleanly."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            code = await asyncio.wait_for(self.process.wait(), 20)
            assert code == 0, self.tail()


async def stored_answers(url: str, chats: list[int]) -> dict[int, tuple[RunState, dict[str, str]]]:
    """Each chat's run state and stored answers (step -> value)."""
    identity = Identity(SECRET.encode())
    store = PostgresStorage(url, pool_size=2)
    await store.open()
    try:
        found = {}
        for chat_id in chats:
            person = await store.participant(identity.pseudonym("telegram", str(chat_id)))
            if person is None or person.current_run is None:
                continue
            run = await store.run(person.current_run)
            assert run is not None
            answers = {a.step: a.value for a in await store.answers(run.id)}
            found[chat_id] = (RunState.model_validate_json(run.state), answers)
        return found
    finally:
        await store.close()


def assert_each_acked_answer_stored(
    acked: dict[int, int], stored: dict[int, tuple[RunState, dict[str, str]]]
) -> None:
    """Every acknowledged answer is stored, and each run is at the step after its last
    answer stored (the answers and the run's state were written together)."""
    for chat_id, last in acked.items():
        assert chat_id in stored, chat_id
        state, answers = stored[chat_id]
        assert set(answers) == set(state.answers), (chat_id, answers, state.answers)
        for index in range(1, last + 1):
            if index in STEP_OF_ANSWER:
                assert STEP_OF_ANSWER[index] in answers, (chat_id, index, answers)
        # Answered in order, and asked the next question: the run is where they are.
        assert set(answers) == set(PATH[: len(answers)]), (chat_id, answers)
        if answers and len(answers) < len(PATH):
            assert state.step == PATH[len(answers)], (chat_id, state.step, answers)


def assert_sent_once_but_in_flight(
    fake: FakeTelegram, chats: list[int], before: dict[int, list[str]]
) -> None:
    """Every question reached each chat; one came twice only if it was the last one the
    chat got before the fault (its send was in flight: taken by Telegram, not yet
    written down as sent)."""
    for chat_id in chats:
        texts = fake.texts(chat_id)
        for _, marker in WALK:
            copies = [t for t in texts if marker in t]
            assert copies, (chat_id, marker, texts)
            if len(copies) > 1:
                earlier = [t for t in before[chat_id] if marker in t]
                assert len(copies) == 2 and earlier == copies[:1], (chat_id, marker, texts)
                assert before[chat_id][-1:] == earlier, (chat_id, marker, texts)


async def health(session: aiohttp.ClientSession, bot: Bot) -> tuple[int, Any]:
    async with session.get(bot.health) as reply:
        return reply.status, await reply.json()


async def until_healthy(session: aiohttp.ClientSession, bot: Bot, seconds: float = 20) -> None:
    """Poll /healthz until it says the database answers."""
    async with asyncio.timeout(seconds):
        while True:
            if (await health(session, bot))[0] == 200:
                return
            await asyncio.sleep(0.1)  # polling a condition, not timing


class BotAPI(FakeTelegram):
    """The fake Bot API, which can also fail every send for a while (500 and 429, retry
    after a second, in turn, while `down`) or hold sends unanswered (from `hold` to `release`)."""

    down = False
    refused = 0
    parked = 0  # sends held unanswered so far

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.open.set()

    def hold(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()

    async def _endpoint(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method == "sendMessage" and not self.open.is_set():
            self.parked += 1
            await self._notify()
            await self.open.wait()
        if self.down and method in ("sendMessage", "editMessageReplyMarkup"):
            self.refused += 1
            if self.refused % 2:
                self.fail_next(method, 500)
            else:
                self.fail_next(method, 429, retry_after=1)
        try:
            return await super()._endpoint(request)
        finally:
            await self._notify()  # a refusal counts as a change too (`wait_until`)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


@pytest.fixture
async def api() -> AsyncIterator[BotAPI]:
    server = BotAPI()
    await server.start()
    yield server
    await server.stop()


# 2. The real process: the database away mid-burst ---------------------------------------


@pytest.mark.parametrize("kind", [REFUSED, RESTARTED])
async def test_webhooks_answer_503_while_the_database_is_away_and_all_goes_through_after(
    api: BotAPI, url: str, kind: str, tmp_path: Path
) -> None:
    """Mid-burst, with replies on their way to Telegram: those sends are answered once
    the database is away, so the bot can't write down that they went (in flight: they
    may come twice, nothing else may)."""
    fake = api
    outage = await make_outage(kind, url)
    await upgrade(tmp_path, outage.url)
    bot = Bot(fake, tmp_path / "data", outage.url)
    chats = [900 + n for n in range(PROCESS_PEOPLE)]
    try:
        await bot.start()
        crowd = Crowd(fake, bot.hook, bot.token)
        crowd.kill_after = random.Random(20).randint(PROCESS_PEOPLE * 2, PROCESS_PEOPLE * 3)
        async with aiohttp.ClientSession() as session:
            assert await health(session, bot) == (200, {"status": "ok", "database": "ok"})
            walkers = [asyncio.create_task(crowd.walk(session, c)) for c in chats]
            await asyncio.wait_for(crowd.enough.wait(), 60)
            api.hold()
            await api.wait_until(lambda: api.parked > 0)
            await outage.cut()
            api.release()
            for task in walkers:
                task.cancel()
            await asyncio.gather(*walkers, return_exceptions=True)
            acked_at_cut = sum(crowd.acked.values())

            # While away: every update is refused for now (503: Telegram sends it again),
            # the health check says why, and the process stays up.
            statuses = []
            for chat_id in chats:
                index = crowd.acked.get(chat_id, -1) + 1
                if index >= len(WALK):
                    continue
                update = crowd.pending.get(chat_id) or crowd.update_for(chat_id, index)
                crowd.pending[chat_id] = update
                async with session.post(bot.hook, json=update, headers=crowd.headers) as reply:
                    statuses.append(reply.status)
            assert statuses and set(statuses) == {503}, (statuses, bot.tail())
            status, said_ = await health(session, bot)
            assert (status, said_.get("database")) == (503, "unreachable")
            assert bot.running, bot.tail()
            assert sum(crowd.acked.values()) == acked_at_cut  # nothing acknowledged meanwhile

            await outage.restore()
            # Back by itself: no restart, the same process.
            await until_healthy(session, bot)
            before = {c: list(fake.texts(c)) for c in chats}
            await asyncio.wait_for(asyncio.gather(*(crowd.walk(session, c) for c in chats)), 60)
            for chat_id in chats:
                await fake.wait_until(
                    lambda c=chat_id: any("Thank you" in t for t in fake.texts(c)), 30
                )
            assert await health(session, bot) == (200, {"status": "ok", "database": "ok"})
        assert bot.running, bot.tail()
        await bot.stop()
    finally:
        if bot.running:
            await bot.kill()
        await outage.close()

    stored = await stored_answers(url, chats)
    assert_each_acked_answer_stored(crowd.acked, stored)
    for chat_id in chats:
        state, answers = stored[chat_id]
        assert state.status == "finished", (chat_id, state)
        assert answers["better_week"] == json.dumps("Fewer double shifts"), answers
    assert_sent_once_but_in_flight(fake, chats, before)


async def until_nothing_owed(url: str, seconds: float) -> None:
    """Poll the outbox until every reply owed has been sent."""
    connection = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(seconds):
            while True:
                if not await connection.fetchval("SELECT count(*) FROM outbox"):
                    return
                await asyncio.sleep(0.1)  # polling a condition, not timing
    finally:
        await connection.close()


# 3. The real process: SIGKILL mid-burst -------------------------------------------------


async def test_sigkill_mid_burst_on_postgres_loses_nothing_and_resumes(
    fake: FakeTelegram, url: str, tmp_path: Path
) -> None:
    """tests/test_process_crash.py's crash on PostgreSQL. A reply the killed instance had
    claimed (leased) and not sent is held back until its lease runs out (a minute at
    most, `LEASE`), then the restarted instance sends it."""
    await upgrade(tmp_path, url)
    bot = Bot(fake, tmp_path / "data", url)
    chats = [1100 + n for n in range(PROCESS_PEOPLE)]
    crowd = Crowd(fake, bot.hook, bot.token)
    crowd.kill_after = random.Random(21).randint(PROCESS_PEOPLE * 2, PROCESS_PEOPLE * 4)
    try:
        await bot.start()
        async with aiohttp.ClientSession() as session:
            walkers = [asyncio.create_task(crowd.walk(session, c)) for c in chats]
            await asyncio.wait_for(crowd.enough.wait(), 60)
            await bot.kill()
            killed_at = asyncio.get_running_loop().time()
            before = {c: list(fake.texts(c)) for c in chats}
            for task in walkers:
                task.cancel()
            await asyncio.gather(*walkers, return_exceptions=True)
        acked = dict(crowd.acked)
        assert sum(acked.values()) >= crowd.kill_after - PROCESS_PEOPLE  # a real burst
        owed = [c for c, last in acked.items() if WALK[last][1] not in "".join(before[c])]
        assert owed, "the kill came when no reply was owed: the test would prove nothing"

        # Everything acknowledged is in the database (read with the bot dead).
        assert_each_acked_answer_stored(acked, await stored_answers(url, chats))

        # Restarted, the bot sends everything it owed: at once, or what the dead instance
        # had claimed (leased) once the lease runs out. Until then a person's later
        # replies wait behind it too, so the crowd carries on only after.
        await bot.start()
        lease = LEASE.total_seconds()
        await until_nothing_owed(url, lease + 20)
        waited = asyncio.get_running_loop().time() - killed_at
        print(f"owed replies: {len(owed)}, the outbox empty {waited:.1f} s after the kill")
        for chat_id in owed:
            assert WALK[acked[chat_id]][1] in "".join(fake.texts(chat_id)), chat_id
        async with aiohttp.ClientSession() as session:
            await asyncio.wait_for(asyncio.gather(*(crowd.walk(session, c) for c in chats)), 60)
        for chat_id in chats:
            await fake.wait_until(lambda c=chat_id: any("Thank you" in t for t in fake.texts(c)))
        await bot.stop()
    finally:
        if bot.running:
            await bot.kill()

    stored = await stored_answers(url, chats)
    assert_each_acked_answer_stored(crowd.acked, stored)
    assert all(stored[c][0].status == "finished" for c in chats)
    assert_sent_once_but_in_flight(fake, chats, before)


# 4. The real process: the Bot API failing for a while ----------------------------------


async def test_bot_api_failing_for_a_while_on_postgres_delivers_everything_once(
    api: BotAPI, url: str, tmp_path: Path
) -> None:
    await upgrade(tmp_path, url)
    bot = Bot(api, tmp_path / "data", url)
    chats = [1300 + n for n in range(PROCESS_PEOPLE)]
    crowd = Crowd(api, bot.hook, bot.token)
    crowd.kill_after = random.Random(22).randint(PROCESS_PEOPLE * 2, PROCESS_PEOPLE * 3)
    try:
        await bot.start()
        async with aiohttp.ClientSession() as session:
            walkers = [asyncio.create_task(crowd.walk(session, c)) for c in chats]
            await asyncio.wait_for(crowd.enough.wait(), 60)
            api.down = True
            # Down until each person's owed reply has been refused, and then some.
            await api.wait_until(lambda: api.refused >= 2 * PROCESS_PEOPLE, 30)
            api.down = False
            # The crowd waits for replies a while; those who gave up carry on now.
            await asyncio.gather(*walkers, return_exceptions=True)
            await asyncio.wait_for(asyncio.gather(*(crowd.walk(session, c) for c in chats)), 60)
        for chat_id in chats:
            await api.wait_until(lambda c=chat_id: any("Thank you" in t for t in api.texts(c)))
        await bot.stop()
    finally:
        if bot.running:
            await bot.kill()

    failed = {c.params.get("_failed") and c.method for c in api.calls} - {None, False}
    assert failed, "the Bot API never failed: the test would prove nothing"
    stored = await stored_answers(url, chats)
    assert_each_acked_answer_stored(crowd.acked, stored)
    for chat_id in chats:
        assert stored[chat_id][0].status == "finished"
        texts = api.texts(chat_id)
        for _, marker in WALK:
            # A refused send was not delivered: nothing comes twice, nothing is missing.
            assert sum(marker in t for t in texts) == 1, (chat_id, marker, texts)
