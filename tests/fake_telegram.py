"""A small fake Telegram Bot API server on 127.0.0.1, spoken to over real HTTP.

It keeps what the bot sent, serves queued updates to getUpdates, and can be told
to answer a method with 429, 403 or 500 the next few times it is called.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token"
# A "hang" fault answers nothing for this long: far past the read timeout the tests give
# the bot, so the bot must give up and retry on its own.
HANG_SECONDS = 30.0
BOT_USER = {
    "id": 123456,
    "is_bot": True,
    "first_name": "Kitchen Table",
    "username": "KitchenTableBot",
}


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class FakeTelegram:
    calls: list[Call] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None
    _new_update: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    chaos: random.Random | None = None  # when set, sends fail at random...
    chaos_rate: float = 0.3  # ...this often, in one of several ways

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._endpoint)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # What tests use --------------------------------------------------------

    async def wait_until(self, predicate: Any, seconds: float = 20) -> None:
        """Wait until the bot's calls satisfy `predicate` (checked after every call)."""
        async with asyncio.timeout(seconds), self._changed:
            await self._changed.wait_for(predicate)

    def fail_next(self, method: str, status: int, *, after: int = 0, **parameters: Any) -> None:
        """Answer the next call of `method` (or the one after `after` more that go
        through) with this error."""
        self.faults.setdefault(method, []).extend([(0, {})] * after + [(status, parameters)])

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        return [
            c.params
            for c in self.calls
            if c.method == "sendMessage"
            and not c.params.get("_failed")
            and (chat_id is None or int(c.params["chat_id"]) == chat_id)
        ]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [p["text"] for p in self.sent(chat_id)]

    def edits(self) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == "editMessageReplyMarkup"]

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def message_update(
        self,
        chat_id: int,
        text: str | None,
        *,
        chat_type: str = "private",
        language: str = "en",
        **extra: Any,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": next(self._ids),
            "date": 1767000000,
            "chat": {"id": chat_id, "type": chat_type},
            "from": {
                "id": abs(chat_id) if chat_type == "private" else 777,
                "is_bot": False,
                "first_name": "Secret Name",
                "username": "secret_handle",
                "language_code": language,
            },
        }
        if text is not None:
            message["text"] = text
        message.update(extra)
        return {"update_id": next(self._update_ids), "message": message}

    def tap_update(self, chat_id: int, data: str, message_id: int) -> dict[str, Any]:
        return {
            "update_id": next(self._update_ids),
            "callback_query": {
                "id": str(next(self._ids)),
                "chat_instance": "ci",
                "data": data,
                "from": {
                    "id": chat_id,
                    "is_bot": False,
                    "first_name": "Secret Name",
                    "language_code": "en",
                },
                "message": {
                    "message_id": message_id,
                    "date": 1767000000,
                    "chat": {"id": chat_id, "type": "private"},
                    "text": "question",
                },
            },
        }

    def queue(self, update: dict[str, Any]) -> dict[str, Any]:
        self.updates.append(update)
        self._new_update.set()
        return update

    # The Bot API ---------------------------------------------------------

    async def _endpoint(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        params: dict[str, Any] = {}
        if request.content_type == "application/json":  # the Bot API takes JSON bodies too
            params = await request.json()
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):  # an upload, such as a photo
                    params[key] = value.file.read()
                    continue
                try:
                    params[key] = json.loads(str(value))
                except ValueError:
                    params[key] = str(value)
            if method == "sendMessage" and "text" in params:
                params["text"] = str(form["text"])  # keep texts as sent, even "123"
        self.calls.append(Call(method, params))
        chaotic = self.chaos is not None and method in ("sendMessage", "editMessageReplyMarkup")
        if chaotic and self.chaos is not None and self.chaos.random() < self.chaos_rate:
            params["_failed"] = True
            fault = self.chaos.choice(["500", "429", "garbage", "drop", "hang"])
            params["_fault"] = fault
            if fault == "hang":  # answer nothing until the bot gives up waiting
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), HANG_SECONDS)
                return web.Response(status=504)
            if fault == "garbage":
                return web.Response(text="<html>not json", content_type="text/html")
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if fault == "429":
                body = {
                    "ok": False,
                    "error_code": 429,
                    "description": "slow down",
                    "parameters": {"retry_after": 1},
                }
                return web.json_response(body, status=429)
            return web.json_response(
                {"ok": False, "error_code": 500, "description": "oops"}, status=500
            )
        planned = self.faults.get(method)
        if planned and planned[0][0] == 0:  # one let through before a planned fault
            planned.pop(0)
        elif planned:
            params["_failed"] = True
            status, parameters = planned.pop(0)
            body: dict[str, Any] = {
                "ok": False,
                "error_code": status,
                "description": f"fake error {status}",
            }
            if parameters:
                body["parameters"] = parameters
            return web.json_response(body, status=status)
        if (
            method in ("sendMessage", "editMessageReplyMarkup")
            and int(params.get("chat_id", 0)) in self.blocked
        ):
            return web.json_response(
                {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was blocked by the user",
                },
                status=403,
            )
        result = await self._result(method, params)
        if method == "sendMessage":
            params["_message_id"] = result["message_id"]
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"ok": True, "result": result})

    async def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            pending = [u for u in self.updates if u["update_id"] >= offset]
            if not pending:
                self._new_update.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._new_update.wait(), min(float(params.get("timeout", 0)), 0.2)
                    )
                pending = [u for u in self.updates if u["update_id"] >= offset]
            return pending
        if method in ("sendMessage", "editMessageReplyMarkup", "editMessageText", "sendPhoto"):
            return {
                "message_id": int(params.get("message_id") or next(self._ids)),
                "date": 1767000000,
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": str(params.get("text", "")),
            }
        return True
