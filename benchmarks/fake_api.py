"""A lean fake Telegram Bot API for benchmarks: answers fast, hands each chat's
messages to whoever waits for them, and can enforce a send-rate limit with 429.

It also keeps what a person would see to tap on (each chat's inline keyboards, by
message id, edits included) and counts every call it takes, in all and per chat,
so a benchmark can tap like a person and report the platform calls per answer.

For several bot instances at once it keeps every setWebhook (each instance registers
its own URL), and to count lost and duplicated messages, each chat's texts and when
the first and last message were taken."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from typing import Any

from aiohttp import web

TOKEN = "424242:BENCH"


class FakeApi:
    def __init__(self, rate_limit: float | None = None) -> None:
        self.inboxes: defaultdict[int, asyncio.Queue[str]] = defaultdict(asyncio.Queue)
        self.webhook: dict[str, Any] = {}
        self.webhook_set = asyncio.Event()
        self.webhooks: list[dict[str, Any]] = []  # every setWebhook, one per instance
        self.sent = 0
        self.refused = 0
        # Each chat's texts, by how often it got each: a text twice is a duplicate
        # (every message a guide sends a person in a benchmark differs from the others).
        self.texts: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.first_sent = self.last_sent = 0.0  # monotonic times of the first and last
        # Messages taken in each second from the first: where a run's sending lags.
        self.per_second: Counter[int] = Counter()
        # Every call taken, by method, and how many concern each chat (a tap's
        # answerCallbackQuery is a chat's when its query id starts "<chat>-").
        self.calls: Counter[str] = Counter()
        self.called = asyncio.Event()  # set on every call, for waiting until calls stop
        self.chat_calls: defaultdict[int, Counter[str]] = defaultdict(Counter)
        # Each chat's inline keyboards, {message_id: reply_markup}, oldest first.
        self.keyboards: defaultdict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
        self.rate_limit = rate_limit
        self._window_start = time.monotonic()
        self._window_count = 0
        self._ids = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._endpoint)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stats(self, _: web.Request) -> web.Response:
        """How many messages each chat got, as {messages: chats}, and the totals."""
        spread = Counter(queue.qsize() for queue in self.inboxes.values())
        return web.json_response(
            {"sent": self.sent, "refused": self.refused,
             "chats_by_messages": {str(k): v for k, v in spread.items()},
             "duplicates": self.duplicates(), "sending_s": self.last_sent - self.first_sent,
             "per_second": [self.per_second[n] for n in range(max(self.per_second, default=-1) + 1)],
             "webhooks": len(self.webhooks)}
        )  # fmt: skip

    def duplicates(self) -> int:
        """Messages a chat got with the same text as an earlier one."""
        return sum(n - 1 for texts in self.texts.values() for n in texts.values() if n > 1)

    async def webhooks_set(self, instances: int) -> None:
        """Wait until `instances` bots have each registered their webhook (a minute at most)."""
        async with asyncio.timeout(60):
            while len(self.webhooks) < instances:
                self.webhook_set.clear()
                await self.webhook_set.wait()

    def reset(self) -> None:
        self.inboxes.clear()
        self.keyboards.clear()
        self.calls.clear()
        self.chat_calls.clear()
        self.webhook = {}
        self.webhook_set = asyncio.Event()
        self.webhooks = []
        self.texts.clear()
        self.sent = self.refused = 0
        self.first_sent = self.last_sent = 0.0
        self.per_second.clear()

    def _over_limit(self) -> float:
        if self.rate_limit is None:
            return 0.0
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        if self._window_count >= self.rate_limit:
            return 1.0 - (now - self._window_start)
        self._window_count += 1
        return 0.0

    def newest_keyboard(self, chat: int) -> tuple[int, dict[str, Any]] | None:
        """The chat's newest message that still has buttons to tap, and its keyboard."""
        for message_id, markup in reversed(self.keyboards[chat].items()):
            if any(
                "callback_data" in button and button["callback_data"] != "noop"
                for row in markup.get("inline_keyboard", [])
                for button in row
            ):
                return message_id, markup
        return None

    def _count(self, method: str, params: dict[str, str]) -> int | None:
        """Count the call; the chat it concerns, if any."""
        self.calls[method] += 1
        self.called.set()
        chat: int | None = None
        if "chat_id" in params:
            chat = int(params["chat_id"])
        elif "callback_query_id" in params:
            head = params["callback_query_id"].split("-", 1)[0]
            chat = int(head) if head.lstrip("-").isdigit() else None
        if chat is not None:
            self.chat_calls[chat][method] += 1
        return chat

    def _keep_keyboard(self, method: str, chat: int | None, params: dict[str, str]) -> None:
        if chat is None:
            return
        markup = params.get("reply_markup")
        keyboard = json.loads(markup) if markup and "inline_keyboard" in markup else None
        if method == "sendMessage":
            if keyboard is not None:
                self.keyboards[chat][self._ids] = keyboard
        elif "message_id" in params and int(params["message_id"]) in self.keyboards[chat]:
            # An edit without a keyboard takes the message's buttons away, as Telegram does.
            self.keyboards[chat][int(params["message_id"])] = keyboard or {}

    async def _endpoint(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":  # the Bot API takes JSON bodies too
            params = {
                k: v if isinstance(v, str) else json.dumps(v)
                for k, v in (await request.json()).items()
            }
        else:
            params = {k: str(v) for k, v in (await request.post()).items()}
        chat = self._count(method, params)
        if method == "getMe":
            result: Any = {
                "id": 424242,
                "is_bot": True,
                "first_name": "Bench",
                "username": "BenchBot",
            }
        elif method == "setWebhook":
            self.webhook = params
            self.webhooks.append(params)
            self.webhook_set.set()
            result = True
        elif method == "sendMessage":
            wait = self._over_limit()
            if wait > 0:
                self.refused += 1
                body = {"ok": False, "error_code": 429, "description": "Too Many Requests",
                        "parameters": {"retry_after": max(1, round(wait))}}  # fmt: skip
                return web.json_response(body, status=429)
            assert chat is not None, "sendMessage names its chat"
            self.sent += 1
            self.last_sent = time.monotonic()
            self.first_sent = self.first_sent or self.last_sent
            self.per_second[int(self.last_sent - self.first_sent)] += 1
            self._ids += 1
            self.texts[chat][params.get("text", "")] += 1
            self._keep_keyboard(method, chat, params)
            self.inboxes[chat].put_nowait(params.get("text", ""))
            result = {"message_id": self._ids, "date": 0, "chat": {"id": chat, "type": "private"}}
        elif method in ("editMessageReplyMarkup", "editMessageText"):
            self._keep_keyboard(method, chat, params)
            result = True
        else:
            result = True
        return web.Response(
            text=json.dumps({"ok": True, "result": result}), content_type="application/json"
        )


async def serve_forever(rate_limit: float | None) -> None:
    """Run on its own (a second process, a second core): print the URL, then serve."""
    api = FakeApi(rate_limit)
    await api.start()
    print(api.url, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(serve_forever(float(sys.argv[1]) if len(sys.argv) > 1 else None))
