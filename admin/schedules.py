"""`kitchen-table cohort|schedule`: who gets scheduled check-ins, which guide, and when.

Schedules are rows in our storage, read by the running bot's scheduler on its
next tick (within a minute): nothing needs a restart.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from bot.features.cohorts import set_paused
from bot.features.roles import new_code
from bot.flows.guide import GUIDE_ID_PATTERN
from bot.library import GuideLibrary
from bot.scheduling.schedule_time import occurrences, trigger
from storage.protocol import ScheduleStore
from storage.rows import ScheduleRow

# A cohort is named as a guide's keep_in_touch names it: the same rule as guide ids.
COHORT_NAME = re.compile(GUIDE_ID_PATTERN)
COHORT_NAME_LONGEST = 60


async def add_cohort(storage: ScheduleStore, name: str, now: datetime, out: TextIO) -> int:
    if not COHORT_NAME.match(name) or len(name) > COHORT_NAME_LONGEST:
        suggestion = "-".join(re.findall(r"[a-z0-9]+", name.lower()))[:COHORT_NAME_LONGEST]
        out.write(
            f"A cohort's name is lowercase letters, digits and dashes (as a guide's "
            f"keep_in_touch names it), such as {suggestion or 'riverside'}.\n"
        )
        return 2
    existing = await storage.cohort(name)
    if existing is not None:
        out.write(f"The cohort {name} already exists; its join code is {existing.code}.\n")
        return 0
    code = new_code(7)
    await storage.save_cohort(name, code, now)
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
    loaded = library.get(guide)
    if loaded is None or loaded.guide is None:
        out.write(f"There is no guide {guide}. See `kitchen-table guides list`.\n")
        return 2
    if await storage.cohort(cohort) is None:
        out.write(f"There is no cohort {cohort}. Create it with `kitchen-table cohort add`.\n")
        return 2
    try:
        trigger(cron, tz)
    except ValueError as error:
        out.write(f"That schedule can't be read: {error}.\n"
                  'Use five fields, e.g. --cron "0 9 * * MON" for nine on Mondays.\n')  # fmt: skip
        return 2
    schedule = ScheduleRow(new_id(), guide, cohort, cron, tz, False, now, now)
    await storage.save_schedule(schedule)
    upcoming = occurrences(cron, tz, now, now.replace(year=now.year + 1))[:3]
    out.write(f"Added schedule {schedule.id}: {guide} to {cohort}, {cron} ({tz}).\nNext: ")
    out.write(", ".join(f"{d:%a %d %b %Y %H:%M %Z}" for d in upcoming) + "\n")
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
    schedules = await storage.schedules()
    if not schedules:
        out.write("No schedules yet: add one with `kitchen-table schedule add`.\n")
        return 0
    rows = [("ID", "GUIDE -> COHORT", "WHEN", "STATE", "NEXT")]
    for s in schedules:
        upcoming = occurrences(s.cron, s.tz, now, now.replace(year=now.year + 1))[:1]
        following = f"{upcoming[0]:%a %d %b %Y %H:%M %Z}" if upcoming and not s.paused else "-"
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
    found = next((s for s in await storage.schedules() if s.id == schedule_id), None)
    if found is None:
        out.write(f"There is no schedule {schedule_id}. See `kitchen-table schedule list`.\n")
        return 1
    if action == "remove":
        await storage.remove_schedule(schedule_id)
        out.write(f"Removed schedule {schedule_id}.\n")
        return 0
    await set_paused(storage, found, action == "pause", now)
    out.write(f"Schedule {schedule_id} is now {action}d.\n")
    return 0
