"""The console's chat side: `/console` answers, privately, with a one-time sign-in link.

Coordinators, facilitators and admins open the web console (`bot/console/`) with a
link the bot sends them: there are no passwords and no email addresses. The link
carries a random token; only its hash is kept (a record of kind `console-link`,
with the person's pseudonym and language), written in the same transaction as the
message that carries it, and it expires after ten minutes. The web side takes it
with `take_record`, so the database decides that one visit, and only one, gets it.

`/console` is declared only when the console is on (`KT_CONSOLE` or `KT_PUBLIC_URL`):
without one there is nothing to link to. It works only in a private chat (the
router's default), so a link never lands in a group.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.conversation.router import Router
from bot.conversation.turn import Turn
from bot.features.roles import ADMIN, COORDINATOR, FACILITATOR
from storage.protocol import RecordStore
from storage.rows import RecordRow

LINK = "console-link"
LINK_LASTS = timedelta(minutes=10)
# Who may sign in to the console at all; each page narrows it (bot/console/pages.py).
CONSOLE_ROLES = frozenset({FACILITATOR, COORDINATOR, ADMIN})
# The pages about every guide (results, themes, schedules, open data): not a facilitator's.
STAFF = frozenset({COORDINATOR, ADMIN})
SIGNIN_PATH = "/signin"


@dataclass(frozen=True)
class Holder:
    """Whom a sign-in link was made for: a pseudonym, and the language to greet them in."""

    pseudonym: str
    language: str


def token_hash(token: str) -> str:
    """How a token is kept: a copied database holds no link that works."""
    return hashlib.sha256(token.encode()).hexdigest()


class ConsoleLinks:
    """Makes one-time sign-in links (from chat and the command line) and takes them back."""

    def __init__(self, storage: RecordStore, address: str, clock: Callable[[], datetime]) -> None:
        self.storage = storage
        self.address = address.rstrip("/")  # the console's own address: .../console
        self.clock = clock

    def register(self, router: Router) -> None:
        router.command("console", self._command, roles=CONSOLE_ROLES, refusal="console_only_roles")

    def url(self, token: str) -> str:
        return f"{self.address}{SIGNIN_PATH}?t={token}"

    @staticmethod
    def _record(pseudonym: str, language: str, now: datetime) -> tuple[str, RecordRow]:
        token = secrets.token_urlsafe(32)
        value = json.dumps({"p": pseudonym, "l": language}).encode()
        return token, RecordRow(LINK, token_hash(token), value, now + LINK_LASTS)

    async def _command(self, turn: Turn, arg: str) -> str | None:
        token, record = self._record(turn.actor, turn.language, turn.now)
        turn.commit.records.append(record)  # with the message that carries it: one commit
        minutes = int(LINK_LASTS.total_seconds() // 60)
        turn.privately(turn.text("console_link", link=self.url(token), minutes=minutes))
        return None

    async def issue(self, pseudonym: str, language: str = "en") -> str:
        """A sign-in link for someone (the command line's, for an admin)."""
        token, record = self._record(pseudonym, language, self.clock())
        await self.storage.put_record(LINK, record.key, record.value, record.expires_at)
        return self.url(token)

    async def usable(self, token: str) -> bool:
        """Whether a link would still sign someone in (without using it up)."""
        return await self.storage.record(LINK, token_hash(token), self.clock()) is not None

    async def take(self, token: str) -> Holder | None:
        """Use a link up: whom it was for, or None if it was used, expired or never made."""
        value = await self.storage.take_record(LINK, token_hash(token), self.clock())
        if value is None:
            return None
        found = json.loads(value)
        return Holder(str(found["p"]), str(found.get("l") or "en"))
