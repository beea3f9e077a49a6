"""Connections cut without a word: what the server is asked, and how the bot notices.

A NAT or load balancer that forgets an idle connection, or a machine gone, tells
neither end. Left to the operating systems, the server keeps such a session (and its
advisory locks: a person's conversation, an instance's claim to be alive, the polling
lease) for over two hours, and the bot's side waits on it for as long.

So every connection asks its server (`QUIET_CUT`, user settings sent as it connects)
to probe a client quiet for 10 seconds every 5 seconds and to give it up
`SERVER_GIVES_UP` seconds after it last heard from it; the probes also keep such boxes
from forgetting a connection that is only idle. On the bot's side, a connection that
holds something for a long while (the alive connection, a named lease) is pinged every
`PING_EVERY` seconds, and one that does not answer in `PING_TIMEOUT` is ended, so its
holder hears it lost what it held; what the bot does on the strength of a lock is done
well inside `SERVER_GIVES_UP` of when the server last heard from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any, Protocol

log = logging.getLogger(__name__)

KEEPALIVE_IDLE = 10  # seconds of quiet before the server probes
KEEPALIVE_INTERVAL = 5  # seconds between probes
KEEPALIVE_COUNT = 4  # probes unanswered before it gives up
# How long after it last heard from a client the server gives it up, at the soonest
# (on Linux, `tcp_user_timeout` also bounds data the client has not acknowledged).
SERVER_GIVES_UP = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT
QUIET_CUT = {
    "tcp_keepalives_idle": str(KEEPALIVE_IDLE),
    "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL),
    "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    "tcp_user_timeout": str(SERVER_GIVES_UP * 1000),
}

PING_EVERY = 2.0
PING_TIMEOUT = 5.0


class Pingable(Protocol):
    async def fetchval(self, query: str, *args: Any) -> Any: ...

    def is_closed(self) -> bool: ...

    def terminate(self) -> None: ...


async def ping(
    connection: Pingable, what: str, answered: Callable[[float], None] = lambda sent: None
) -> bool:
    """Ask the connection whether it is there. Answered: `answered` hears when the ping
    was sent (monotonic), and True. Not answered in PING_TIMEOUT: the connection is ended
    (its locks let go, its holder told by its being closed), and False."""
    sent = monotonic()
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            await connection.fetchval("SELECT 1")
    except Exception as error:
        log.error("the connection %s did not answer (%s): it is ended", what, error)
        connection.terminate()
        return False
    answered(sent)
    return True


async def keep_pinging(
    connection: Pingable,
    what: str,
    *,
    answered: Callable[[float], None] = lambda sent: None,
    guard: asyncio.Lock | None = None,
) -> None:
    """Ping the connection every PING_EVERY seconds for as long as it is open (under
    `guard`, if others use it too: one query at a time), telling `answered` when each
    answered ping was sent. Ends once the connection is closed, or ended for silence."""
    while True:
        await asyncio.sleep(PING_EVERY)  # a heartbeat's period, not a test's wait
        async with guard if guard is not None else contextlib.nullcontext():
            if connection.is_closed() or not await ping(connection, what, answered):
                return


async def stop(task: asyncio.Task[None] | None) -> None:
    """Stop a pinging task and wait until it has (its own cancellation is not this
    caller's: a caller cancelled meanwhile still is)."""
    if task is None:
        return
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: any error was logged where it happened
