"""The Overview's figures (bot/reports/overview.py) on the run's storage backend: people who
took part, finished and stopped in the last week and before, by the minimum group; the
gatherings still open, a facilitator's own only."""

from __future__ import annotations

from datetime import timedelta

from bot.library import GuideLibrary
from bot.reports.overview import build_overview
from storage.protocol import Storage
from storage.rows import Commit, GatheringRow, RunRow
from tests.conftest import GUIDES, START


def run(run_id: str, person: str, status: str, days_ago: float, gathering: str | None = None):
    at = START - timedelta(days=days_ago)
    return RunRow(run_id, person, "weekly-checkin", 1, "h", status, "{}", at, at, gathering)


def gathering(gathering_id: str, code: str, facilitator: str) -> GatheringRow:
    return GatheringRow(
        gathering_id, code, "weekly-checkin", f"Supper {code}", facilitator, "telegram",
        b"group", b"dm", False, 0, "open", START, START + timedelta(days=1),
    )  # fmt: skip


async def test_each_guide_this_week_and_before_by_the_minimum_group(storage: Storage):
    runs = [run(f"a{i}", f"p{i}", "finished", 1) for i in range(6)]
    runs += [run(f"b{i}", f"q{i}", "stopped", 2) for i in range(2)]
    runs += [run(f"c{i}", f"r{i}", "expired", 20) for i in range(5)]
    await storage.commit(Commit(runs=runs))
    library = GuideLibrary.from_paths([GUIDES])
    found = await build_overview(storage, library, START, min_group=5)
    line = next(g for g in found.guides if g.id == "weekly-checkin")
    assert (line.week.took_part, line.week.finished, line.week.stopped) == (8, 6, None)
    assert (line.before.took_part, line.before.finished, line.before.stopped) == (5, 0, 5)
    quiet = next(g for g in found.guides if g.id == "changing-work")
    assert quiet.week.took_part == 0 and quiet.before.took_part == 0
    spanish = await build_overview(storage, library, START, min_group=5, language="es")
    assert "Conversación semanal" in [g.title for g in spanish.guides]


async def test_live_gatherings_and_a_facilitators_own(storage: Storage):
    await storage.commit(Commit(gathering=gathering("g1", "AAAAAA", "fay")))
    await storage.commit(Commit(gathering=gathering("g2", "BBBBBB", "fred")))
    await storage.commit(Commit(runs=[run(f"j{i}", f"p{i}", "active", 0, "g1") for i in range(5)]))
    await storage.commit(Commit(runs=[run("k1", "p9", "active", 0, "g2")]))
    library = GuideLibrary.from_paths([GUIDES])
    everything = await build_overview(storage, library, START, min_group=5)
    joined = {g.code: g.joined for g in everything.gatherings}
    assert joined == {"AAAAAA": 5, "BBBBBB": None}  # one person: "fewer than 5"
    theirs = await build_overview(storage, library, START, min_group=5, facilitator="fay")
    assert [g.code for g in theirs.gatherings] == ["AAAAAA"]
    assert theirs.guides == []  # a facilitator sees their gatherings, not every guide
