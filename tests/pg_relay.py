"""A TCP relay standing for PostgreSQL's port, for tests of what a client sees when the
server or the network between them fails: a restart (`shut_down`, `cut`), or a
connection cut without a word (`go_silent`). The server itself is shared with other
tests and is never restarted.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

Pipe = tuple[asyncio.StreamWriter, asyncio.StreamWriter]  # the client's end, the server's


def fatal(code: str, message: str) -> bytes:
    """A PostgreSQL ErrorResponse message of severity FATAL, as a server sends it before
    it ends a session."""
    fields = b"".join(
        kind + text.encode() + b"\0"
        for kind, text in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


# What each session of a server shutting down (or restarting) says to its client.
SHUTDOWN = fatal("57P01", "terminating connection due to administrator command")


class Relay:
    """A TCP relay to PostgreSQL, standing for the server's port: `cut` stops listening
    and resets every connection through it (the server's sessions end, their open
    transactions rolled back), as a restart does; `restore` listens again, same port."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._parts = parts
        self._server: asyncio.Server | None = None
        self._pipes: set[Pipe] = set()
        self._parting = False  # sessions ended, their clients' sockets still open
        self._silent: set[Pipe] = set()  # cut without a word (`go_silent`)
        self.port = 0
        self.url = ""

    async def start(self) -> Relay:
        self._parting = False
        self._server = await asyncio.start_server(
            self._relay, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        netloc = f"{self._parts.username or 'postgres'}@127.0.0.1:{self.port}"
        self.url = urlunsplit(self._parts._replace(netloc=netloc))
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        pipe = (writer, up_writer)
        self._pipes.add(pipe)
        try:
            await asyncio.gather(
                self._copy(reader, up_writer, pipe), self._copy(up_reader, writer, pipe)
            )
        finally:
            self._pipes.discard(pipe)

    async def _copy(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, pipe: Pipe
    ) -> None:
        try:
            while data := await source.read(65536):
                if pipe in self._silent:
                    continue  # lost on the way
                sink.write(data)
                await sink.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            if not self._parting and pipe not in self._silent:
                sink.transport.abort()

    def go_silent(self) -> None:
        """Every connection through it falls silent both ways, its sockets left open at
        both ends: a connection cut without a word (a NAT or a load balancer that forgot
        it, a cable). Connections made afterwards pass as before."""
        self._silent.update(self._pipes)

    def server_gives_up(self) -> None:
        """The server ends the silent connections' sessions (as its keepalive settings
        make it do, `QUIET_CUT`), letting go of their locks; their clients still hear
        nothing."""
        for pipe in self._silent:
            pipe[1].transport.abort()

    async def shut_down(self) -> None:
        """Each session says FATAL 57P01 to its client and ends, as in a server's shutdown;
        the clients' sockets stay open until `cut` (the moment between the two, which a
        client can be caught in, held open)."""
        self._parting = True
        pipes = list(self._pipes)
        for client, server in pipes:
            server.transport.abort()
            client.write(SHUTDOWN)
        for client, _ in pipes:
            await client.drain()

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, server in list(self._pipes | self._silent):
            client.transport.abort()
            server.transport.abort()
        self._pipes.clear()
        self._silent.clear()
        self._parting = False

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
