"""What a console page works with: `Services` (everything it may reach, built once by
the composition root) and `Visit` (one request by one signed-in person).

A page handler takes a `Visit` and returns a response:

    async def overview(visit: Visit) -> web.StreamResponse:
        if visit.can(COORDINATOR, ADMIN): ...
        return visit.render("overview.html", data=...)

- `visit.who`, `visit.role`, `visit.language`: the signed-in person (a pseudonym, their
  role read again on this request, the language they chose in chat);
- `visit.services`: storage, guides, features, settings (`Services`);
- `visit.can(*roles)`: whether their role is one of these;
- `visit.t(key, **params)`: a phrase from `bot/console/locales/`, in their language;
- `visit.csrf` and, in templates, `csrf_field()`: the hidden input every form that
  changes something must carry (POSTs without it are refused before any handler runs);
- `await visit.audit(what, detail)`: write the change to the audit log;
- `visit.render(template, status=200, **data)`: a page from `bot/console/templates/`,
  with `visit`, `t`, `nav`, `csrf_field` and `data` given to the template;
- `visit.form()`: the posted form, read once;
- `see_other(url)`: what a POST handler answers once the change is made (303).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup, escape
from multidict import MultiDictProxy

from bot.console.audit import AuditLog
from bot.console.sessions import Session, Sessions
from bot.features.console import ConsoleLinks
from bot.features.roles import Roles
from bot.flows.phrases import Phrasebook
from bot.library import GuideLibrary
from storage.protocol import Storage

if TYPE_CHECKING:
    from admin.schedules import ScheduleDesk
    from bot.console.pages import NavEntry
    from bot.features.cohorts import Cohorts
    from bot.features.digests import DigestArchive, Digests
    from bot.features.gatherings import Gatherings
    from bot.reports.render import Reports

CSRF_FIELD = "csrf"
VISIT: web.RequestKey[Visit] = web.RequestKey("kt_console_visit")  # set by the middleware


@dataclass
class Services:
    """Everything console pages may reach, wired once by `bot/app/web.py`. Changes go
    through the same features and admin services the chat commands and the CLI use,
    so one place decides who may do what. Add a field here (and its wiring there) when a
    page needs something new."""

    storage: Storage
    library: GuideLibrary
    roles: Roles
    links: ConsoleLinks
    strings: Phrasebook
    clock: Callable[[], datetime]
    address: str  # the console's address: https://bot.example.org/console
    session_lasts: timedelta = timedelta(hours=12)
    min_group: int = 5
    timezone: str = "UTC"
    secure_cookies: bool = False  # under https: the cookie is Secure
    gatherings: Gatherings | None = None
    cohorts: Cohorts | None = None
    digests: Digests | None = None
    reports: Reports | None = None
    schedule_desk: ScheduleDesk | None = None  # cohorts and schedules, as the CLI makes them
    digest_archive: DigestArchive | None = None  # the weekly digests sent
    bot_link: str | None = None  # https://t.me/BOT, for join links; None: codes only
    sessions: Sessions = field(init=False)
    audit_log: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.storage, self.session_lasts, self.clock)
        self.audit_log = AuditLog(self.storage, self.clock)


@dataclass
class Visit:
    """One request by a signed-in person (see the module's docstring)."""

    request: web.Request
    services: Services
    session: Session
    role: str
    nav: list[NavEntry] = field(default_factory=list)  # what this person's menu shows
    _form: MultiDictProxy[Any] | None = None

    @property
    def who(self) -> str:
        return self.session.pseudonym

    @property
    def language(self) -> str:
        return self.session.language

    @property
    def csrf(self) -> str:
        return self.session.csrf

    @property
    def now(self) -> datetime:
        return self.services.clock()

    def can(self, *roles: str) -> bool:
        return self.role in roles

    def t(self, key: str, **params: object) -> str:
        return self.services.strings.text(self.language, key, **params)

    def csrf_field(self) -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, escape(self.csrf)
        )

    async def form(self) -> MultiDictProxy[Any]:
        if self._form is None:
            self._form = await self.request.post()
        return self._form

    async def audit(self, what: str, detail: str = "") -> None:
        await self.services.audit_log.write(self.who, self.role, what, detail)

    def render(self, template: str, *, status: int = 200, **data: Any) -> web.Response:
        return render(self.request, template, self.services, self.language, status=status,
                      visit=self, **data)  # fmt: skip


def render(
    request: web.Request,
    template: str,
    services: Services,
    language: str,
    *,
    status: int = 200,
    visit: Visit | None = None,
    **data: Any,
) -> web.Response:
    """A console page, signed in (`visit`) or not (sign-in and refusal pages)."""

    def t(key: str, **params: object) -> str:
        return services.strings.text(language, key, **params)

    def action(what: str) -> str:
        """An audit entry's action in words (`action_<what>`), else its name."""
        try:
            return t(f"action_{what}")
        except KeyError:
            return what.replace("_", " ")

    zone = ZoneInfo(services.timezone)

    def when(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    context: Mapping[str, Any] = {
        "t": t,
        "action": action,
        "when": when,
        "lang": language.split("-")[0],
        "visit": visit,
        "nav": visit.nav if visit else [],
        "here": request.path,
        "url": lambda name, **parts: str(request.app.router[name].url_for(**parts)),
        "csrf_field": visit.csrf_field if visit else (lambda: Markup("")),
        **data,
    }
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def visit_of(request: web.Request) -> Visit:
    """The Visit the console's middleware made for this request."""
    return request[VISIT]


SERVICES = web.AppKey("console_services", Services)


def language_of(request: web.Request, languages: Iterable[str]) -> str:
    """Someone not signed in: the first of their browser's languages the console speaks."""
    offered = set(languages)
    for part in request.headers.get("Accept-Language", "").split(","):
        code = part.split(";")[0].strip().lower().split("-")[0]
        if code in offered:
            return code
    return "en"


def page_for_anyone(
    request: web.Request, template: str, *, status: int, **data: Any
) -> web.Response:
    """A page for someone who may not be signed in: a refusal, the sign-in."""
    services = request.app[SERVICES]
    language = language_of(request, services.strings.languages)
    return render(request, template, services, language, status=status, **data)


def cookie_path(request: web.Request) -> str:
    """The console's own path (/console): the cookie goes nowhere else on the server."""
    return str(request.app.router["overview"].url_for()).rstrip("/") or "/"


def see_other(location: str) -> web.Response:
    """The answer to a form that changed something: go here next (303, so a reload of
    the next page never posts the form again)."""
    return web.Response(status=303, headers={"Location": location})
