"""`kitchen-table cohort|schedule`: who gets scheduled check-ins, which guide, and when.

Schedules are rows in our storage, read by the running bot's scheduler on its
next tick (within a minute): nothing needs a restart.

`ScheduleDesk` decides what may be made and how (a cohort's name, a schedule's guide,
cohort, cron line and time zone); the command line below and the console's Cohorts and
schedules page both go through it and only word its answers their own way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from bot.features.cohorts import set_paused
from bot.features.roles import new_code
from bot.flows.guide import GUIDE_ID_PATTERN
from bot.library import GuideLibrary
from bot.scheduling.schedule_time import occurrences, trigger, zone
from storage.protocol import ScheduleStore
from storage.rows import CohortRow, ScheduleRow

# A cohort is named as a guide's keep_in_touch names it: the same rule as guide ids.
COHORT_NAME = re.compile(GUIDE_ID_PATTERN)
COHORT_NAME_LONGEST = 60
CRON_FIELDS = ("minute", "hour", "day", "month", "weekday")


@dataclass(frozen=True)
class Problem:
    """Why a cohort or a schedule can't be made as asked.

    `reason`: bad_name, no_guide, no_cohort, cron_fields (not five fields), cron_field
    (one field can't be read), unknown_tz. `field`: the input it is about (name, guide,
    cohort, cron, tz). `part`: for cron_field, which of CRON_FIELDS; for cron_fields, how
    many fields there were. `value`: what was wrong, as typed. `detail`: the scheduler
    library's own words (English), and `suggestion` a name that would do (bad_name)."""

    reason: str
    field: str
    value: str = ""
    part: str = ""
    detail: str = ""
    suggestion: str = ""


@dataclass(frozen=True)
class Listed:
    """A schedule and the next time it sends (None while paused, or if never again)."""

    schedule: ScheduleRow
    next_at: datetime | None


def cron_problem(cron: str, tz: str) -> Problem | None:
    """What is wrong with a cron line in a time zone, as precisely as can be said."""
    if zone(tz) is None:
        return Problem("unknown_tz", "tz", value=tz, detail=f"unknown time zone {tz!r}")
    try:
        trigger(cron, tz)
    except ValueError as error:
        fields = cron.split()
        if len(fields) != len(CRON_FIELDS):
            return Problem("cron_fields", "cron", cron, str(len(fields)), str(error))
        for index, value in enumerate(fields):  # which field: try each alone
            alone = ["*"] * len(CRON_FIELDS)
            alone[index] = value
            try:
                trigger(" ".join(alone), tz)
            except ValueError:
                return Problem("cron_field", "cron", value, CRON_FIELDS[index], str(error))
        return Problem("cron_field", "cron", cron, "", str(error))
    return None


def upcoming(cron: str, tz: str, now: datetime, count: int = 3) -> list[datetime]:
    """The next `count` times a (valid) cron line fires after `now`, in its time zone,
    looking a year ahead at most."""
    return occurrences(cron, tz, now, now.replace(year=now.year + 1))[:count]


class ScheduleDesk:
    """Cohorts and schedules as an operator or a coordinator makes and changes them."""

    def __init__(
        self,
        storage: ScheduleStore,
        library: GuideLibrary,
        default_tz: str = "UTC",
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:8],
    ) -> None:
        self.storage = storage
        self.library = library
        self.default_tz = default_tz
        self.new_id = new_id

    # Cohorts -------------------------------------------------------------------------

    async def cohorts(self) -> list[CohortRow]:
        return await self.storage.cohorts()

    async def add_cohort(
        self, name: str, now: datetime
    ) -> tuple[CohortRow | None, bool, Problem | None]:
        """(the cohort, whether it was made now, or why not)."""
        if not COHORT_NAME.match(name) or len(name) > COHORT_NAME_LONGEST:
            suggestion = "-".join(re.findall(r"[a-z0-9]+", name.lower()))[:COHORT_NAME_LONGEST]
            return None, False, Problem("bad_name", "name", name, suggestion=suggestion)
        existing = await self.storage.cohort(name)
        if existing is not None:
            return existing, False, None
        code = new_code(7)
        await self.storage.save_cohort(name, code, now)
        return CohortRow(name, code), True, None

    # Schedules -----------------------------------------------------------------------

    async def check(self, guide: str, cohort: str, cron: str, tz: str) -> Problem | None:
        """Why a schedule can't be added as asked; None if it can."""
        loaded = self.library.get(guide)
        if loaded is None or loaded.guide is None:
            return Problem("no_guide", "guide", guide)
        if await self.storage.cohort(cohort) is None:
            return Problem("no_cohort", "cohort", cohort)
        return cron_problem(cron, tz)

    async def add(
        self, guide: str, cohort: str, cron: str, tz: str, now: datetime
    ) -> ScheduleRow | Problem:
        problem = await self.check(guide, cohort, cron, tz)
        if problem is not None:
            return problem
        schedule = ScheduleRow(self.new_id(), guide, cohort, cron, tz, False, now, now)
        await self.storage.save_schedule(schedule)
        return schedule

    @staticmethod
    def upcoming(cron: str, tz: str, now: datetime, count: int = 3) -> list[datetime]:
        """The next `count` times a schedule that passed `check` sends (`upcoming`)."""
        return upcoming(cron, tz, now, count)

    async def listing(self, now: datetime) -> list[Listed]:
        return [
            Listed(s, None if s.paused else next(iter(upcoming(s.cron, s.tz, now, 1)), None))
            for s in await self.storage.schedules()
        ]

    async def find(self, schedule_id: str) -> ScheduleRow | None:
        return next((s for s in await self.storage.schedules() if s.id == schedule_id), None)

    async def set_paused(self, schedule_id: str, paused: bool, now: datetime) -> ScheduleRow | None:
        """Pause or resume; the schedule as it was, or None if there is none."""
        found = await self.find(schedule_id)
        if found is not None:
            await set_paused(self.storage, found, paused, now)
        return found

    async def remove(self, schedule_id: str) -> ScheduleRow | None:
        """Remove it; the schedule as it was, or None if there is none."""
        found = await self.find(schedule_id)
        if found is not None:
            await self.storage.remove_schedule(schedule_id)
        return found


# The command line --------------------------------------------------------------------


async def add_cohort(storage: ScheduleStore, name: str, now: datetime, out: TextIO) -> int:
    cohort, made, problem = await ScheduleDesk(storage, GuideLibrary()).add_cohort(name, now)
    if problem is not None:
        out.write(
            f"A cohort's name is lowercase letters, digits and dashes (as a guide's "
            f"keep_in_touch names it), such as {problem.suggestion or 'riverside'}.\n"
        )
        return 2
    assert cohort is not None
    if not made:
        out.write(f"The cohort {name} already exists; its join code is {cohort.code}.\n")
        return 0
    code = cohort.code
    out.write(
        f"Created the cohort {name}. People join by sending /join {code} to the bot\n"
        f"(in Slack: /kitchen-table join {code}), or through a guide with keep_in_touch: {name}.\n"
    )
    return 0


async def add_schedule(
    storage: ScheduleStore,
    library: GuideLibrary,
    *,
    guide: str,
    cohort: str,
    cron: str,
    tz: str,
    now: datetime,
    out: TextIO,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex[:8],
) -> int:
    added = await ScheduleDesk(storage, library, new_id=new_id).add(guide, cohort, cron, tz, now)
    if isinstance(added, Problem):
        if added.reason == "no_guide":
            out.write(f"There is no guide {guide}. See `kitchen-table guides list`.\n")
        elif added.reason == "no_cohort":
            out.write(f"There is no cohort {cohort}. Create it with `kitchen-table cohort add`.\n")
        else:
            detail = (f"unknown time zone {tz!r} (use a name such as America/Chicago)"
                      if added.reason == "unknown_tz" else added.detail)  # fmt: skip
            out.write(f"That schedule can't be read: {detail}.\n"
                      'Use five fields, e.g. --cron "0 9 * * MON" for nine on Mondays.\n')  # fmt: skip
        return 2
    schedule = added
    out.write(f"Added schedule {schedule.id}: {guide} to {cohort}, {cron} ({tz}).\nNext: ")
    out.write(", ".join(f"{d:%a %d %b %Y %H:%M %Z}" for d in upcoming(cron, tz, now)) + "\n")
    return 0


async def list_cohorts(storage: ScheduleStore, out: TextIO) -> int:
    cohorts = await storage.cohorts()
    if not cohorts:
        out.write("No cohorts yet: add one with `kitchen-table cohort add NAME`.\n")
        return 0
    width = max(len(cohort.name) for cohort in cohorts)
    out.write(f"{'COHORT':<{width}}  JOIN WITH\n")
    for cohort in cohorts:
        out.write(f"{cohort.name:<{width}}  /join {cohort.code}\n")
    return 0


async def list_schedules(storage: ScheduleStore, out: TextIO, now: datetime) -> int:
    listed = await ScheduleDesk(storage, GuideLibrary()).listing(now)
    if not listed:
        out.write("No schedules yet: add one with `kitchen-table schedule add`.\n")
        return 0
    rows = [("ID", "GUIDE -> COHORT", "WHEN", "STATE", "NEXT")]
    for line in listed:
        s = line.schedule
        following = f"{line.next_at:%a %d %b %Y %H:%M %Z}" if line.next_at else "-"
        state = "paused" if s.paused else "active"
        rows.append((s.id, f"{s.guide_id} -> {s.cohort}", f"{s.cron} ({s.tz})", state, following))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")
    return 0


async def change_schedule(
    storage: ScheduleStore, schedule_id: str, action: str, now: datetime, out: TextIO
) -> int:
    desk = ScheduleDesk(storage, GuideLibrary())
    if action == "remove":
        found = await desk.remove(schedule_id)
    else:
        found = await desk.set_paused(schedule_id, action == "pause", now)
    if found is None:
        out.write(f"There is no schedule {schedule_id}. See `kitchen-table schedule list`.\n")
        return 1
    out.write(f"Removed schedule {schedule_id}.\n" if action == "remove"
              else f"Schedule {schedule_id} is now {action}d.\n")  # fmt: skip
    return 0
