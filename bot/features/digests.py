"""The weekly digest as a message: `/digest` for coordinators, and what the scheduler
sends every week; and the archive of those sent, for the console (`DigestArchive`).
Building the digest itself is the read side's (`bot/reports/digest.py`)."""

from __future__ import annotations

import contextlib
import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.conversation.router import Router
from bot.conversation.turn import Turn
from bot.features.roles import ADMIN, COORDINATOR, Roles
from bot.messages import Outbound
from bot.reports.digest import build_digest
from bot.reports.render import Reports
from bot.scheduling.schedule_time import zone

if TYPE_CHECKING:
    from bot.library import GuideLibrary
    from storage.protocol import ReportStore, ScheduleStore


class Digests:
    def __init__(
        self,
        storage: ReportStore,
        library: GuideLibrary,
        reports: Reports,
        roles: Roles,
        min_group: int,
    ) -> None:
        self.storage = storage
        self.library = library
        self.reports = reports
        self.roles = roles
        self.min_group = min_group

    def register(self, router: Router) -> None:
        router.command(
            "digest",
            self._digest_command,
            roles=(COORDINATOR, ADMIN),
            refusal="digest_only_coordinators",
        )

    async def _digest_command(self, turn: Turn, arg: str) -> str | None:
        turn.send(await self.message(turn.language, turn.now - timedelta(days=7), turn.now))
        return None

    async def message(self, language: str, since: datetime, until: datetime) -> Outbound:
        """The digest of a period, in someone's language, in every markup."""
        digest = await build_digest(
            self.storage, self.library, since, until, min_group=self.min_group, language=language
        )
        return Outbound(
            text=self.reports.render("digest", "text", language, d=digest),
            markup=self.reports.every_format("digest", language, d=digest),
            quoting=digest.quoting,
        )

    async def page(self, since: datetime, until: datetime, language: str = "en") -> str:
        """The digest as a page (the console makes it in the reader's language)."""
        digest = await build_digest(
            self.storage, self.library, since, until, min_group=self.min_group, language=language
        )
        return self.reports.render("digest_page", "page", language, d=digest)

    async def recipients(self) -> list[str]:
        """Who receives the weekly digest: every coordinator, then every admin."""
        coordinators = [h.pseudonym for h in await self.roles.holders() if h.role == COORDINATOR]
        return [*coordinators, *sorted(self.roles.admins)]


class DigestArchive:
    """The weekly digests the bot has sent, as the database records them (every instance
    sees the same list), each opened as made now from what is stored: whoever has since
    asked to be forgotten is left out of it, as of every export. No copy of a page is
    kept anywhere (pages kept on disk held quotes of people who had gone)."""

    def __init__(self, storage: ScheduleStore, digests: Digests, occurrence: str) -> None:
        self.storage = storage
        self.digests = digests
        self.occurrence = occurrence  # the scheduler's name for the digest's occurrences

    async def _sent(self) -> list[tuple[date, datetime]]:
        """Each digest sent: the day it fell due where it was scheduled (a Monday 08:00
        digest in Auckland is Monday's, though it is Sunday in UTC), and the moment; newest
        first."""
        rows = await self.storage.occurrences(self.occurrence)
        sent = [(row.due_at.astimezone(zone(row.tz) or UTC).date(), row.due_at)
                for row in rows if row.status == "sent"]  # fmt: skip
        return sorted(sent, key=lambda each: each[1], reverse=True)

    async def days(self) -> list[date]:
        """The days a digest was sent, newest first."""
        return list(dict.fromkeys(day for day, _ in await self._sent()))

    async def page(self, day: date, language: str = "en") -> str | None:
        """The digest sent that day (the last, if several were), made now; None if none was."""
        for sent_on, due in await self._sent():
            if sent_on == day:
                return await self.digests.page(due - timedelta(days=7), due, language)
        return None


log = logging.getLogger(__name__)
# The pages earlier versions kept, named by the UTC day each fell due.
KEPT_PAGE = re.compile(r"digest-\d{4}-\d{2}-\d{2}\.html")


def remove_kept_pages(folder: Path) -> int:
    """Delete the digest pages earlier versions kept in `folder` (KT_DATA_DIR/digests),
    and the folder if nothing else is in it; return how many. They held quotes of people
    who may since have asked to be forgotten. Workers started together (`--workers`) may
    all do this at once: a page or the folder another removed first is no matter. One
    that can't be removed (its permissions) is logged, and the bot starts all the same."""
    try:
        names = [p.name for p in folder.iterdir() if KEPT_PAGE.fullmatch(p.name)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    except OSError as error:
        log.warning("could not look for kept digest pages in %s: %s", folder, error)
        return 0
    removed = 0
    for name in names:
        try:
            (folder / name).unlink()
            removed += 1
        except FileNotFoundError:
            pass  # another worker's
        except OSError as error:
            log.warning("could not remove the kept digest page %s: %s", folder / name, error)
    with contextlib.suppress(OSError):  # something else is in it (or it is gone): leave it
        folder.rmdir()
    return removed
