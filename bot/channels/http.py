"""Reading the requests platforms send to the bot's web server, for the channels.

A request the sender got wrong (not JSON, too large, unsigned, not what the platform
sends) is answered with a 4xx and one line in the log, never a 500 and a stack trace:
it is the sender's mistake, not the bot's, and nothing about it is worth retrying.
"""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)

# Longest a platform's call to the bot waits for what it brought to be handled before it
# is answered 503, so that the platform sends it again (its id makes that harmless: an
# update_id, an event_id). A turn takes milliseconds; one stuck on a database that went
# away mid-call must not hold the call, and the person's turns behind it (their lock),
# for as long as the connection takes to give up.
WEBHOOK_DEADLINE = 10.0
MAX_BODY = 1024 * 1024  # bytes; anything bigger is refused with 413 before it is read


class RequestRefused(Exception):
    """A request refused for the sender's mistake, with the status that says which."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def refuse(request: web.Request, error: RequestRefused) -> web.Response:
    """Answer a bad request, logged in one line."""
    log.warning("refused %s %s (%d): %s", request.method, request.path, error.status, error.reason)
    return web.Response(status=error.status)


async def read_body(request: web.Request) -> bytes:
    """The request's body, or RequestRefused(413) if it is over `MAX_BODY`."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as error:
        raise RequestRefused(413, "its body is too large") from error
