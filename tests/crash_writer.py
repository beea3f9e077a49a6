"""A writer process for the crash test: answers arrive in a burst and each is acknowledged
on stdout only after its commit returns. The test kills this process with SIGKILL."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.app.build import build_house
from bot.conversation.dispatcher import Dispatcher
from bot.flows.loader import parse_guide
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.messages import Inbound
from bot.privacy import Identity
from storage.sqlite import SQLiteStorage

SECRET = b"crash-test-secret-crash"
STEPS = 40


def guide_text() -> str:
    steps = "\n".join(
        f"  - id: q{i}\n    number: Question {i}?\n    range: [0, 1000]"
        for i in range(1, STEPS + 1)
    )
    return f"guide: burst\nversion: 1\ntitle: Burst\nsteps:\n{steps}\n"


def burst_dispatcher(storage: SQLiteStorage) -> Dispatcher:
    """The dispatcher the writer uses, and the crash test uses again after the kill."""
    library = GuideLibrary()
    library.add(parse_guide(guide_text(), "burst.yaml"))
    return build_house(
        storage=storage,
        library=library,
        identity=Identity(SECRET),
        phrases=load_phrasebook(),
        clock=lambda: datetime.now(UTC),
    ).dispatcher


async def main(db: Path, people: int) -> None:
    storage = SQLiteStorage(db)
    await storage.open()
    dispatcher = burst_dispatcher(storage)

    async def person(n: int) -> None:
        user = f"user{n}"
        await dispatcher.handle(
            Inbound("terminal", user, user, "/start burst", key=f"{user}-start")
        )
        for answer in range(1, STEPS + 1):
            key = f"{user}-{answer}"
            await dispatcher.handle(Inbound("terminal", user, user, str(answer), key=key))
            sys.stdout.write(f"ack {user} {answer}\n")
            sys.stdout.flush()

    await asyncio.gather(*(person(n) for n in range(people)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
