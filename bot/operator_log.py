"""The operator's log: what the bot is doing, at INFO, with no secret in it.

Libraries log what helps their own developers: python-telegram-bot and httpx put
the request URL, which holds `bot<token>`, into messages; slack_sdk logs a full
traceback on every failed reconnection; slack_bolt warns that a token "will be
unused" when we pass our own client (on purpose). Here every line loses any
secret it would show, tracebacks from the platforms' retry loops become one line,
and the libraries' chatter stays below the operator's level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

FORMAT = "%(levelname)s %(name)s: %(message)s"
HIDDEN = "<hidden>"
# Libraries whose INFO lines are for their developers (request URLs, reconnect chatter).
QUIET = ("httpx", "httpcore", "telegram", "apscheduler", "slack_sdk", "slack_bolt", "aiohttp")
# Warnings that say nothing an operator can act on.
UNACTIONABLE = ("`token` will be unused",)
# Loggers whose retry loops log a traceback per failure: one line is enough.
RETRYING = ("slack_bolt", "slack_sdk")


class Redact(logging.Filter):
    """Replaces every secret in a record's message (and its traceback) with <hidden>."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def hide(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        hidden = self.hide(message)
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted here so the traceback can be searched too; cached on the record.
            record.exc_text = self.hide(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if hidden != message:
            record.msg, record.args = hidden, None
        return True


class Quieten(logging.Filter):
    """Drops unactionable library warnings; one line instead of a retry loop's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(words in message for words in UNACTIONABLE):
            return False
        if record.name.startswith(RETRYING) and record.exc_info:
            record.exc_info, record.exc_text = None, None
        return True


def configure(secrets: Iterable[str] = (), level: int = logging.INFO) -> logging.Handler:
    """Log to stderr at `level`, every line filtered; returns the handler (tests use it)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(Quieten())
    handler.addFilter(Redact(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return handler
