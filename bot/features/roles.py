"""Who may do what: participant, facilitator, coordinator, admin.

A role is held by a pseudonym (the same HMAC that keys a participant's answers),
so granting a role stores no name either. Admins are named in configuration
(`KT_ADMINS=telegram:12345,slack:T0001/U0002`). Facilitators and coordinators
are invited: `kitchen-table invite facilitator` prints a one-time code that the
person sends to the bot as `/redeem CODE`. Codes are stored only as a hash,
work once, and expire.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.privacy import Identity
from storage.protocol import RecordStore
from storage.rows import Commit, RecordRow, TakenRecord

PARTICIPANT = "participant"
FACILITATOR = "facilitator"
COORDINATOR = "coordinator"
ADMIN = "admin"
GRANTABLE = (FACILITATOR, COORDINATOR)

ROLE = "role"
INVITE = "invite"
# Letters and digits that can't be mistaken for one another when read aloud or typed.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
INVITE_CODE_LENGTH = 10  # 31**10, about 8e14 codes: guessing one is hopeless when limited

# Wrong invitation codes allowed in an hour: to one person, after which they are told
# to try again later (even with a right code: they are the one guessing); and to
# everyone together, after which a wrong code is answered the same way and no longer
# written down. A right code from anyone else always works: it is checked before
# the overall limit, which never refuses one (see `Gatherings._redeem`).
WRONG_CODES_WINDOW = timedelta(hours=1)
WRONG_CODES_PER_PERSON = 5
WRONG_CODES_OVERALL = 100


def new_code(length: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def normal_code(text: str) -> str:
    """What someone typed as a code, the way codes are stored: upper case, no spaces."""
    return "".join(text.split()).upper().replace("-", "")


def admin_pseudonyms(identity: Identity, configured: str) -> set[str]:
    """`telegram:12345,slack:T0001/U0002,terminal:sam` as pseudonyms."""
    found = set()
    for entry in configured.split(","):
        channel, _, platform_id = entry.strip().partition(":")
        if channel and platform_id:
            found.add(identity.pseudonym(channel, platform_id.replace("/", ":")))
    return found


@dataclass(frozen=True)
class RoleHolder:
    """Someone granted a role: their pseudonym, and the role."""

    pseudonym: str
    role: str


class Roles:
    def __init__(
        self, storage: RecordStore, admins: set[str], clock: Callable[[], datetime]
    ) -> None:
        self.storage = storage
        self.admins = admins
        self.clock = clock

    async def role_of(self, pseudonym: str) -> str:
        if pseudonym in self.admins:
            return ADMIN
        stored = await self.storage.record(ROLE, pseudonym, self.clock())
        return stored.decode() if stored else PARTICIPANT

    async def is_at_least_facilitator(self, pseudonym: str) -> bool:
        return await self.role_of(pseudonym) in (FACILITATOR, ADMIN)

    async def invite(self, role: str, lasts: timedelta) -> str:
        if role not in GRANTABLE:
            raise ValueError(f"only {' or '.join(GRANTABLE)} can be invited")
        code = new_code(INVITE_CODE_LENGTH)
        await self.storage.put_record(INVITE, _hash(code), role.encode(), self.clock() + lasts)
        return code

    async def invitation(self, code: str) -> str | None:
        """The role an invitation code grants, if it is good (not used, not expired)."""
        stored = await self.storage.record(INVITE, _hash(normal_code(code)), self.clock())
        return stored.decode() if stored else None

    def grant(self, commit: Commit, code: str, pseudonym: str, role: str) -> None:
        """Use up the code and grant its role, both in `commit` (one transaction)."""
        commit.take_record = TakenRecord(INVITE, _hash(normal_code(code)), self.clock())
        commit.records.append(RecordRow(ROLE, pseudonym, role.encode()))

    async def holders(self) -> list[RoleHolder]:
        """Everyone granted a role (admins come from the settings instead), by pseudonym."""
        return [
            RoleHolder(record.key, record.value.decode())
            for record in await self.storage.records_of(ROLE, self.clock())
        ]

    async def revoke(self, prefix: str) -> list[str]:
        """Take the role from every holder whose pseudonym starts with `prefix`."""
        revoked = [
            h.pseudonym for h in await self.holders() if prefix and h.pseudonym.startswith(prefix)
        ]
        for key in revoked:
            await self.storage.delete_records(ROLE, key)
        return revoked


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()
