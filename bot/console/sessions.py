"""Console sign-in sessions, kept in `records` (kind `console-session`), so every instance
on one database knows them and no migration is needed.

The cookie holds a random token; the record is keyed by its hash, so a copied database
holds no session anyone could use. A session keeps the pseudonym, the language and the
session's CSRF token (`csrf`), and expires with the record; the role is not kept but
read again on every request (`bot/console/app.py`), so a revoked role loses access at once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.features.console import token_hash
from storage.protocol import RecordStore

SESSION = "console-session"
COOKIE = "kt_console"


@dataclass(frozen=True)
class Session:
    key: str  # the record's key: the token's hash
    pseudonym: str
    language: str
    csrf: str
    started: datetime


class Sessions:
    def __init__(
        self, storage: RecordStore, lasts: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self.storage = storage
        self.lasts = lasts
        self.clock = clock

    async def start(self, pseudonym: str, language: str) -> tuple[str, Session]:
        """A new session: the token for the cookie, and the session."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(token_hash(token), pseudonym, language, secrets.token_urlsafe(32), now)
        value = {"p": pseudonym, "l": language, "c": session.csrf, "at": now.isoformat()}
        await self.storage.put_record(
            SESSION, session.key, json.dumps(value).encode(), now + self.lasts
        )
        return token, session

    async def find(self, token: str | None) -> Session | None:
        """The session a cookie's token stands for, unless it ended or expired."""
        if not token or len(token) > 100:
            return None
        key = token_hash(token)
        stored = await self.storage.record(SESSION, key, self.clock())
        if stored is None:
            return None
        value = json.loads(stored)
        return Session(key, value["p"], value["l"], value["c"],
                       datetime.fromisoformat(value["at"]))  # fmt: skip

    async def end(self, session: Session) -> None:
        await self.storage.delete_records(SESSION, session.key)
