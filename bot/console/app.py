"""The console as an aiohttp sub-application, mounted at /console by `bot/app/web.py`.

Every request passes two middlewares:

- `_guard`: pages need a session (the `kt_console` cookie, `bot/console/sessions.py`);
  the person's role is read again on each request, so a role taken back loses access
  at once; every POST must carry the session's CSRF token, or is refused (403) before
  any handler runs. Sign-in, sign-out's "done" page and the stylesheet are public.
- `_headers`: no caching, the referrer kept to our own pages (a sign-in link must not
  leak; a form keeps its Origin for the sign-in check), no framing, and a
  content policy that allows only our own stylesheet: the pages run no script.

Pages come from the modules in `bot/console/catalog.py` (`bot/console/pages.py`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.console import signin
from bot.console.context import (
    CSRF_FIELD,
    SERVICES,
    VISIT,
    Services,
    Visit,
    cookie_path,
    page_for_anyone,
)
from bot.console.pages import PageModule, Pages
from bot.console.sessions import COOKIE
from bot.features.console import CONSOLE_ROLES

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PAGES = web.AppKey("console_pages", Pages)
PUBLIC = frozenset({"signin", "signin_take", "signed_out", "static"})
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    # Scripts only from our own files (a live gathering's refresh), fetching our own pages.
    "script-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",  # a sign-in link never leaves; forms keep their Origin
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

Next = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refuse_role(visit: Visit) -> web.Response:
    return visit.render("refused.html", status=403, reason="refused_role")


def make_console(services: Services, modules: Iterable[PageModule]) -> web.Application:
    """The console, with these page modules' pages."""
    app = web.Application(middlewares=[_headers, _guard])
    app[SERVICES] = services
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_static("/static", STATIC, name="static")
    pages = Pages(app, _refuse_role)
    signin.setup(pages)
    for module in modules:
        module.setup(pages)
    app[PAGES] = pages
    return app


@web.middleware
async def _headers(request: web.Request, handler: Next) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPNotFound:
        response = page_for_anyone(request, "refused.html", status=404, reason="not_found")
    except web.HTTPMethodNotAllowed:
        response = page_for_anyone(request, "refused.html", status=405, reason="not_found")
    for header, value in SECURITY_HEADERS.items():
        # A page may narrow or widen its own content policy (a kept digest's inline styles).
        response.headers.setdefault(header, value)
    if not request.path.startswith(f"{request.app.router['static'].canonical}/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def _guard(request: web.Request, handler: Next) -> web.StreamResponse:
    route = request.match_info.route.name
    if route in PUBLIC or request.match_info.http_exception is not None:
        return await handler(request)
    services = request.app[SERVICES]
    session = await services.sessions.find(request.cookies.get(COOKIE))
    if session is None:
        return page_for_anyone(request, "refused.html", status=401, reason="signed_out")
    role = await services.roles.role_of(session.pseudonym)
    if role not in CONSOLE_ROLES:  # revoked since they signed in
        await services.sessions.end(session)
        response = page_for_anyone(request, "refused.html", status=403, reason="role_gone")
        response.del_cookie(COOKIE, path=cookie_path(request))
        return response
    pages = request.app[PAGES]
    visit = Visit(request, services, session, role, pages.menu(role))
    request[VISIT] = visit
    if request.method == "POST":
        sent = (await visit.form()).get(CSRF_FIELD)
        if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
            return visit.render("refused.html", status=403, reason="csrf")
    return await handler(request)
