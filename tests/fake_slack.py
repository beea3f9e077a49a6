"""A small fake of Slack's Web API on 127.0.0.1, for real HTTP from slack_sdk.

It keeps every call, answers chat.postMessage / chat.update / views.publish /
auth.test / oauth.v2.access like Slack does, and can be told to fail a method
(`ratelimited` with Retry-After, or any error). Workspaces are tokens: the token
`xoxb-T1` belongs to team T1.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CLIENT_ID = "1111.2222"
CLIENT_SECRET = "client-secret"


@dataclass
class SlackCall:
    method: str
    params: dict[str, Any]
    token: str


@dataclass
class FakeSlack:
    calls: list[SlackCall] = field(default_factory=list)
    faults: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(
        default_factory=dict
    )
    url: str = ""
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # Socket Mode: the bot's open connection, and the envelope ids it acknowledged.
    socket: web.WebSocketResponse | None = None
    acks: list[str] = field(default_factory=list)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._endpoint)
        app.router.add_get("/ws", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/"

    async def stop(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # What tests use --------------------------------------------------------

    def fail(
        self, method: str, status: int, body: dict[str, Any], *, after: int = 0, **headers: str
    ) -> None:
        """Answer the next call of `method` (or the one after `after` more that go
        through) with this error."""
        planned = self.faults.setdefault(method, [])
        planned.extend([(0, {}, {})] * after + [(status, body, headers)])

    def posts(self, team: str, user: str) -> list[dict[str, Any]]:
        """Messages the bot posted to a person, in order."""
        return [
            c.params
            for c in self.calls
            if c.method == "chat.postMessage"
            and c.token == f"xoxb-{team}"
            and c.params.get("channel") == user
            and not c.params.get("_failed")
        ]

    def texts(self, team: str, user: str) -> list[str]:
        return [p.get("text", "") for p in self.posts(team, user)]

    def updates(self) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == "chat.update"]

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    async def wait_until(self, predicate: Any, seconds: float = 20) -> None:
        """Wait until the bot's calls (or acks) satisfy `predicate`."""
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(predicate)

    async def push(self, kind: str, payload: dict[str, Any], envelope_id: str) -> None:
        """Send an envelope down the Socket Mode connection, as Slack does."""
        assert self.socket is not None, "the bot has not connected"
        await self.socket.send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": kind != "events_api",
                "payload": payload,
            }
        )

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.socket = socket
        await socket.send_json({"type": "hello", "num_connections": 1})
        await self._notify()
        async for message in socket:
            data = json.loads(message.data)
            if "envelope_id" in data:
                self.acks.append(data["envelope_id"])
                await self._notify()
        return socket

    # The Web API -----------------------------------------------------------

    async def _endpoint(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params: dict[str, Any] = await request.json()
        else:
            params = dict(await request.post())
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        call = SlackCall(method, params, token)
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        planned = self.faults.get(method)
        if planned and planned[0][0] == 0:  # one let through before a planned fault
            planned.pop(0)
        elif planned:
            params["_failed"] = True
            status, body, headers = planned.pop(0)
            return web.json_response(body, status=status, headers=headers)
        if method == "oauth.v2.access":
            return self._oauth(request, params)
        if method == "apps.connections.open":
            if not token.startswith("xapp-"):
                return web.json_response({"ok": False, "error": "invalid_auth"})
            ws = self.url.replace("http://", "ws://").replace("/api/", "/ws")
            return web.json_response({"ok": True, "url": ws})
        team = token.removeprefix("xoxb-")
        if not token.startswith("xoxb-T"):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return web.json_response(
                {"ok": True, "team_id": team, "user_id": f"UBOT{team}", "bot_id": f"BBOT{team}"}
            )
        if method in ("chat.postMessage", "chat.update"):
            ts = params.get("ts") or f"1767000000.{next(self._ts):06d}"
            params["_ts"] = ts
            return web.json_response({"ok": True, "channel": f"D{params['channel']}", "ts": ts})
        if method == "views.publish":
            return web.json_response({"ok": True, "view": params.get("view", {})})
        return web.json_response({"ok": False, "error": "unknown_method"})

    def _oauth(self, request: web.Request, params: dict[str, Any]) -> web.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return web.json_response({"ok": False, "error": "invalid_client_id"})
        code = str(params.get("code", ""))
        if not code.startswith("code-T"):
            return web.json_response({"ok": False, "error": "invalid_code"})
        team = code.removeprefix("code-")
        return web.json_response(
            {
                "ok": True,
                "app_id": "A1",
                "access_token": f"xoxb-{team}",
                "token_type": "bot",
                "scope": "chat:write,commands,im:history,im:read,im:write",
                "bot_user_id": f"UBOT{team}",
                "team": {"id": team, "name": f"Workspace {team}"},
                "enterprise": None,
                "is_enterprise_install": False,
                "authed_user": {"id": f"UADMIN{team}"},
            }
        )


def signed_headers(
    body: str, secret: str, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with a request: its timestamp and signature over the body."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }
