"""The People and roles page (admins only): invite a facilitator or a coordinator (a
one-time code and a link to send them, as `kitchen-table invite` prints), see who holds
a role by pseudonym (shortened to read, whole to copy), and take a role back after a
confirmation. Admins come from the settings (KT_ADMINS): shown as such, never revoked
here.

Every change goes through `bot/features/roles.Roles`, the same service as `/redeem` in
chat and the CLI's `invite` and `roles` commands, and is written to the audit log.
A pseudonym travels in a form's body, never in a URL. A new code is shown once, on the
answer to the form that made it (not a redirect, whose address would hold it); only its
hash is stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from bot.console.context import Visit, see_other
from bot.console.pages import Pages
from bot.features.roles import ADMIN, GRANTABLE

ADMINS = (ADMIN,)
INVITE_LASTS = timedelta(days=7)  # as `kitchen-table invite`'s default
SHORT = 12  # characters of a pseudonym shown to read (as `kitchen-table roles` prints)
DONE = ("revoked", "gone", "configured")


def setup(pages: Pages) -> None:
    pages.get("/people", show, name="people", roles=ADMINS)
    pages.post("/people/invite", invite, name="people_invite", roles=ADMINS)
    pages.post("/people/revoke/ask", confirm_revoke, name="people_revoke_ask", roles=ADMINS)
    pages.post("/people/revoke", revoke, name="people_revoke", roles=ADMINS)
    pages.nav("nav_people", "people", roles=ADMINS, order=70)


async def page(visit: Visit, *, status: int = 200, **data: Any) -> web.Response:
    roles = visit.services.roles
    holders = sorted(await roles.holders(), key=lambda h: (h.role, h.pseudonym))
    done = visit.request.query.get("done", "")
    defaults: dict[str, Any] = {
        "holders": holders,
        "admins": sorted(roles.admins),
        "grantable": GRANTABLE,
        "short": SHORT,
        "invited": None,
        "problem": None,
        "done": done if done in DONE else "",
        "done_role": visit.request.query.get("role", "") if done else "",
        "days": INVITE_LASTS.days,
    }
    return visit.render("people.html", status=status, **{**defaults, **data})


async def show(visit: Visit) -> web.StreamResponse:
    return await page(visit)


async def invite(visit: Visit) -> web.StreamResponse:
    role = str((await visit.form()).get("role", ""))
    if role not in GRANTABLE:
        return await page(visit, status=400, problem="people_no_role")
    code = await visit.services.roles.invite(role, INVITE_LASTS)
    await visit.audit("role_invited", role)
    bot = visit.services.bot_link
    link = f"{bot}?start=redeem-{code}" if bot else None
    return await page(visit, invited={"role": role, "code": code, "link": link})


async def chosen(visit: Visit) -> tuple[str, str | None]:
    """The pseudonym the form names, and the role they hold (None: none, any more)."""
    who = str((await visit.form()).get("who", ""))[:200]
    holders = {h.pseudonym: h.role for h in await visit.services.roles.holders()}
    return who, holders.get(who)


def back(visit: Visit, done: str, role: str = "") -> web.Response:
    url = visit.request.app.router["people"].url_for().with_query(done=done, role=role)
    return see_other(f"{url}#holders")


async def confirm_revoke(visit: Visit) -> web.StreamResponse:
    who, role = await chosen(visit)
    if who in visit.services.roles.admins:
        return back(visit, "configured")
    if role is None:
        return back(visit, "gone")
    return visit.render("people_revoke.html", who=who, role=role, short=SHORT)


async def revoke(visit: Visit) -> web.StreamResponse:
    who, role = await chosen(visit)
    if who in visit.services.roles.admins:
        return back(visit, "configured")  # from the settings: changed there, not here
    if role is None or not await visit.services.roles.revoke(who):
        return back(visit, "gone")
    await visit.audit("role_revoked", f"{role} {who}")  # whole, so /forget finds it
    return back(visit, "revoked", role)
