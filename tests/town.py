"""A town for scheduler tests: one database, any number of bot processes on it, a
cohort joined by its code and a weekly schedule; shared by the scheduler, fan-out and
week-after-week tests (the `town` fixture is in conftest)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

from bot.app.build import House, build_house
from bot.conversation.dispatcher import Dispatcher
from bot.delivery.deliverer import Deliverer
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.messages import Inbound
from bot.privacy import Identity
from bot.scheduling.scheduler import Scheduler
from storage.protocol import Storage
from storage.rows import ScheduleRow
from tests.conftest import FakeClock, RecordingChannel, load
from tests.storage_suite import new_storage

PULSE = """
guide: pulse
version: 1
title: Pulse
expires_after: 3d
keep_in_touch: weekly
steps:
  - id: week
    scale: How was your week?
  - id: hope
    ask: One hope for next week?
"""
CODE = "WEEKLY1"
MONDAY_9_CHICAGO = "0 9 * * MON"
SECRET = b"scheduler-test-secret"


class Town:
    """One database; any number of bot processes (dispatcher + scheduler) on it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.clock = FakeClock(datetime(2026, 10, 16, 12, 0, tzinfo=UTC))  # a Friday
        self.library = GuideLibrary()
        self.library.add(load(PULSE, "pulse.yaml"))
        self.identity = Identity(SECRET)
        self.channel = RecordingChannel()
        self.ids = itertools.count(1)
        self.storages: list[Storage] = []
        self.houses: list[House] = []

    async def process(self) -> tuple[Dispatcher, Scheduler, Deliverer]:
        storage = new_storage(self.db)  # the run's backend (tests/storage_suite.py)
        await storage.open()
        self.storages.append(storage)
        house = build_house(
            storage=storage, library=self.library, identity=self.identity,
            phrases=load_phrasebook(), clock=self.clock,
            new_id=lambda: f"r{next(self.ids)}", default_tz="America/Chicago",
        )  # fmt: skip
        self.houses.append(house)
        dispatcher = house.dispatcher
        deliverer = Deliverer(storage, self.identity, {"terminal": self.channel}, self.clock)
        return dispatcher, Scheduler(storage, dispatcher, self.library, self.clock), deliverer

    async def close(self) -> None:
        for storage in self.storages:
            await storage.close()

    async def say(self, dispatcher: Dispatcher, who: str, text: str) -> None:
        await dispatcher.handle(Inbound("terminal", who, who, text))

    def texts(self, who: str) -> list[str]:
        return self.channel.texts(who)

    def prompts(self, who: str) -> int:
        return sum("How was your week" in t for t in self.texts(who))


async def setup(
    town: Town, people: dict[str, str | None], guide: str = "pulse"
) -> tuple[Dispatcher, Scheduler, Deliverer]:
    dispatcher, scheduler, deliverer = await town.process()
    storage = dispatcher.storage
    await storage.save_cohort("weekly", CODE, town.clock())
    await storage.save_schedule(
        ScheduleRow(
            "s1",
            guide,
            "weekly",
            MONDAY_9_CHICAGO,
            "America/Chicago",
            False,
            town.clock(),
            town.clock(),
        )
    )
    for who, tz in people.items():
        await town.say(dispatcher, who, f"/join {CODE}")
        if tz:
            await town.say(dispatcher, who, f"/timezone {tz}")
    await deliverer.drain("terminal")
    return dispatcher, scheduler, deliverer


async def at(town: Town, moment: datetime, scheduler: Scheduler, deliverer: Deliverer) -> None:
    town.clock.now = moment.astimezone(UTC)
    await scheduler.tick()
    await deliverer.drain("terminal")
