"""A small HTTP/1.1 client for the Bot API calls every answer makes: POST JSON, read JSON.

Profiling the tap-heavy inbound benchmark (#19) put a fifth of the event loop's time
in aiohttp's client, building a request object, its headers, cookies and tracing for
each of the 1.8 calls an answer costs: about 128 µs of CPU a call on this machine,
where writing the request on a kept-alive connection and reading its answer by hand
costs about 37. This is that by-hand way, and only for the calls the bot makes most
(`sendMessage`, the edits): everything else PTB does still goes through aiohttp.

What it keeps of HTTP is what the Bot API needs: one request at a time per
connection, kept alive for the next one (at most `connections` at once, each idle
at most `KEEP_IDLE` seconds), TLS for https, answers with a Content-Length, chunked or
read to the end when the server closes. A failed exchange closes its connection, so
nothing half-read is ever reused.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

# Idle connections older than this are closed rather than reused: a server may already
# have closed them (nginx's default is 75 s, aiohttp's client keeps them 15 s).
KEEP_IDLE = 15.0
MAX_HEAD = 64 * 1024  # the status line and headers of an answer
MAX_BODY = 64 * 1024 * 1024


class WireError(Exception):
    """The exchange failed on the wire (refused, reset, cut short, not HTTP)."""


class WireTimeout(WireError):
    """No connection, or no answer, within the time allowed."""


class Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def close(self) -> None:
        self.writer.close()


class Origin:
    """The kept-alive connections to one scheme://host:port."""

    def __init__(self, scheme: str, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        default = 443 if scheme == "https" else 80
        self.host_header = host if port == default else f"{host}:{port}"
        self.idle: deque[Connection] = deque()


class Wire:
    """POST a body to a URL and read the answer, on connections kept alive between calls."""

    def __init__(
        self,
        connections: int = 64,
        *,
        user_agent: str = "kitchen-table",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = asyncio.Semaphore(connections)
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._user_agent = user_agent
        self._clock = clock
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def post(
        self,
        url: str,
        body: bytes,
        content_type: str,
        *,
        connect_timeout: float | None,
        read_timeout: float | None,
        pool_timeout: float | None,
    ) -> tuple[int, bytes]:
        """The answer's status and body. Raises WireTimeout or WireError."""
        if self._closed:
            raise WireError("the connections are closed")
        origin, target = self._origin(url)
        try:
            async with asyncio.timeout(pool_timeout):
                await self._slots.acquire()
        except TimeoutError as error:
            raise WireTimeout("no free connection in time") from error
        try:
            connection = self._idle(origin) or await self._connect(origin, connect_timeout)
            head = (
                f"POST {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"
                f"User-Agent: {self._user_agent}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            try:
                async with asyncio.timeout(read_timeout):
                    connection.writer.write(head.encode("latin-1") + body)
                    await connection.writer.drain()
                    status, answer, reusable = await _read_answer(connection.reader)
            except TimeoutError as error:
                connection.close()
                raise WireTimeout("no answer in time") from error
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ValueError) as error:  # fmt: skip
                connection.close()
                raise WireError(f"{type(error).__name__}: {error}") from error
            if reusable and not self._closed:
                connection.idle_since = self._clock()
                origin.idle.append(connection)
            else:
                connection.close()
            return status, answer
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Close every idle connection; those in use close when their exchange ends."""
        self._closed = True
        for origin in self._origins.values():
            while origin.idle:
                origin.idle.pop().close()

    def _origin(self, url: str) -> tuple[Origin, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key = (parts.scheme, parts.hostname, port)
        origin = self._origins.get(key)
        if origin is None:
            tls = None
            if parts.scheme == "https":
                if self._tls is None:
                    self._tls = ssl.create_default_context()
                tls = self._tls
            origin = self._origins[key] = Origin(parts.scheme, parts.hostname, port, tls)
        target = parts.path or "/"
        return origin, f"{target}?{parts.query}" if parts.query else target

    def _idle(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection still worth reusing, if any."""
        oldest = self._clock() - KEEP_IDLE
        while origin.idle:
            connection = origin.idle.pop()
            if connection.idle_since >= oldest and not connection.reader.at_eof():
                return connection
            connection.close()  # the server may have closed it, or has
        return None

    async def _connect(self, origin: Origin, seconds: float | None) -> Connection:
        try:
            async with asyncio.timeout(seconds):
                reader, writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=origin.tls, limit=MAX_HEAD,
                    server_hostname=origin.host if origin.tls else None,
                )  # fmt: skip
        except TimeoutError as error:
            raise WireTimeout(f"could not connect to {origin.host} in time") from error
        except OSError as error:
            raise WireError(f"could not connect to {origin.host}: {error}") from error
        return Connection(reader, writer)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """An HTTP/1.1 answer: its status, its body, and whether the connection may be reused."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise ValueError("the answer is not HTTP/1.x")
        status = int(rest[:3])
        if status >= 200 or status == 101:
            break  # 1xx answers (100 Continue) come before the real one
    length: int | None = None
    chunked = False
    reusable = version == b"HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            token = value.strip().lower()
            reusable = token == b"keep-alive" or (reusable and token != b"close")
    if status in (204, 304):
        return status, b"", reusable
    if chunked:
        return status, await _read_chunks(reader), reusable
    if length is not None:
        if length > MAX_BODY:
            raise ValueError("the answer is too long")
        return status, await reader.readexactly(length), reusable
    # Neither: the body ends when the server closes the connection.
    body = await reader.read(-1)
    if len(body) > MAX_BODY:
        raise ValueError("the answer is too long")
    return status, body, False


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise ValueError("the answer is too long")
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("a chunk does not end where it says")
