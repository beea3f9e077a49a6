"""The Audit page (admins only): every change made through the console, newest first,
by pseudonym (`bot/console/audit.py` keeps them)."""

from __future__ import annotations

from aiohttp import web

from bot.console.context import Visit
from bot.console.pages import Pages
from bot.features.roles import ADMIN


def setup(pages: Pages) -> None:
    pages.get("/audit", show, name="audit", roles=(ADMIN,))
    pages.nav("nav_audit", "audit", roles=(ADMIN,), order=90)


async def show(visit: Visit) -> web.StreamResponse:
    entries = await visit.services.audit_log.newest()
    return visit.render("audit.html", entries=entries)
