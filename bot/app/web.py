"""The bot's own web server: a health check, and the routes channels add (webhooks, Slack).

How a channel refuses a request its sender got wrong is in `bot/channels/http.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.channels.http import MAX_BODY

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


def make_web_app(database: DatabaseCheck | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", _healthz(database))
    return app


async def start_web(
    app: web.Application, host: str, port: int, shared: bool = False
) -> web.AppRunner:
    """Serve `app`; `shared`: bind with SO_REUSEPORT, beside other workers on the port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=shared or None).start()
    return runner
