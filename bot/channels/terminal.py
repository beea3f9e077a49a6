"""The terminal channel: a real adapter that reads lines from stdin and prints replies.

It is how a guide author tries a guide without any token, and what the
end-to-end tests lean on. A line is one answer: a number or a label for a
choice, comma-separated for several, yes or no for consent, or a /command.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from typing import TextIO

import segno

from bot.channels.base import Capabilities, RetryAfter, SendResult, Sent
from bot.delivery import Deliverer
from bot.dispatcher import Dispatcher
from bot.flows.events import DONE_VALUE
from bot.flows.run import RunStatus
from bot.messages import Inbound, NotStored, Outbound

CHANNEL = "terminal"


def render_plain(message: Outbound) -> str:
    """A message as plain lines, with numbered options to type."""
    if message.edit is not None:
        return ""  # changes to an earlier message's buttons mean nothing in a terminal
    if message.markup is not None:
        return message.markup.get("text", message.text) + "\n\n"
    if message.qr is not None:
        return qr_text(message.qr) + message.text + "\n\n"
    if message.document is not None:
        return f"{message.text}\n{message.document}\n\n"
    head = f"[{message.progress}] " if message.progress else ""
    lines = [head + message.text]
    if message.input == "scale":
        lines.append("   " + "  ".join(button.label for button in message.buttons))
    elif message.buttons:
        # Typed answers need no Done button: a line of numbers is the whole answer.
        numbered = [b for b in message.buttons if b.value != DONE_VALUE]
        for number, button in enumerate(numbered, start=1):
            tick = " ✓" if button.chosen else ""
            lines.append(f"  {number}. {button.label}{tick}")
    if message.hint:
        lines.extend(f"  ({line})" for line in message.hint.splitlines())
    return "\n".join(lines) + "\n\n"


def qr_text(link: str) -> str:
    """A QR code drawn with block characters, for a room to scan off a screen."""
    buffer = io.StringIO()
    segno.make(link, error="m").terminal(out=buffer, compact=True)
    return buffer.getvalue() + "\n"


class TerminalChannel:
    name = CHANNEL
    capabilities = Capabilities(edit=False, buttons=True, files=True, groups=False)

    def __init__(self, out: TextIO | None = None, only: str | None = None) -> None:
        self.out = out or sys.stdout
        self.only = only  # print only what is owed to this person (others get it later)

    async def send(self, address: str, message: Outbound) -> SendResult:
        if self.only is not None and address != self.only:
            return RetryAfter(1.0)  # someone else's: theirs to read when they come back
        text = render_plain(message)
        if not text:
            return Sent()
        self.out.write(text)
        self.out.flush()
        return Sent()


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
) -> int:
    """Walk one person through a guide; exit 0 when it ends or input runs out."""
    source = stdin or sys.stdin
    echo = out or sys.stdout
    interactive = source.isatty()

    async def say(text: str) -> bool:
        try:
            handled = await dispatcher.handle(Inbound(CHANNEL, name, name, text, language=language))
        except NotStored:
            # Nothing was saved (the commit is all or nothing): say so once, plainly.
            echo.write(dispatcher.phrases.text(language or "en", "storage_error") + "\n\n")
            return False
        await deliverer.drain(CHANNEL)
        return handled.status is not None and RunStatus(handled.status).ended

    if await say(first):  # `/start GUIDE`, or `/join CODE` for a gathering
        return 0
    lines = _lines_of(source)
    while True:
        if interactive:
            echo.write("> ")
            echo.flush()
        line = await lines.get()
        if line is None:
            return 0
        if await say(line.rstrip("\r\n")):
            return 0
