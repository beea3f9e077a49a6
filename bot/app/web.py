"""The bot's own web server: a health check, and the routes channels add (webhooks, Slack).

How a channel refuses a request its sender got wrong is in `bot/channels/http.py`.
"""

from __future__ import annotations

from aiohttp import web

from bot.channels.http import MAX_BODY


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_web_app() -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", _healthz)
    return app


async def start_web(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
