"""The dispatcher when SQLite fails under it: a full disk, a read-only database.

SQLite-only by nature: the faults are made with SQLite's own switches on the writer's
connection (a page limit, `query_only`), which is why these tests, unlike the
dispatcher's, reach into the writer. What they check is what a person would notice:
nothing half done, and the platform's retry goes through once the fault is gone.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bot.flows.run import RunState
from bot.messages import Inbound, NotStored

GUIDE = """
guide: pulse
version: 1
title: Weekly pulse
consent: Your answers are kept without your name.
steps:
  - id: week
    scale: How was your week?
  - id: change
    ask: What changed?
  - id: thanks
    say: Thank you!
"""


async def current_state(h, user: str = "ana") -> RunState:
    person = await h.storage.participant(h.pseudonym(user))
    row = await h.storage.run(person.current_run)
    return RunState.model_validate_json(row.state)


async def test_a_full_disk_leaves_nothing_half_done_and_recovers(make_harness):
    h = make_harness(GUIDE)
    h.dispatcher.max_answer_chars = 20_000
    await h.say("/start pulse")
    await h.say("yes")
    await h.say("3")

    def disk_full(db: sqlite3.Connection) -> None:
        # The database may not grow any more: a long answer needs pages it can't have.
        db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")

    await h.storage._w.run(disk_full)
    story = "The new schedule app changed everything. " * 300
    answer = Inbound("terminal", "ana", "ana", story, key="update-full")
    with pytest.raises(NotStored, match="full"):
        await h.dispatcher.handle(answer)
    stuck = await current_state(h)
    assert stuck.step == "change" and stuck.answers == {"week": 3}
    assert [a.step for a in await h.storage.answers(stuck.run_id)] == ["week"]

    await h.storage._w.run(lambda db: db.execute("PRAGMA max_page_count=1073741823"))
    # The platform sends the same update again; now it goes through, once.
    assert (await h.dispatcher.handle(answer)).accepted
    assert not (await h.dispatcher.handle(answer)).accepted
    done = await current_state(h)
    assert done.status == "finished" and done.answers["change"] == story.strip()


async def test_a_read_only_database_leaves_nothing_half_done_and_recovers(make_harness):
    # Root ignores file permissions and a volume can't be remounted read-only under an
    # open database, so SQLite's own switch stands in: writes fail exactly as on a
    # read-only disk ("attempt to write a readonly database").
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("yes")
    await h.storage._w.run(lambda db: db.execute("PRAGMA query_only=ON"))
    answer = Inbound("terminal", "ana", "ana", "4", key="update-ro")
    with pytest.raises(NotStored, match="readonly"):
        await h.dispatcher.handle(answer)
    stuck = await current_state(h)
    assert stuck.step == "week" and stuck.answers == {}
    assert await h.storage.answers(stuck.run_id) == []
    assert await h.storage.claim_due("terminal", h.clock(), 10) == []  # nothing owed

    # Writable again (outside a transaction: a read-only connection can't begin one).
    writer = h.storage._w
    await asyncio.get_running_loop().run_in_executor(
        writer._executor, writer._connection.execute, "PRAGMA query_only=OFF"
    )
    assert (await h.dispatcher.handle(answer)).accepted  # the platform's retry
    assert not (await h.dispatcher.handle(answer)).accepted
    assert (await current_state(h)).answers == {"week": 4}
