"""The console's audit log: who (by pseudonym) changed what, and when.

Every change made through the console is written here by the page that makes it
(`Visit.audit`), and admins read it on the Audit page. Entries are records of kind
`audit` (no migration), keyed by the time and a random tail so they sort by time and
two at the same instant never replace each other. They keep no participant's words:
only the pseudonym of the coordinator, facilitator or admin, the action's name and a
short detail (a gathering's code, a schedule's id). When someone is forgotten, storage
puts "forgotten" where their pseudonym was, in these entries too.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from storage.protocol import RecordStore

AUDIT = "audit"
# A pseudonym named in a detail is kept whole (so that erasure finds it) and shown short.
_PSEUDONYM = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{20}\b")
SHOWN = 500  # the newest entries the Audit page lists


@dataclass(frozen=True)
class Entry:
    at: datetime
    who: str  # pseudonym
    role: str
    what: str  # an action's name, such as "signed_in" or "schedule_paused"
    detail: str


class AuditLog:
    def __init__(self, storage: RecordStore, clock: Callable[[], datetime]) -> None:
        self.storage = storage
        self.clock = clock

    async def write(self, who: str, role: str, what: str, detail: str = "") -> Entry:
        now = self.clock()
        entry = Entry(now, who, role, what, detail)
        key = f"{now.strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(4)}"
        value = {"at": now.isoformat(), "who": who, "role": role, "what": what, "detail": detail}
        await self.storage.put_record(AUDIT, key, json.dumps(value).encode())
        return entry

    async def newest(self, limit: int = SHOWN) -> list[Entry]:
        """The newest entries first."""
        records = await self.storage.records_of(AUDIT, self.clock())
        entries = []
        for record in sorted(records, key=lambda r: r.key, reverse=True)[:limit]:
            value = json.loads(record.value)
            detail = _PSEUDONYM.sub(r"\1…", value.get("detail", ""))  # shown short
            entries.append(Entry(datetime.fromisoformat(value["at"]), value["who"],
                                 value.get("role", ""), value["what"], detail))  # fmt: skip
        return entries
