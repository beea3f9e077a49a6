"""python-telegram-bot's HTTP requests, made with aiohttp instead of httpx.

PTB lets a bot bring its own `BaseRequest`. We do, because profiling the inbound
benchmark showed two thirds of the event loop's time in httpx/httpcore's pool
(every request walks every pooled connection and asks each socket for its peer
name). aiohttp is already how the bot serves webhooks, and its client pool costs
a small fraction of that. PTB still builds every call and reads every answer:
only the transport changes.
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

FORM = "application/x-www-form-urlencoded"


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
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized")
        read = _chosen(read_timeout, self._read_timeout)
        # aiohttp has no write timeout of its own: the whole call may take connect + read
        # (+ write) at most, which is what PTB's timeouts add up to.
        write = _chosen(write_timeout, self._read_timeout)
        connect = _chosen(connect_timeout, self._connect_timeout)
        pool = _chosen(pool_timeout, self._pool_timeout)
        parts = [t for t in (read, write, connect, pool) if t is not None]
        timeout = aiohttp.ClientTimeout(
            total=sum(parts) if len(parts) == 4 else None,
            sock_connect=connect,
            sock_read=read,
        )
        body: bytes | aiohttp.FormData | None = None
        headers: dict[str, str] = {}
        if request_data is not None:
            files = request_data.multipart_data
            if files:
                body = _multipart(request_data, files)
            else:
                body = request_data.url_encoded_parameters().encode()
                headers["Content-Type"] = FORM
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            # The class name says what went wrong when the message is empty.
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error


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
