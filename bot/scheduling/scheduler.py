"""Scheduled prompts and reminders: what each tick of the clock sends.

Schedules are rows in our storage; APScheduler only calls `tick()` every minute
(see `run_every`). A tick is safe to repeat and safe to run in any number of
processes on one database at once: everything it does is done once, as the
database decides, never one process's memory:

- a schedule's occurrence is claimed with a lease before its prompts go out, so
  only one process sends it (and another takes over if the first died mid-way);
  each (occurrence, person) prompt is committed under a unique key in the same
  transaction as the run it starts and the messages it owes, so nobody is ever
  prompted twice for one occurrence, whatever happens. A cohort goes in chunks,
  many people per read and per transaction (see `bot/conversation/fanout.py`);
- a reminder is a turn under its own key (the prompt's key and the reminder's
  number): two processes that both find it due commit it once;
- a weekly digest is an occurrence claimed like a schedule's, and each
  coordinator's copy is sent under its own key; the occurrences sent are the
  console's list of digests;
- retention's daily blanking is an occurrence too, one per UTC day, claimed;
- features' chores (`chores`: a paced room's opening that a process left part-way)
  are safe to repeat, and run on every tick.

A schedule's cron is read in each member's own time zone (else the schedule's),
so "0 9 * * MON" is nine on Monday morning where each person lives, across
daylight saving changes. A prompt due in someone's quiet hours (21:00-08:00
their time) waits in the outbox until the quiet hours end. After downtime, an
occurrence is still sent if its guide would not yet have expired; older ones are
recorded as missed.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Protocol

from bot.conversation.dispatcher import Dispatcher
from bot.library import GuideLibrary
from bot.messages import Outbound
from bot.scheduling.schedule_time import occurrences, quiet_until, wall_clock
from storage.protocol import Storage
from storage.rows import MemberRow, ScheduleRow

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
DIGEST = "digest"
RETENTION = "retention"
HOUSEKEEPING = "housekeeping"  # expired records cleared, once a UTC day


def occurrence_key(schedule_id: str, due: datetime, tz: str) -> str:
    """What makes a scheduled prompt go to someone once, with `prompt_key`: the occurrence
    as the local time it is due in the zone it is sent for, not the instant. Someone who
    sets a time zone further west after this week's prompt is not prompted again when
    the same hour comes round there (found by review: named by the instant, they were);
    and the two 01:30s of the night the clocks go back are one prompt."""
    return f"prompt:{schedule_id}:{wall_clock(due, tz)}"


def prompt_key(occurrence: str, participant: str) -> str:
    """One person's prompt for an occurrence (`occurrence_key`)."""
    return f"{occurrence}:{participant}"


class WeeklyDigests(Protocol):
    """What the weekly digest needs from the digests feature (plugged in by the app)."""

    async def message(self, language: str, since: datetime, until: datetime) -> Outbound: ...

    async def recipients(self) -> list[str]: ...


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    prompted: int = 0
    missed: list[tuple[str, datetime]] = field(default_factory=list)
    reminded: int = 0
    digests: int = 0
    expired: int = 0
    cleared: int = 0  # expired records deleted (sign-in links, sessions, invitations)


class Scheduler:
    def __init__(
        self,
        storage: Storage,
        dispatcher: Dispatcher,
        library: GuideLibrary,
        clock: Callable[[], datetime],
        *,
        remind_after: timedelta = timedelta(hours=24),
        max_reminders: int = 1,
        digest_cron: str | None = None,
        timezone: str = "UTC",
        retention_days: int | None = None,
        digests: WeeklyDigests | None = None,
        chores: Sequence[Callable[[datetime], Awaitable[object]]] = (),
    ) -> None:
        if digest_cron and digests is None:
            raise ValueError("weekly digests need something that makes them")
        self.digests = digests
        self.storage = storage
        self.dispatcher = dispatcher
        self.library = library
        self.clock = clock
        self.remind_after = remind_after
        self.max_reminders = max_reminders
        self.digest_cron = digest_cron
        self.timezone = timezone
        self.retention_days = retention_days
        # What features ask to have done on every tick (a paced room's opening that a
        # process left part-way): plugged in by the composition root.
        self.chores = list(chores)

    async def tick(self) -> TickReport:
        report = TickReport()
        now = self.clock()
        for schedule in await self.storage.schedules():
            if schedule.paused:
                continue
            try:
                await self._occurrences(schedule, now, report)
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s could not be run", schedule.id)
        await self._reminders(now, report)
        # Nor a digest that fails stop retention (each is taken up again next tick).
        if self.digest_cron:
            try:
                await self._digests(now, report)
            except Exception:
                log.exception("the weekly digest could not be sent")
        if self.retention_days is not None:
            try:
                await self._retention(now, report)
            except Exception:
                log.exception("old free text could not be blanked")
        try:
            await self._housekeeping(now, report)
        except Exception:
            log.exception("expired records could not be cleared")
        for chore in self.chores:
            try:
                await chore(now)
            except Exception:
                log.exception("a scheduled chore failed; it is tried again next tick")
        return report

    async def _housekeeping(self, now: datetime, report: TickReport) -> None:
        """Once a UTC day, by one instance: delete records past their expiry (console
        sign-in links and sessions, invitations nobody used). Reads already ignore them;
        this keeps them from piling up, and keeps no trace of who signed in when."""
        day = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
        if await self.storage.claim_occurrence(HOUSEKEEPING, "UTC", day, now, LEASE) != "claimed":
            return
        report.cleared = await self.storage.clear_expired_records(now)
        await self.storage.finish_occurrence(HOUSEKEEPING, "UTC", day, "sent")

    async def _retention(self, now: datetime, report: TickReport) -> None:
        """Once a day: blank what people wrote in their own words after the retention
        period; the rows stay, so counts and completion rates do too.

        Each UTC day is an occurrence of its own, claimed like a schedule's: however many
        instances tick, one of them does the day's blanking (another takes over if it
        died part-way, once its lease has run out)."""
        day = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
        if await self.storage.claim_occurrence(RETENTION, "UTC", day, now, LEASE) != "claimed":
            return
        assert self.retention_days is not None
        cutoff = now - timedelta(days=self.retention_days)
        report.expired = await self.storage.expire_texts(["ask"], cutoff)
        await self.storage.finish_occurrence(RETENTION, "UTC", day, "sent")

    async def _digests(self, now: datetime, report: TickReport) -> None:
        """The weekly digest, by direct message to every coordinator (the console lists the
        digests sent, from the occurrences, and makes each again when it is opened).

        Each digest is an occurrence claimed by one instance, and each coordinator's copy
        a message under its own key, so nobody gets one twice however many instances
        tick. One that another instance holds is looked at again next tick, until it is
        sent (or its holder dies and its lease runs out): the time checked up to stops
        short of it."""
        assert self.digest_cron is not None
        assert self.digests is not None
        record = await self.storage.record(DIGEST, "checked", now)
        checked = datetime.fromisoformat(record.decode()) if record else now
        checked_until = now
        for due in occurrences(self.digest_cron, self.timezone, checked, now):
            claim = await self.storage.claim_occurrence(DIGEST, self.timezone, due, now, LEASE)
            if claim == "held":
                checked_until = min(checked_until, due - timedelta(microseconds=1))
            if claim != "claimed":
                continue
            since = due - timedelta(days=7)
            for person in await self.digests.recipients():
                preference = await self.storage.participant(person)
                language = (preference.language if preference else None) or "en"
                message = await self.digests.message(language, since, due)
                # Named by the local time it is due, as prompts are (`occurrence_key`):
                # the two 01:30s of the night the clocks go back are one digest.
                key = f"digest:{wall_clock(due, self.timezone)}:{person}"
                if await self.dispatcher.send_to(person, message, key):
                    report.digests += 1
            await self.storage.finish_occurrence(DIGEST, self.timezone, due, "sent")
        await self.storage.put_record(DIGEST, "checked", checked_until.isoformat().encode())

    async def _occurrences(self, schedule: ScheduleRow, now: datetime, report: TickReport) -> None:
        loaded = self.library.get(schedule.guide_id)
        if loaded is None or loaded.guide is None:
            log.warning("schedule %s: no guide %s", schedule.id, schedule.guide_id)
            return
        expiry = loaded.guide.expiry
        by_zone: dict[str, list[MemberRow]] = defaultdict(list)
        for member in await self.storage.members(schedule.cohort):
            by_zone[member.tz or schedule.tz].append(member)
        checked = now
        for tz, members in sorted(by_zone.items()):
            for due in occurrences(schedule.cron, tz, schedule.checked_until, now):
                claim = await self.storage.claim_occurrence(schedule.id, tz, due, now, LEASE)
                if claim == "held":
                    # Another process is sending it; look again until it is done (or it
                    # dies and its lease runs out).
                    checked = min(checked, due - timedelta(microseconds=1))
                if claim != "claimed":
                    continue
                if now - due >= expiry:
                    # Down for longer than the guide lasts: too late to be worth sending.
                    await self.storage.finish_occurrence(schedule.id, tz, due, "missed")
                    report.missed.append((tz, due))
                    continue
                report.prompted += await self.dispatcher.prompt_many(
                    self._prompts(schedule, members, due, tz, now),
                    schedule.id,
                    schedule.guide_id,
                    quiet_until(now, tz),
                )
                await self.storage.finish_occurrence(schedule.id, tz, due, "sent")
        await self.storage.advance_schedule(schedule.id, checked)

    @staticmethod
    def _prompts(
        schedule: ScheduleRow, members: list[MemberRow], due: datetime, tz: str, now: datetime
    ) -> list[tuple[str, str]]:
        """(participant, key) for each member to prompt: not paused, not unreachable. The
        key names the occurrence and the person, so each is prompted for it once."""
        occurrence = occurrence_key(schedule.id, due, tz)  # once, not per member
        return [
            (member.participant, prompt_key(occurrence, member.participant))
            for member in members
            if not member.unreachable
            and (member.paused_until is None or member.paused_until <= now)
        ]

    async def _reminders(self, now: datetime, report: TickReport) -> None:
        due = await self.storage.due_reminders(now - self.remind_after, self.max_reminders)
        if not due:
            return
        zones = {s.id: s.tz for s in await self.storage.schedules()}
        for delivery in due:
            preference = await self.storage.preference(delivery.participant)
            if preference and preference.paused_until and preference.paused_until > now:
                continue
            tz = (preference.tz if preference else None) or zones.get(delivery.schedule, "UTC")
            if quiet_until(now, tz) > now:
                continue  # a later tick, once they are awake
            try:
                if await self.dispatcher.remind(delivery):
                    report.reminded += 1
            except Exception:  # one person's (a damaged run) must not stop everyone's
                log.exception("a reminder could not be sent")


def run_every(scheduler: Scheduler, seconds: int = 60) -> object:
    """An APScheduler that calls `scheduler.tick()` every `seconds`, one tick at a time."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    ticker = AsyncIOScheduler()
    ticker.add_job(
        scheduler.tick, "interval", seconds=seconds, max_instances=1, coalesce=True,
        next_run_time=datetime.now().astimezone(),
    )  # fmt: skip
    ticker.start()
    return ticker
