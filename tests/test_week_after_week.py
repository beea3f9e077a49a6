"""A weekly check-in, week after week, to people who joined a cohort by its code: last
week's run, finished or not, must never cost them this week's prompt or their place."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

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
