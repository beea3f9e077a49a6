"""When scheduled prompts fall due: cron occurrences in a time zone, and quiet hours.

Occurrences come from APScheduler's `CronTrigger`, which knows the calendar and
daylight saving: "0 9 * * MON" in America/Chicago is 9:00 in Chicago on every
Monday, whatever the UTC offset that week. Times in and out are aware datetimes.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

QUIET_START = time(21, 0)
QUIET_END = time(8, 0)


def zone(name: str) -> ZoneInfo | None:
    """The time zone called `name` (an IANA name such as America/Chicago), if it exists."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def typed_zone(name: str) -> ZoneInfo | None:
    """The time zone someone typed, forgiving case and spaces: "america/new york" is
    America/New_York (a zone name is case-sensitive, and people type in lower case)."""
    exact = zone(name)
    if exact is not None:
        return exact
    wanted = "_".join(name.split()).casefold()
    found = _zones_by_folded_name().get(wanted)
    return None if found is None else zone(found)


@functools.cache
def _zones_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


def trigger(cron: str, tz: str) -> CronTrigger:
    """A trigger for a five-field cron line; ValueError if the line or the zone is wrong."""
    found = zone(tz)
    if found is None:
        raise ValueError(f"unknown time zone {tz!r} (use a name such as America/Chicago)")
    return CronTrigger.from_crontab(cron, timezone=found)


def occurrences(cron: str, tz: str, after: datetime, until: datetime) -> list[datetime]:
    """Every time the cron line fires after `after` and no later than `until`."""
    fires = trigger(cron, tz)
    found: list[datetime] = []
    previous: datetime | None = None
    now = after + timedelta(microseconds=1)
    while True:
        fire: datetime | None = fires.get_next_fire_time(previous, now)
        if fire is None or fire > until:
            return found
        if previous is not None and fire.astimezone(UTC) <= previous.astimezone(UTC):
            # (In UTC: two times in one zone compare by the wall clock, fold aside.)
            raise RuntimeError(f"{cron!r} in {tz} came back to {fire.isoformat()}")
        found.append(fire)
        # Moved on in UTC: in the hour that comes twice when the clocks go back, the
        # second 01:30 (fold=1) plus a microsecond of wall time is the first 01:30 again,
        # and the same time came back for ever, so a tick never ended (found by review).
        previous, now = fire, fire.astimezone(UTC) + timedelta(microseconds=1)


def wall_clock(moment: datetime, tz: str) -> str:
    """The time on the wall in `tz` at `moment`, as text with no offset: the same for the
    same hour wherever someone is, and for both of the hour that comes twice."""
    return moment.astimezone(ZoneInfo(tz)).replace(tzinfo=None).isoformat()


def quiet_until(
    now: datetime, tz: str, start: time = QUIET_START, end: time = QUIET_END
) -> datetime:
    """When quiet hours end if `now` falls in them where the person lives, else `now`."""
    local_zone = zone(tz) or ZoneInfo("UTC")
    local = now.astimezone(local_zone)
    moment = local.time()
    overnight = start > end
    quiet = (moment >= start or moment < end) if overnight else (start <= moment < end)
    if not quiet:
        return now
    day = local.date() if moment < end else local.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=local_zone).astimezone(now.tzinfo)
