"""Signing in and out.

`/console` in chat (or `kitchen-table console link`) gives a one-time link,
`/console/signin?t=TOKEN`. Opening it shows a page with one button: a chat app that
fetches the link to draw a preview must not use it up, and the cookie set by our own
page's form is sent on the next page (SameSite=Strict would drop it after a redirect
that began in another site). The button's POST takes the link (`take_record`: one
visit gets it), starts a session and sends the person to the overview. A link used
before, expired or never made gets a page that says so, and how to get a new one.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from bot.console.context import (
    SERVICES,
    Visit,
    cookie_path,
    page_for_anyone,
    render,
    see_other,
)
from bot.console.pages import Pages
from bot.console.sessions import COOKIE
from bot.features.console import CONSOLE_ROLES


def setup(pages: Pages) -> None:
    app = pages.app
    app.router.add_get("/signin", _offer, name="signin")
    app.router.add_post("/signin", _take, name="signin_take")
    app.router.add_get("/signed-out", _signed_out, name="signed_out")
    pages.post("/signout", _sign_out, roles=CONSOLE_ROLES, name="signout")


def _token(value: object) -> str:
    return value if isinstance(value, str) and 0 < len(value) <= 100 else ""


async def _offer(request: web.Request) -> web.StreamResponse:
    token = _token(request.query.get("t"))
    if not token or not await request.app[SERVICES].links.usable(token):
        return page_for_anyone(request, "refused.html", status=410, reason="link_refused")
    return page_for_anyone(request, "signin.html", status=200, token=token)


def _from_elsewhere(request: web.Request, address: str) -> bool:
    """A browser says where a form came from (Origin): sign-in takes only our own page's,
    so another site can't sign a visitor in as someone else (a session has no CSRF
    token yet to check)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser that says; the token itself is the secret
    ours = {str(URL(address).origin()), f"{request.scheme}://{request.host}"}
    return origin not in ours


async def _take(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    if _from_elsewhere(request, services.address):
        return page_for_anyone(request, "refused.html", status=403, reason="csrf")
    token = _token((await request.post()).get("t"))
    holder = await services.links.take(token) if token else None
    if holder is None:
        return page_for_anyone(request, "refused.html", status=410, reason="link_refused")
    role = await services.roles.role_of(holder.pseudonym)
    if role not in CONSOLE_ROLES:
        return render(request, "refused.html", services, holder.language, status=403,
                      reason="role_gone")  # fmt: skip
    cookie, _session = await services.sessions.start(holder.pseudonym, holder.language)
    await services.audit_log.write(holder.pseudonym, role, "signed_in")
    response = see_other(str(request.app.router["overview"].url_for()))
    response.set_cookie(
        COOKIE, cookie, max_age=int(services.session_lasts.total_seconds()),
        path=cookie_path(request), httponly=True, samesite="Strict",
        secure=services.secure_cookies or request.secure,
    )  # fmt: skip
    return response


async def _sign_out(visit: Visit) -> web.StreamResponse:
    await visit.services.sessions.end(visit.session)
    await visit.audit("signed_out")
    response = see_other(str(visit.request.app.router["signed_out"].url_for()))
    response.del_cookie(COOKIE, path=cookie_path(visit.request))
    return response


async def _signed_out(request: web.Request) -> web.StreamResponse:
    return page_for_anyone(request, "refused.html", status=200, reason="signed_out_done")
