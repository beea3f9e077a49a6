"""The terminal channel: a real adapter that reads lines from stdin and prints replies.

It is how a guide author tries a guide without any token, and what the
end-to-end tests lean on. A line is one answer: a number or a label for a
choice, comma-separated for several, yes or no for consent, or a /command.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TextIO

import segno

from bot.delivery.channel import Capabilities, RetryAfter, SendResult, Sent
from bot.flows.events import DONE_VALUE
from bot.flows.phrases import Phrasebook
from bot.messages import Outbound

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
