"""python-telegram-bot's HTTP requests, made with aiohttp instead of httpx.

PTB lets a bot bring its own `BaseRequest`. We do, because profiling the inbound
benchmark showed two thirds of the event loop's time in httpx/httpcore's pool
(every request walks every pooled connection and asks each socket for its peer
name). aiohttp is already how the bot serves webhooks, and its client pool costs
a small fraction of that.

`post_json` is the hot path's way in: sending a text message through `Bot.send_message`
builds PTB objects for the call and parses the answer into a `Message` we never read
(a quarter of the bot's CPU per answer, measured with py-spy). It posts the call as
one JSON object (the Bot API takes JSON bodies; encoding them is C, where form
encoding quotes each byte in Python) and raises the same `telegram.error`
exceptions PTB would.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import BaseRequest, RequestData

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` on one `aiohttp.ClientSession` with at most `connections` sockets."""

    def __init__(
        self,
        connections: int = 64,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        write_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        connect_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        pool_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        body: bytes | aiohttp.FormData | None = None
        content_type: str | None = None
        if request_data is not None:
            files = request_data.multipart_data
            if files:
                body = _multipart(request_data, files)
            else:
                body = request_data.url_encoded_parameters().encode()
                content_type = FORM
        timeout = self._timeout(read_timeout, write_timeout, connect_timeout, pool_timeout)
        return await self._exchange(method, url, body, content_type, timeout)

    async def post_json(self, url: str, fields: dict[str, Any]) -> Any:
        """POST a Bot API call as JSON; its `result`, or the `TelegramError` it means."""
        timeout = self._timeout(*(BaseRequest.DEFAULT_NONE,) * 4)
        body = json.dumps(fields, ensure_ascii=False).encode()
        status, payload = await self._exchange("POST", url, body, JSON, timeout)
        try:
            answer = json.loads(payload)
        except ValueError as error:
            raise NetworkError(f"Bot API answered {status} with a body that is not JSON") from error
        if 200 <= status <= 299 and isinstance(answer, dict) and "result" in answer:
            return answer["result"]
        raise api_error(status, answer if isinstance(answer, dict) else {})

    def _timeout(
        self,
        read_timeout: float | object | None,
        write_timeout: float | object | None,
        connect_timeout: float | object | None,
        pool_timeout: float | object | None,
    ) -> aiohttp.ClientTimeout:
        read = _chosen(read_timeout, self._read_timeout)
        # aiohttp has no write timeout of its own: the whole call may take connect + read
        # (+ write) at most, which is what PTB's timeouts add up to.
        write = _chosen(write_timeout, self._read_timeout)
        connect = _chosen(connect_timeout, self._connect_timeout)
        pool = _chosen(pool_timeout, self._pool_timeout)
        parts = [t for t in (read, write, connect, pool) if t is not None]
        return aiohttp.ClientTimeout(
            total=sum(parts) if len(parts) == 4 else None, sock_connect=connect, sock_read=read
        )

    async def _exchange(
        self,
        method: str,
        url: str,
        body: bytes | aiohttp.FormData | None,
        content_type: str | None,
        limits: aiohttp.ClientTimeout,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized")
        headers = {"Content-Type": content_type} if content_type else None
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=limits
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            # The class name says what went wrong when the message is empty.
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error


def api_error(status: int, answer: dict[str, Any]) -> TelegramError:
    """The exception a refused Bot API call means (https://core.telegram.org/bots/api#making-requests)."""
    description = str(answer.get("description") or f"Bot API answered {status}")
    parameters = answer.get("parameters")
    if isinstance(parameters, dict):
        if parameters.get("retry_after"):
            return RetryAfter(int(parameters["retry_after"]))
        if parameters.get("migrate_to_chat_id"):
            return ChatMigrated(int(parameters["migrate_to_chat_id"]))
    if status == 403:
        return Forbidden(description)
    if status == 400:
        return BadRequest(description)
    if status in (401, 404):
        return InvalidToken(description)
    if status == 409:
        return Conflict(description)
    return NetworkError(description)


def _chosen(value: float | object | None, default: float | None) -> float | None:
    if value is BaseRequest.DEFAULT_NONE:
        return default
    return value if isinstance(value, (int, float)) or value is None else default


def _multipart(request_data: RequestData, files: dict[str, object]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in request_data.json_parameters.items():
        form.add_field(key, value)
    for key, upload in files.items():
        if isinstance(upload, tuple):
            name, content, *rest = upload
            form.add_field(key, content, filename=name, content_type=rest[0] if rest else None)
        else:
            form.add_field(key, upload)
    return form
