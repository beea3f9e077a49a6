"""The small HTTP/1.1 client that carries the Bot API calls of every tap (#19), against a
server on 127.0.0.1 that answers with bytes written by hand: the ways a real server
may frame an answer, keep or close its connection, or fail to answer at all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut

from bot.channels.telegram.request import AiohttpRequest
from bot.channels.telegram.wire import KEEP_IDLE, Wire, WireError, WireTimeout
from tests.conftest import FakeClock

OK = b'{"ok":true,"result":{"message_id":7}}'


def answer(body: bytes = OK, *, status: str = "200 OK", extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


@dataclass
class Server:
    """Reads each request whole, then writes what `reply` returns for it (None: nothing,
    and the connection stays open; b"": close it; an HTTP/1.0 answer or one that says
    "Connection: close" is followed by closing)."""

    reply: Callable[[int], bytes | None]
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    connections: int = 0
    url: str = ""
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/bot1:T/sendMessage"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((head, await reader.readexactly(length)))
                out = self.reply(len(self.requests))
                if out is None:
                    await asyncio.sleep(3600)
                if not out:
                    break
                writer.write(out)
                await writer.drain()
                if out.startswith(b"HTTP/1.0") or b"Connection: close" in out:
                    break  # as such a server does: the answer ends with the connection
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Callable[[int], bytes | None]], Server]]:
    servers: list[Server] = []

    def make(reply: Callable[[int], bytes | None]) -> Server:
        server = Server(reply)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def post(wire: Wire, url: str, fields: object = None, read: float = 2.0) -> tuple[int, bytes]:
    body = json.dumps(fields or {"chat_id": 1, "text": "¿Qué turno?"}, ensure_ascii=False).encode()
    return await wire.post(
        url, body, "application/json", connect_timeout=2, read_timeout=read, pool_timeout=2
    )


async def test_a_call_is_one_json_request_and_the_connection_is_kept_for_the_next(serve):
    server = serve(lambda n: answer())
    await server.start()
    wire = Wire(4, user_agent="kt-test")
    try:
        for _ in range(3):
            assert await post(wire, server.url) == (200, OK)
    finally:
        await wire.close()
    assert server.connections == 1
    head, body = server.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /bot1:T/sendMessage HTTP/1.1"
    assert "Content-Type: application/json" in lines and "User-Agent: kt-test" in lines
    assert json.loads(body) == {"chat_id": 1, "text": "¿Qué turno?"}  # UTF-8, as sent


async def test_chunked_answers_and_closed_connections_are_read_whole(serve):
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n" + OK[:5] + b"\r\n" + f"{len(OK) - 5:x}".encode() + b"\r\n" + OK[5:] + b"\r\n"
        b"0\r\n\r\n"
    )
    replies = {
        1: chunked,
        2: answer(extra="Connection: close\r\n"),
        3: b"HTTP/1.1 100 Continue\r\n\r\n" + answer(),
        4: b"HTTP/1.0 200 OK\r\n\r\n" + OK,  # no length: the body ends with the connection
    }

    def reply(n: int) -> bytes | None:
        return replies.get(n, answer())

    server = serve(reply)
    await server.start()
    wire = Wire(4)
    try:
        for _ in range(5):
            assert await post(wire, server.url) == (200, OK)
    finally:
        await wire.close()
    # Kept after the chunked answer and after the 100; new after "close" and after 1.0.
    assert server.connections == 3


async def test_an_answer_that_never_comes_times_out_and_its_connection_is_not_reused(serve):
    server = serve(lambda n: None if n == 1 else answer())
    await server.start()
    wire = Wire(4)
    try:
        with pytest.raises(WireTimeout):
            await post(wire, server.url, read=0.2)
        assert await post(wire, server.url) == (200, OK)
    finally:
        await wire.close()
    assert server.connections == 2


async def test_a_connection_cut_short_is_an_error_and_the_next_call_connects_again(serve):
    # The first request is read, and its connection closed without a word.
    server = serve(lambda n: b"" if n == 1 else answer())
    await server.start()
    wire = Wire(4)
    try:
        with pytest.raises(WireError):
            await post(wire, server.url)
        assert await post(wire, server.url) == (200, OK)
    finally:
        await wire.close()
    assert server.connections == 2


async def test_a_connection_idle_too_long_is_not_reused(serve):
    server = serve(lambda n: answer())
    await server.start()
    clock = FakeClock()
    wire = Wire(4, clock=lambda: clock.now.timestamp())
    try:
        await post(wire, server.url)
        clock.advance(seconds=KEEP_IDLE + 1)
        await post(wire, server.url)
    finally:
        await wire.close()
    assert server.connections == 2


async def test_nobody_listening_is_an_error_not_a_hang():
    wire = Wire(4)
    with pytest.raises(WireError):
        await post(wire, "http://127.0.0.1:9/bot1:T/sendMessage")
    await wire.close()


async def test_post_json_raises_what_python_telegram_bot_would(serve):
    """The channel reads these exceptions (a 429 waits, a 400 is dropped, the rest retry)."""
    bodies = {
        1: answer(b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}',
                  status="400 Bad Request"),
        2: answer(b'{"ok":false,"error_code":429,"description":"Too Many Requests",'
                  b'"parameters":{"retry_after":3}}', status="429 Too Many Requests"),
        3: answer(b"<html>bad gateway</html>", status="502 Bad Gateway"),
        4: None,
    }  # fmt: skip
    server = serve(lambda n: bodies.get(n, answer()))
    await server.start()
    request = AiohttpRequest(connections=2, read_timeout=0.3)
    await request.initialize()
    try:
        with pytest.raises(BadRequest, match="(?i)chat not found"):
            await request.post_json(server.url, {"chat_id": 1})
        with pytest.raises(RetryAfter):
            await request.post_json(server.url, {"chat_id": 1})
        with pytest.raises(NetworkError):
            await request.post_json(server.url, {"chat_id": 1})
        with pytest.raises(TimedOut):
            await request.post_json(server.url, {"chat_id": 1})
        assert await request.post_json(server.url, {"chat_id": 1}) == {"message_id": 7}
    finally:
        await request.shutdown()
