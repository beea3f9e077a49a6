"""Every scheduled job runs once however many instances tick: two bot processes on one
database (two stores on one SQLite file, or on one PostgreSQL schema) ticking at the
same moment prompt each person once per occurrence, remind them once, send each
coordinator one weekly digest and write its page once, and blank old free text once
a day; and a job whose instance died part-way is finished by another, not dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import tests.town
from bot.delivery.deliverer import Deliverer
from bot.messages import Outbound
from bot.scheduling.scheduler import DIGEST, LEASE, RETENTION, Scheduler
from tests.storage_suite import BACKENDS, SUITE_BACKENDS, drop_schemas, need
from tests.town import Town, at, setup

CHICAGO = ZoneInfo("America/Chicago")
MONDAY_9 = datetime(2026, 10, 19, 9, 0, tzinfo=CHICAGO)


@pytest.fixture(params=SUITE_BACKENDS)
async def town(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Town]:
    """The scheduler tests' town, on each backend: its processes share one database."""
    await need(request.param)
    monkeypatch.setattr(tests.town, "new_storage", BACKENDS[request.param])
    place = Town(tmp_path / "kt.db")
    yield place
    await place.close()
    await drop_schemas()


class Counting:
    """A process's storage, counting the calls a job makes (to see it ran once)."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._storage, name)
        if name != "expire_texts":
            return found

        async def counted(*args: Any) -> Any:
            self.calls.append(name)
            return await found(*args)

        return counted


class Digests:
    """The weekly digest's maker (WeeklyDigests), counting the digests it made."""

    def __init__(self, recipients: list[str]) -> None:
        self._recipients = recipients
        self.made = 0

    async def message(self, language: str, since: datetime, until: datetime) -> Outbound:
        self.made += 1
        return Outbound(text=f"Digest until {until:%Y-%m-%d}")

    async def recipients(self) -> list[str]:
        return self._recipients


async def deliver(*deliverers: Deliverer) -> None:
    """Each instance delivers what it owes: a turn's replies go out from the instance
    that took it, and the rest from whichever claims them first."""
    for deliverer in deliverers:
        await deliverer.drain("terminal")


async def test_an_occurrence_prompts_each_person_once(town: Town):
    people = {f"p{n}": None for n in range(12)}
    _, first, deliverer = await setup(town, people)
    _, second, second_deliverer = await town.process()
    town.clock.now = MONDAY_9.astimezone(UTC)
    reports = await asyncio.gather(first.tick(), second.tick(), first.tick(), second.tick())
    await deliver(deliverer, second_deliverer)
    assert sum(r.prompted for r in reports) == 12
    assert [town.prompts(who) for who in people] == [1] * 12
    assert len(await first.storage.deliveries("s1")) == 12
    assert [o.status for o in await second.storage.occurrences("s1")] == ["sent"]


async def test_a_reminder_goes_once(town: Town):
    people = {f"p{n}": None for n in range(6)}
    _, first, deliverer = await setup(town, people)
    _, second, second_deliverer = await town.process()
    await at(town, MONDAY_9, first, deliverer)
    town.clock.now = (MONDAY_9 + timedelta(days=1, minutes=1)).astimezone(UTC)
    reports = await asyncio.gather(first.tick(), second.tick(), second.tick())
    await deliver(deliverer, second_deliverer)
    assert sum(r.reminded for r in reports) == 6
    for who in people:
        assert len([t for t in town.texts(who) if "reminder" in t]) == 1, who


async def test_a_weekly_digest_goes_to_each_coordinator_once_and_is_made_by_one_instance(
    town: Town,
):
    people = {"coord": None, "other": None}
    _, first, deliverer = await setup(town, people)
    _, second, second_deliverer = await town.process()
    coordinators = [town.identity.pseudonym("terminal", who) for who in people]
    made = [Digests(coordinators), Digests(coordinators)]
    schedulers = [
        Scheduler(
            process.storage,
            process.dispatcher,
            town.library,
            town.clock,
            digest_cron="0 8 * * MON",
            timezone="UTC",
            digests=digests,
        )
        for process, digests in zip((first, second), made, strict=True)
    ]
    await asyncio.gather(*(s.tick() for s in schedulers))  # starts the clock on digests
    town.clock.now = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)
    reports = await asyncio.gather(*(s.tick() for s in schedulers), schedulers[0].tick())
    await deliver(deliverer, second_deliverer)
    assert sum(r.digests for r in reports) == 2
    assert sorted(d.made for d in made) == [0, 2]  # one instance made both copies
    for who in people:
        assert town.texts(who).count("Digest until 2026-10-19") == 1
    # Sent once, as every instance's console lists it.
    sent = await second.storage.occurrences(DIGEST)
    assert [(o.due_at, o.status) for o in sent] == [(town.clock.now, "sent")]


async def test_a_digest_held_by_an_instance_that_died_is_sent_by_another(town: Town):
    people = {"coord": None}
    _, second, deliverer = await setup(town, people)
    digests = Digests([town.identity.pseudonym("terminal", "coord")])
    survivor = Scheduler(
        second.storage, second.dispatcher, town.library, town.clock,
        digest_cron="0 8 * * MON", timezone="UTC", digests=digests,
    )  # fmt: skip
    await survivor.tick()
    due = datetime(2026, 10, 19, 8, 0, tzinfo=UTC)
    town.clock.now = due
    # Another instance claimed it this very minute, then died before sending it.
    assert await survivor.storage.claim_occurrence(DIGEST, "UTC", due, due, LEASE) == "claimed"
    assert (await survivor.tick()).digests == 0  # still theirs
    town.clock.advance(minutes=5)
    assert (await survivor.tick()).digests == 0
    town.clock.advance(minutes=6)  # their lease has run out
    assert (await survivor.tick()).digests == 1
    assert (await survivor.tick()).digests == 0
    await deliverer.drain("terminal")
    assert town.texts("coord").count("Digest until 2026-10-19") == 1


async def test_old_free_text_is_blanked_once_a_day_by_one_instance(town: Town):
    first_dispatcher, first, deliverer = await setup(town, {"ana": None, "ben": None})
    _, second, _ = await town.process()
    processes = [Counting(first.storage), Counting(second.storage)]
    schedulers = [
        Scheduler(counting, process.dispatcher, town.library, town.clock, retention_days=30)  # type: ignore[arg-type]
        for counting, process in zip(processes, (first, second), strict=True)
    ]
    await at(town, MONDAY_9, schedulers[0], deliverer)
    for who in ("ana", "ben"):
        await town.say(first_dispatcher, who, "4")
        await town.say(first_dispatcher, who, "More time with family")
    for counting in processes:
        counting.calls.clear()  # the day of the prompt had its blanking too (of nothing)
    town.clock.advance(days=40)
    reports = await asyncio.gather(*(s.tick() for s in schedulers), schedulers[1].tick())
    assert sum(r.expired for r in reports) == 2
    assert sum(len(p.calls) for p in processes) == 1
    town.clock.advance(hours=23 - town.clock.now.hour)  # later the same day (UTC)
    await asyncio.gather(*(s.tick() for s in schedulers))
    assert sum(len(p.calls) for p in processes) == 1
    town.clock.advance(hours=2)  # the next day: again, by one of them
    await asyncio.gather(*(s.tick() for s in schedulers))
    assert sum(len(p.calls) for p in processes) == 2
    days = await processes[0].occurrences(RETENTION)
    assert [(f"{o.due_at.astimezone(UTC):%m-%d}", o.status) for o in days] == [
        ("10-19", "sent"), ("11-28", "sent"), ("11-29", "sent"),
    ]  # fmt: skip


async def test_two_first_instances_with_different_secret_keys_cannot_both_start(town: Town):
    """On a new database both read "no secret noted yet", then each noted its own, the
    last unseen: two instances sealed addresses with different keys (found by review)."""
    from bot.app.database import SECRET_CHECK, check_secret
    from bot.config import ConfigError

    await town.process()
    await town.process()
    first, second = town.storages
    both_read = asyncio.Barrier(2)

    def reading_together(storage: Any) -> None:
        read = storage.record
        waited = False

        async def record(*args: Any) -> Any:
            nonlocal waited
            found = await read(*args)
            if args[:2] == SECRET_CHECK and not waited:
                waited = True
                await both_read.wait()  # each has read before either writes
            return found

        storage.record = record

    reading_together(first)
    reading_together(second)
    outcomes = await asyncio.gather(
        check_secret(first, b"secret-one-0123456789", town.clock()),
        check_secret(second, b"secret-two-0123456789", town.clock()),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["ConfigError", "NoneType"]
    refused = next(o for o in outcomes if isinstance(o, ConfigError))
    assert "written with another secret key" in str(refused)
