"""How a page module joins the console: routes with the roles that may use them, and an
entry in the navigation.

A page module (say `bot/console/schedules.py`) has one function,

    def setup(pages: Pages) -> None:
        pages.get("/schedules", list_schedules, name="schedules", roles=(COORDINATOR, ADMIN))
        pages.post("/schedules/{id}/pause", pause, roles=(COORDINATOR, ADMIN))
        pages.nav("nav_schedules", "schedules", roles=(COORDINATOR, ADMIN), order=30)

and is listed in `bot/console/catalog.py`. Paths are under /console. A handler takes a
`Visit` (`bot/console/context.py`) and returns a response. Roles are checked before it
runs: anyone else gets the "not for your role" page (403). Every POST has had its CSRF
token checked before any handler runs (`bot/console/app.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from bot.console.context import Visit, visit_of
from bot.features.console import CONSOLE_ROLES

Handler = Callable[[Visit], Awaitable[web.StreamResponse]]
# What the app answers someone whose role a page is not for (set by bot/console/app.py).
Refuse = Callable[[Visit], web.StreamResponse]


@dataclass(frozen=True)
class NavEntry:
    """One item of the console's navigation."""

    label: str  # the locale key of its words (bot/console/locales/)
    route: str  # the name of the route it opens
    roles: frozenset[str]  # who sees it
    order: int  # smaller first

    def href(self, visit: Visit) -> str:
        return str(visit.request.app.router[self.route].url_for())


class PageModule(Protocol):
    """A module of console pages: `bot/console/catalog.py` lists them."""

    def setup(self, pages: Pages) -> None: ...


class Pages:
    """What a page module registers on; one per console app."""

    def __init__(self, app: web.Application, refuse: Refuse) -> None:
        self.app = app  # for a page that is not signed in (sign-in itself); else use get/post
        self._refuse = refuse
        self.entries: list[NavEntry] = []

    def _guarded(self, handler: Handler, roles: Iterable[str]) -> Callable[
        [web.Request], Awaitable[web.StreamResponse]
    ]:  # fmt: skip
        allowed = frozenset(roles)
        unknown = allowed - CONSOLE_ROLES
        if not allowed or unknown:
            raise ValueError(f"a console page needs roles from {sorted(CONSOLE_ROLES)}")

        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            visit = visit_of(request)
            if visit.role not in allowed:
                return self._refuse(visit)
            return await handler(visit)

        return guarded

    def get(self, path: str, handler: Handler, *, roles: Iterable[str],
            name: str | None = None) -> None:  # fmt: skip
        """A page to read (GET, and HEAD). `name`: for `url(name)` in templates and nav."""
        self.app.router.add_get(path, self._guarded(handler, roles), name=name)

    def post(self, path: str, handler: Handler, *, roles: Iterable[str],
             name: str | None = None) -> None:  # fmt: skip
        """A form that changes something: CSRF-checked before `handler` runs; write the
        change to the audit log (`visit.audit`) and answer with a redirect (303)."""
        self.app.router.add_post(path, self._guarded(handler, roles), name=name)

    def nav(self, label: str, route: str, *, roles: Iterable[str], order: int = 100) -> None:
        self.entries.append(NavEntry(label, route, frozenset(roles), order))

    def menu(self, role: str) -> list[NavEntry]:
        """The navigation as someone with this role sees it."""
        return sorted((e for e in self.entries if role in e.roles), key=lambda e: e.order)
