"""The terminal channel: a real adapter that reads lines from stdin and prints replies.

It is how a guide author tries a guide without any token, and what the
end-to-end tests lean on. A line is one answer: a number or a label for a
choice, comma-separated for several, yes or no for consent, or a /command.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TextIO

import segno

from bot.channels.base import Capabilities, RetryAfter, SendResult, Sent
from bot.conversation.dispatcher import Dispatcher
from bot.delivery.deliverer import Deliverer
from bot.flows.events import DONE_VALUE
from bot.flows.phrases import Phrasebook
from bot.flows.run import RunStatus
from bot.messages import Inbound, NotStored, Outbound
from storage.protocol import STORAGE_FAILURES

CHANNEL = "terminal"
# How often a chat waiting for the next line looks for messages the bot sends on its
# own (a host's `session next` or close, run in another terminal).
POLL_SECONDS = 1.0


def render_plain(message: Outbound) -> str:
    """A message as plain lines, with numbered options to type."""
    if message.edit is not None:
        return ""  # changes to an earlier message's buttons mean nothing in a terminal
    if message.markup is not None:
        return message.markup.get("text", message.text) + "\n\n"
    if message.qr is not None:
        return qr_text(message.qr) + message.text + "\n\n"
    if message.document is not None:  # written to a file by the channel; never here
        return f"{message.text}\n\n"
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

    def __init__(
        self,
        out: TextIO | None = None,
        only: str | None = None,
        *,
        phrases: Phrasebook | None = None,
        folder: Path | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.out = out or sys.stdout
        self.only = only  # print only what is owed to this person (others get it later)
        self.phrases = phrases  # to speak of typing where the bot's help speaks of tapping
        self.folder = folder or Path.cwd()  # where /mydata's file is saved
        self.today = today
        self.prompting = False  # a "> " is waiting for a line: start what arrives below it

    async def send(self, address: str, message: Outbound) -> SendResult:
        if self.only is not None and address != self.only:
            return RetryAfter(1.0)  # someone else's: theirs to read when they come back
        if message.document is not None:
            saved = self._save(message.document)
            text = f"{message.text}\n  {saved}\n\n"
        else:
            text = self._for_typing(render_plain(message))
        if not text:
            return Sent()
        if self.prompting:
            self.out.write("\n")
            self.prompting = False
        self.out.write(text)
        self.out.flush()
        return Sent()

    def _save(self, document: str) -> Path:
        """Someone's own data, as the JSON file the other channels attach: in the folder
        the chat was started from, readable by its owner only, never over an older one."""
        stem = f"kitchen-table-mydata-{self.today().isoformat()}"
        path = self.folder / f"{stem}.json"
        number = 1
        while True:
            try:
                handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                number += 1
                path = self.folder / f"{stem}-{number}.json"
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(document + "\n")
        return path

    def _for_typing(self, text: str) -> str:
        """The help, in words for a keyboard: there are no buttons here to tap."""
        if self.phrases is None or not text:
            return text
        for language in self.phrases.languages:
            tapping = self.phrases.text(language, "help")
            at = text.find(tapping)
            if at >= 0:
                typing = self.phrases.text(language, "help_terminal")
                return text[:at] + typing + text[at + len(tapping) :]
        return text


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
    """Walk one person through a guide; exit 0 when it ends or input runs out."""
    source = stdin or sys.stdin
    echo = out or sys.stdout
    interactive = source.isatty()
    channel = deliverer.channels.get(CHANNEL)
    terminal = channel if isinstance(channel, TerminalChannel) else None

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
