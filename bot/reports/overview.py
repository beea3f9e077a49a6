"""The console's overview: per guide, who took part, finished and stopped in the last
week and before it; and the gatherings still open.

Read side only, from `ReportStore` and `GatheringStore`. Every count of people keeps the
minimum-group rule (`bot/reports/min_group.py`): 1 to k-1 people show as "fewer than k"
(`None` here; the template words it). "Stopped" counts runs ended before the end,
by `/stop` or by running out of time.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.flows.text import localize
from bot.library import GuideLibrary
from bot.reports import min_group as rule
from storage.rows import GatheringRow, PeopleCount, RunCount, RunRow

WEEK = timedelta(days=7)
EVER = datetime(2000, 1, 1, tzinfo=UTC)  # "before": from before any answer was kept
STOPPED = ("stopped", "expired")


class OverviewStore(Protocol):
    """What the overview reads: a few of `ReportStore`'s and `GatheringStore`'s methods."""

    async def run_counts(self, since: datetime, until: datetime) -> list[RunCount]: ...

    async def people_counts(self, since: datetime, until: datetime) -> list[PeopleCount]: ...

    async def open_gatherings(self) -> list[GatheringRow]: ...

    async def gathering_runs(self, gathering_id: str) -> list[RunRow]: ...


@dataclass(frozen=True)
class Figures:
    """One period's counts of people, as they may be shown (None: fewer than k)."""

    took_part: int | None
    finished: int | None
    stopped: int | None


@dataclass(frozen=True)
class GuideLine:
    id: str
    title: str
    week: Figures
    before: Figures


@dataclass(frozen=True)
class LiveGathering:
    code: str
    title: str  # as its facilitator named it: participant-free, but escaped where shown
    guide_title: str
    launched_at: datetime
    paced: bool
    joined: int | None  # people, by the rule
    facilitator: str  # pseudonym: who may see it (facilitators see their own)
    id: str  # for a link to its own page; names no one


@dataclass(frozen=True)
class Overview:
    now: datetime
    min_group: int
    guides: list[GuideLine]
    gatherings: list[LiveGathering]


def _figures(runs: list[RunCount], people: list[PeopleCount], k: int) -> dict[str, Figures]:
    finished: dict[str, int] = defaultdict(int)
    stopped: dict[str, int] = defaultdict(int)
    for row in runs:
        if row.status == "finished":
            finished[row.guide_id] += row.people
        elif row.status in STOPPED:
            stopped[row.guide_id] += row.people
    took_part = {row.guide_id: row.people for row in people}
    guides = set(took_part) | set(finished) | set(stopped)
    return {
        g: Figures(rule.count(took_part.get(g, 0), k), rule.count(finished[g], k),
                   rule.count(stopped[g], k))
        for g in guides
    }  # fmt: skip


async def build_overview(
    storage: OverviewStore,
    library: GuideLibrary,
    now: datetime,
    *,
    min_group: int,
    language: str = "en",
    facilitator: str | None = None,
) -> Overview:
    """The overview as of `now`; `facilitator`: only their own gatherings, and no guide
    figures (a facilitator sees their own gatherings, coordinators everything)."""
    since = now - WEEK
    live = await storage.open_gatherings()
    if facilitator is not None:
        live = [g for g in live if g.facilitator == facilitator]
    joined = await asyncio.gather(*(storage.gathering_runs(g.id) for g in live))
    titles = {
        loaded.guide.id: localize(loaded.guide.title, language, loaded.guide.default_language)
        for loaded in library.all()
        if loaded.guide is not None
    }
    gatherings = [
        LiveGathering(g.code, g.title, titles.get(g.guide_id, g.guide_id), g.created_at,
                      g.paced, rule.count(len({r.participant for r in runs}), min_group),
                      g.facilitator, g.id)
        for g, runs in zip(live, joined, strict=True)
    ]  # fmt: skip
    if facilitator is not None:
        return Overview(now, min_group, [], gatherings)
    runs_week, people_week, runs_before, people_before = await asyncio.gather(
        storage.run_counts(since, now), storage.people_counts(since, now),
        storage.run_counts(EVER, since), storage.people_counts(EVER, since),
    )  # fmt: skip
    week = _figures(runs_week, people_week, min_group)
    before = _figures(runs_before, people_before, min_group)
    nobody = Figures(0, 0, 0)
    guides = [
        GuideLine(guide_id, title, week.get(guide_id, nobody), before.get(guide_id, nobody))
        for guide_id, title in sorted(titles.items(), key=lambda item: item[1].casefold())
    ]
    return Overview(now, min_group, guides, gatherings)
