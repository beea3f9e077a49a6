"""The weekly digest as a message: `/digest` for coordinators, and what the scheduler
sends every week. Building the digest itself is the read side's (`bot/reports/digest.py`)."""

from __future__ import annotations

from datetime import datetime, timedelta
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

    async def page(self, since: datetime, until: datetime) -> str:
        """The digest as a page to keep (in English, the archive's language)."""
        digest = await build_digest(
            self.storage, self.library, since, until, min_group=self.min_group
        )
        return self.reports.render("digest_page", "page", "en", d=digest)

    async def recipients(self) -> list[str]:
        """Who receives the weekly digest: every coordinator, then every admin."""
        coordinators = [h.pseudonym for h in await self.roles.holders() if h.role == COORDINATOR]
        return [*coordinators, *sorted(self.roles.admins)]
