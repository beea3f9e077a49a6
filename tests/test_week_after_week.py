"""A weekly check-in, week after week, to people who joined a cohort by its code: last
week's run, finished or not, must never cost them this week's prompt or their place."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage.rows import Commit, RunRow
from storage.sqlite import SQLiteStorage
from tests.conftest import load
from tests.town import Town, at, setup

CHECKIN = """
guide: checkin
version: 1
title: Check-in
expires_after: 3d
consent: We keep your answers, never your name.
steps:
  - id: week
    scale: How was your week?
  - id: hope
    ask: One hope for next week?
"""
CHICAGO = ZoneInfo("America/Chicago")
MONDAYS = [datetime(2026, 10, 19, 9, 0, tzinfo=CHICAGO) + timedelta(days=7 * n) for n in range(3)]


def asked_consent(town: Town, who: str) -> int:
    return sum(m.step == "_consent" for a, m in town.channel.sent if a == who)


async def test_someone_who_let_last_weeks_invitation_lapse_is_asked_again_every_week(
    town: Town,
):
    town.library.add(load(CHECKIN, "checkin.yaml"))
    dispatcher, scheduler, deliverer = await setup(town, {"quiet": None}, guide="checkin")
    storage = dispatcher.storage
    pid = town.identity.pseudonym("terminal", "quiet")
    for week, monday in enumerate(MONDAYS, start=1):
        await at(town, monday, scheduler, deliverer)
        assert asked_consent(town, "quiet") == week
        assert await storage.participant(pid) is not None
        assert await storage.cohorts_of(pid) == ["weekly"]
        assert not any("closed" in t for t in town.texts("quiet"))
    # Nothing from the lapsed invitations is kept: only this week's, still open.
    assert [r.status for r in await storage.open_runs(pid)] == ["consent"]
    assert await storage.count_runs(pid) == 1
    await town.say(dispatcher, "quiet", "yes")
    await town.say(dispatcher, "quiet", "4")
    await deliverer.drain("terminal")
    assert town.texts("quiet")[-1] == "One hope for next week?"


async def test_a_member_who_says_no_thanks_this_week_is_asked_next_week(town: Town):
    town.library.add(load(CHECKIN, "checkin.yaml"))
    dispatcher, scheduler, deliverer = await setup(town, {"busy": None}, guide="checkin")
    storage = dispatcher.storage
    pid = town.identity.pseudonym("terminal", "busy")
    await at(town, MONDAYS[0], scheduler, deliverer)
    await town.say(dispatcher, "busy", "no")
    await deliverer.drain("terminal")
    assert "Nothing you said has been kept" in town.texts("busy")[-1]
    assert await storage.count_runs(pid) == 0
    assert [c.given for c in await storage.consents(pid)] == [False]
    person = await storage.participant(pid)
    assert person is not None and person.current_run is None  # still a member
    await at(town, MONDAYS[1], scheduler, deliverer)
    assert asked_consent(town, "busy") == 2
    await town.say(dispatcher, "busy", "no")
    await town.say(dispatcher, "busy", "/leave")
    assert await storage.participant(pid) is None  # nothing left to keep them for


async def test_someone_who_stopped_half_way_last_week_gets_this_weeks_and_its_reminder(
    town: Town,
):
    town.library.add(load(CHECKIN, "checkin.yaml"))
    dispatcher, scheduler, deliverer = await setup(town, {"half": None}, guide="checkin")
    await at(town, MONDAYS[0], scheduler, deliverer)
    for text in ("yes", "3"):
        await town.say(dispatcher, "half", text)
    await at(town, MONDAYS[1], scheduler, deliverer)
    week_two = town.texts("half")[-2:]
    assert week_two[0] == "Check-in"  # this week's, with no word about last week's
    assert not any("closed" in t for t in town.texts("half"))
    assert asked_consent(town, "half") == 2
    await at(town, MONDAYS[1] + timedelta(days=1), scheduler, deliverer)
    assert sum("reminder" in t for t in town.texts("half")) == 1
    assert asked_consent(town, "half") == 3  # the reminder asks again


@pytest.mark.parametrize("chunk", [1, 10])
async def test_the_prompt_to_a_whole_cohort_carries_on_or_ends_last_weeks_runs_as_one_does(
    town: Town, chunk: int
):
    # In pairs: the first of each pair prompted on their own (`Dispatcher.prompt`), the
    # second with the whole cohort (`prompt_many`); each pair must end up the same.
    town.library.add(load(CHECKIN, "checkin.yaml"))
    pairs = ["lapsed", "halfway", "fresh", "started", "new"]
    people = {f"{who}{n}": None for who in pairs for n in (1, 2)}
    dispatcher, _, deliverer = await setup(town, people, guide="checkin")
    dispatcher.fanout.chunk = chunk
    storage = dispatcher.storage
    monday = MONDAYS[1]
    town.clock.now = (monday - timedelta(days=4)).astimezone(town.clock.now.tzinfo)
    for n in (1, 2):
        await town.say(dispatcher, f"lapsed{n}", "/start checkin")  # never agreed: expires
        for text in ("/start checkin", "yes", "3"):  # agreed and answered one: expires
            await town.say(dispatcher, f"halfway{n}", text)
    town.clock.now = (monday - timedelta(days=1)).astimezone(town.clock.now.tzinfo)
    for n in (1, 2):
        for text in ("/start checkin", "yes", "5"):  # still under way on Monday
            await town.say(dispatcher, f"fresh{n}", text)
        await town.say(dispatcher, f"started{n}", "/start checkin")  # not agreed yet
    await deliverer.drain("terminal")
    before = len(town.channel.sent)
    old = {
        who: {run.id for run in await storage.open_runs(town.identity.pseudonym("terminal", who))}
        for who in people
    }
    town.clock.now = monday.astimezone(town.clock.now.tzinfo)
    due = monday.astimezone(town.clock.now.tzinfo).isoformat()

    def prompt_key(who: str) -> str:
        return f"prompt:s1:{due}:{town.identity.pseudonym('terminal', who)}"

    for who in pairs:
        pid = town.identity.pseudonym("terminal", f"{who}1")
        assert await dispatcher.prompt(pid, prompt_key(f"{who}1"), "s1", "checkin")
    many = [(town.identity.pseudonym("terminal", f"{w}2"), prompt_key(f"{w}2")) for w in pairs]
    assert await dispatcher.prompt_many(many, "s1", "checkin", None) == len(pairs)
    await deliverer.drain("terminal")
    runs_of = {d.participant: d.run_id for d in await storage.deliveries("s1")}

    async def after(who: str) -> object:
        pid = town.identity.pseudonym("terminal", who)
        person = await storage.participant(pid)
        assert person is not None and person.current_run == runs_of[pid]
        names = dict.fromkeys(old[who], "OLD") | {runs_of[pid]: "NEW"}

        def same(text: str) -> str:  # run ids differ from person to person
            return re.sub(r'"(r\d+)"', lambda m: f'"{names.get(m[1], m[1])}"', text)

        said = [m.model_dump_json() for a, m in town.channel.sent[before:] if a == who]
        return (
            await storage.count_runs(pid),
            [(r.status, same(r.state)) for r in await storage.open_runs(pid)],
            [c.given for c in await storage.consents(pid)],
            [same(text) for text in said],
        )

    for who in pairs:
        assert await after(f"{who}1") == await after(f"{who}2"), who
    # And what each was told: welcomed back, or (the old one expired) just asked.
    assert "Welcome back" in town.texts("fresh2")[-2]
    assert town.texts("fresh2")[-1] == "One hope for next week?"
    assert town.texts("started2")[-1] == town.texts("new2")[-1]  # the consent question


async def test_one_persons_unreadable_run_does_not_stop_everyone_elses_prompt(
    town: Town, caplog: pytest.LogCaptureFixture
):
    town.library.add(load(CHECKIN, "checkin.yaml"))
    people = {f"p{n}": None for n in range(4)}
    dispatcher, scheduler, deliverer = await setup(town, people, guide="checkin")
    broken = town.identity.pseudonym("terminal", "p1")
    when = town.clock()
    lost = RunRow("r-lost", broken, "checkin", 1, "no-such-hash", "active", "{}", when, when)
    await dispatcher.storage.commit(Commit(runs=[lost]))  # its guide's text is gone
    await at(town, MONDAYS[0], scheduler, deliverer)
    assert [asked_consent(town, who) for who in people] == [1, 0, 1, 1]
    assert "could not be sent" in caplog.text


async def test_one_persons_damaged_row_does_not_stop_everyone_elses_prompt(
    town: Town, caplog: pytest.LogCaptureFixture
):
    town.library.add(load(CHECKIN, "checkin.yaml"))
    people = {f"p{n}": None for n in range(4)}
    dispatcher, scheduler, deliverer = await setup(town, people, guide="checkin")
    await at(town, MONDAYS[0], scheduler, deliverer)
    damaged = town.identity.pseudonym("terminal", "p2")
    storage = dispatcher.storage
    assert isinstance(storage, SQLiteStorage)
    with sqlite3.connect(storage.path) as db:  # as a bad disk or a bad hand might leave it
        db.execute("UPDATE runs SET updated_at = 'garbage' WHERE participant = ?", (damaged,))
    db.close()
    await at(town, MONDAYS[1], scheduler, deliverer)
    assert [asked_consent(town, who) for who in people] == [2, 2, 1, 2]
    assert "could not be sent" in caplog.text
