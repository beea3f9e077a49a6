"""Shared fixtures: a fake clock, the real phrasebook, storage in a temporary folder.

Storage is the run's backend (`KT_TEST_BACKEND`, see tests/storage_suite.py): SQLite
in the test's folder, or a PostgreSQL schema of the test's own, dropped after it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from hypothesis import settings

from bot.app.build import build_house
from bot.delivery.channel import Capabilities, SendResult, Sent
from bot.delivery.deliverer import Deliverer
from bot.flows.engine import Flow
from bot.flows.loader import LoadedGuide, parse_guide
from bot.flows.phrases import Phrasebook
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.messages import Inbound, Outbound
from bot.privacy import Identity
from storage.protocol import Storage
from tests.fake_slack import FakeSlack
from tests.fake_telegram import FakeTelegram

# No property test fails for being slow: these machines are shared and noisy, and a
# deadline is a timed assertion (speed is measured by the benchmarks instead).
settings.register_profile("kitchen-table", deadline=None)
# CI draws the same examples on every run (a failure there is a change's, not a new
# draw's); developers' runs keep exploring, and what they find becomes an @example.
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "kitchen-table"))

if TYPE_CHECKING:
    from tests.town import Town

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "guides"
DATA = Path(__file__).resolve().parent / "data"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class RecordingChannel:
    """A channel that keeps what it was asked to send, per address."""

    name = "terminal"
    capabilities = Capabilities(edit=True, buttons=True, files=True, groups=True)

    def __init__(self) -> None:
        self.sent: list[tuple[str, Outbound]] = []

    async def send(self, address: str, message: Outbound) -> SendResult:
        self.sent.append((address, message))
        return Sent()

    def texts(self, address: str | None = None) -> list[str]:
        return [m.text for a, m in self.sent if address is None or a == address]


@pytest.fixture(scope="session")
def phrases() -> Phrasebook:
    return load_phrasebook()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def load(text: str, name: str = "test.yaml") -> LoadedGuide:
    loaded = parse_guide(text, name)
    assert loaded.guide is not None, [str(p) for p in loaded.problems]
    return loaded


def flow_for(text: str, phrases: Phrasebook, **options: int) -> Flow:
    guide = load(text).guide
    assert guide is not None
    return Flow(guide, phrases, **options)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[Storage]:
    """An open store of the run's backend."""
    await need(RUN_BACKEND)
    store = new_storage(tmp_path / "kt.db")
    await store.open()
    yield store
    await store.close()
    await drop_schemas()


@pytest.fixture
async def town(tmp_path: Path) -> AsyncIterator[Town]:
    """A database with processes, a cohort and a weekly schedule (see tests/town.py)."""
    from tests.town import Town

    place = Town(tmp_path / "kt.db")
    yield place
    await place.close()


# The storage protocol's own suites (tests/test_storage*.py) run against each backend
# of the suite (see tests/storage_suite.py); the coverage check there goes last.
from tests.storage_suite import (  # noqa: E402
    BACKENDS,
    MARKED_TEST_UNDER_WAY,
    RUN_BACKEND,
    SAME_ON_EVERY_BACKEND,
    SERVED,
    SUITE_BACKENDS,
    Recording,
    asking_for_the_run_store,
    drop_schemas,
    need,
    new_storage,
    pytest_collection_modifyitems,  # noqa: F401 (a hook: pytest finds it here)
)


@pytest.fixture(autouse=True)
def _same_on_every_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked `same_on_every_backend` fails if it asks for the run's store (autouse
    fixtures are set up first, so this is in place before any store fixture)."""
    marked = request.node.get_closest_marker(SAME_ON_EVERY_BACKEND) is not None
    if marked:
        MARKED_TEST_UNDER_WAY.append(request.node.nodeid)
    yield
    MARKED_TEST_UNDER_WAY.clear()


@pytest.fixture(params=SUITE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    asking_for_the_run_store()
    name: str = request.param
    await need(name)
    backend = BACKENDS[name](tmp_path / "suite.db")
    SERVED[name] += 1
    recorded = cast(Storage, Recording(backend, name))
    await recorded.open()
    yield recorded
    await recorded.close()
    await drop_schemas()


if RUN_BACKEND == "postgres":

    @pytest.fixture(autouse=True)
    async def _drop_test_schemas() -> AsyncIterator[None]:
        """Drop the schemas of stores a test made itself (tests/town.py, new_storage),
        once its fixtures have closed them."""
        yield
        await drop_schemas()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sqlite_only(reason): tests something SQLite alone has (its file, backups, its"
        " faults, merged writes); skipped when the run's backend is PostgreSQL",
    )
    config.addinivalue_line(
        "markers", "postgres: needs PostgreSQL (KT_TEST_DATABASE_URL, tests/storage_suite.py)"
    )
    config.addinivalue_line(
        "markers",
        f"{SAME_ON_EVERY_BACKEND}: never uses a store of the run's backend; make test's two"
        " runs share these tests (tests/storage_suite.py)",
    )


class Harness:
    """A dispatcher, storage and recording channel wired as the app wires them."""

    def __init__(
        self, storage: Storage, library: GuideLibrary, clock: FakeClock, phrases: Phrasebook
    ) -> None:
        self.storage = storage
        self.library = library
        self.clock = clock
        self.identity = Identity(b"test-secret-test-secret")
        self.channel = RecordingChannel()
        self.deliverer = Deliverer(storage, self.identity, {"terminal": self.channel}, clock)
        ids = itertools.count(1)
        self.house = build_house(
            storage=storage,
            library=library,
            identity=self.identity,
            phrases=phrases,
            clock=clock,
            new_id=lambda: f"run{next(ids)}",
            max_answer_chars=200,
        )
        self.dispatcher = self.house.dispatcher

    async def say(self, text: str, user: str = "ana", **extra: object) -> list[Outbound]:
        before = len(self.channel.sent)
        await self.dispatcher.handle(Inbound("terminal", user, user, text, **extra))  # type: ignore[arg-type]
        await self.dispatcher.settle()
        await self.deliverer.drain("terminal")
        return [m for _, m in self.channel.sent[before:]]

    def pseudonym(self, user: str = "ana") -> str:
        return self.identity.pseudonym("terminal", user)


@pytest.fixture
def make_harness(storage: Storage, clock: FakeClock, phrases: Phrasebook):  # type: ignore[no-untyped-def]
    def make(*guide_texts: str) -> Harness:
        library = GuideLibrary()
        for index, text in enumerate(guide_texts):
            library.add(load(text, f"guide{index}.yaml"))
        return Harness(storage, library, clock, phrases)

    return make


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlack]:
    """A fake Slack Web API (and Socket Mode websocket) on 127.0.0.1."""
    server = FakeSlack()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API server on 127.0.0.1, for as long as the test runs."""
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-transcripts",
        action="store_true",
        help="rewrite the expected messages and answers in tests/transcripts/",
    )
