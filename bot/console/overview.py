"""The Overview page: each guide's people this week and before, and the live gatherings.

The figures come from the read side (`bot/reports/overview.py`), which keeps the
minimum-group rule. A facilitator sees only their own live gatherings; coordinators
and admins see every guide's figures and every gathering.
"""

from __future__ import annotations

from aiohttp import web

from bot.console.context import Visit
from bot.console.pages import Pages
from bot.features.console import CONSOLE_ROLES
from bot.features.roles import FACILITATOR
from bot.reports.overview import build_overview


def setup(pages: Pages) -> None:
    pages.get("/", show, name="overview", roles=CONSOLE_ROLES)
    pages.nav("nav_overview", "overview", roles=CONSOLE_ROLES, order=10)


async def show(visit: Visit) -> web.StreamResponse:
    services = visit.services
    overview = await build_overview(
        services.storage, services.library, visit.now, min_group=services.min_group,
        language=visit.language, facilitator=visit.who if visit.can(FACILITATOR) else None,
    )  # fmt: skip
    return visit.render("overview.html", overview=overview)
