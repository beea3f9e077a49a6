"""The weekly digest as a message: `/digest` for coordinators, and what the scheduler
sends every week; and the archive of the pages the scheduler kept (`DigestArchive`).
Building the digest itself is the read side's (`bot/reports/digest.py`)."""

from __future__ import annotations

import asyncio
import re
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.conversation.router import Router
from bot.conversation.turn import Turn
from bot.features.roles import ADMIN, COORDINATOR, Roles
from bot.messages import Outbound
from bot.reports.digest import build_digest
from bot.reports.render import Reports

if TYPE_CHECKING:
    from bot.library import GuideLibrary
    from storage.protocol import ReportStore


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
        )

    async def page(self, since: datetime, until: datetime, language: str = "en") -> str:
        """The digest as a page to keep (in English, the archive's language, unless asked:
        the console makes one in the reader's)."""
        digest = await build_digest(
            self.storage, self.library, since, until, min_group=self.min_group, language=language
        )
        return self.reports.render("digest_page", "page", language, d=digest)

    async def recipients(self) -> list[str]:
        """Who receives the weekly digest: every coordinator, then every admin."""
        coordinators = [h.pseudonym for h in await self.roles.holders() if h.role == COORDINATOR]
        return [*coordinators, *sorted(self.roles.admins)]


# How the scheduler names each week's page (bot/scheduling/scheduler.py, `_digests`): the
# UTC day it fell due. The scheduler can't import this module (features import scheduling).
KEPT_PAGE = re.compile(r"digest-(\d{4}-\d{2}-\d{2})\.html")


class DigestArchive:
    """The weekly digests the scheduler kept as pages in `folder` (KT_DATA_DIR/digests),
    by the day each fell due. None kept (no folder yet) is an empty archive."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _days(self) -> list[date]:
        if self.folder is None or not self.folder.is_dir():
            return []
        found = (KEPT_PAGE.fullmatch(p.name) for p in self.folder.iterdir() if p.is_file())
        return sorted((date.fromisoformat(m.group(1)) for m in found if m), reverse=True)

    async def days(self) -> list[date]:
        """The days a digest was kept, newest first."""
        return await asyncio.to_thread(self._days)

    async def page(self, day: date) -> str | None:
        """The page kept for that day, if there is one."""
        if self.folder is None:
            return None
        path = self.folder / f"digest-{day.isoformat()}.html"
        try:
            return await asyncio.to_thread(path.read_text, encoding="utf-8")
        except FileNotFoundError:
            return None
