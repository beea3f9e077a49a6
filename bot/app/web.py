"""The bot's own web server: a health check, the routes channels add (webhooks, Slack),
and the coordinators' console under /console when it is on (`bot/console/`).

How a channel refuses a request its sender got wrong is in `bot/channels/http.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from admin.schedules import ScheduleDesk
from bot.channels.http import MAX_BODY
from bot.console.app import make_console
from bot.console.catalog import PAGE_MODULES
from bot.console.context import SERVICES, Services
from bot.console.report import make_reports
from bot.console.strings import load_strings
from bot.features.digests import DigestArchive
from bot.scheduling.scheduler import DIGEST

if TYPE_CHECKING:
    from bot.app.build import House
    from bot.config import Settings
    from bot.library import GuideLibrary
    from storage.protocol import Storage

CONSOLE = "/console"
REPORT = "/report"  # public reports: /report/GUIDE (bot/console/report.py)

# Asked by /healthz: whether the database answers (None: nothing to ask).
DatabaseCheck = Callable[[], Awaitable[bool]]


def _healthz(database: DatabaseCheck | None) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def check(_: web.Request) -> web.Response:
        if database is None:
            return web.json_response({"status": "ok"})
        if await database():
            return web.json_response({"status": "ok", "database": "ok"})
        # 503: a load balancer sends webhooks to another instance meanwhile.
        return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)

    return check


def make_web_app(
    database: DatabaseCheck | None = None, console: web.Application | None = None
) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", _healthz(database))
    if console is not None:
        app.router.add_get(CONSOLE, _to_console)
        app.add_subapp(CONSOLE, console)
        # Public reports of guides marked `public: true`, read with the console's services.
        reports = make_reports(console[SERVICES], console, f"{CONSOLE}/static/console.css")
        app.add_subapp(REPORT, reports)
    return app


async def _to_console(_: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(f"{CONSOLE}/")


def console_app(
    settings: Settings,
    storage: Storage,
    library: GuideLibrary,
    house: House,
    clock: Callable[[], datetime],
) -> web.Application | None:
    """The console, wired to the bot's storage and features; None when it is off."""
    if not settings.console_enabled or house.console is None:
        return None
    services = Services(
        storage=storage, library=library, roles=house.roles, links=house.console,
        strings=load_strings(), clock=clock, address=settings.console_url,
        session_lasts=timedelta(hours=settings.console_session_hours),
        min_group=settings.min_group, timezone=settings.timezone,
        secure_cookies=settings.console_url.startswith("https://"),
        gatherings=house.gatherings, cohorts=house.cohorts, digests=house.digests,
        reports=house.reports,
        schedule_desk=ScheduleDesk(storage, library, settings.timezone),
        digest_archive=DigestArchive(storage, house.digests, DIGEST),
        bot_link=f"https://t.me/{settings.telegram_bot_username}"
        if settings.telegram_bot_username else None,
    )  # fmt: skip
    return make_console(services, PAGE_MODULES)


async def start_web(
    app: web.Application, host: str, port: int, shared: bool = False
) -> web.AppRunner:
    """Serve `app`; `shared`: bind with SO_REUSEPORT, beside other workers on the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=shared or None).start()
    return runner
