"""A conversation in the terminal: what `kitchen-table chat` runs.

Part of the composition root: it ties the terminal channel to the dispatcher and to
delivery, which the channel itself never imports. It reads a line at a time (from a
person or a pipe), hands it to the dispatcher, and shows what the bot sends, also
while the person has not typed anything (a paced room's next question).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import TextIO

from bot.channels.terminal.channel import CHANNEL, POLL_SECONDS, TerminalChannel
from bot.conversation.dispatcher import Dispatcher
from bot.delivery.deliverer import Deliverer
from bot.flows.run import RunStatus
from bot.messages import Inbound, NotStored
from storage.protocol import STORAGE_FAILURES


def _lines_of(source: TextIO) -> asyncio.Queue[str | None]:
    """Lines from `source`, read by a daemon thread, then None at the end.

    A daemon thread, not the loop's executor: a thread blocked reading a terminal
    would otherwise keep Ctrl-C from ending the program until Enter is pressed.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in iter(source.readline, ""):
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="terminal-input", daemon=True).start()
    return queue


async def chat(
    dispatcher: Dispatcher,
    deliverer: Deliverer,
    first: str,
    name: str,
    language: str | None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> int:
    """Walk one person through a guide; exit 0 when it is finished (and anything it asked
    at the end is answered) or input runs out."""
    source = stdin or sys.stdin
    echo = out or sys.stdout
    interactive = source.isatty()
    channel = deliverer.channels.get(CHANNEL)
    terminal = channel if isinstance(channel, TerminalChannel) else None

    answering = False  # the guide has ended, with a question of the bot's still open

    async def say(text: str) -> bool:
        nonlocal answering
        try:
            handled = await dispatcher.handle(Inbound(CHANNEL, name, name, text, language=language))
        except NotStored:
            # Nothing was saved (the commit is all or nothing): say so once, plainly.
            echo.write(dispatcher.phrases.text(language or "en", "storage_error") + "\n\n")
            return False
        await deliverer.drain(CHANNEL)
        # The chat ends when the guide is done. Someone who said no, or stopped, is told
        # they can send /start: the chat waits for it (found by review: it had ended),
        # and Ctrl-D (or Ctrl-C) leaves.
        ended = handled.status == RunStatus.FINISHED
        if not ended and not answering:
            return False
        # Ended, unless the end asked something (an offer to keep in touch): that waits
        # for its answer, which it could never get once the chat had gone, and the chat
        # ends once it is answered (found by review).
        person = await dispatcher.storage.participant(dispatcher.identity.pseudonym(CHANNEL, name))
        answering = person is not None and bool(person.pending)
        return not answering

    if await say(first):  # `/start GUIDE`, or `/join CODE` for a gathering
        return 0
    lines = _lines_of(source)
    arriving = asyncio.create_task(_deliver_while_waiting(deliverer, poll_seconds))
    try:
        while True:
            if interactive:
                echo.write("> ")
                echo.flush()
                if terminal is not None:
                    terminal.prompting = True
            line = await lines.get()
            if terminal is not None:
                terminal.prompting = False
            if line is None:
                return 0
            if await say(line.rstrip("\r\n")):
                return 0
    finally:
        arriving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await arriving


async def _deliver_while_waiting(deliverer: Deliverer, seconds: float) -> None:
    """Show what the bot sends on its own while the person has not typed anything (the
    host opened the next question, or closed the gathering), as it arrives."""
    while True:
        await asyncio.sleep(seconds)
        # A failing database is said when the person next types; nothing to add here.
        with contextlib.suppress(*STORAGE_FAILURES):
            await deliverer.drain(CHANNEL)
