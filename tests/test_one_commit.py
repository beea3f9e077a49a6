"""Everything a turn changes goes into its one commit, and nothing else is written.

A storage failure at the commit leaves nothing of the turn behind: not an invitation
code used up without its role, not an erasure half done. A turn that changes nothing
writes nothing and wakes nobody.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.flows.events import Open
from bot.messages import NotStored
from storage.rows import Commit

GUIDE = """
guide: pulse
version: 1
title: Weekly pulse
steps:
  - id: week
    scale: How was your week?
  - id: thanks
    say: Thank you!
"""


def fail_the_next_commit(h: Any) -> None:
    """The next commit fails as a full disk would (nothing of it is kept)."""
    real = h.storage.commit

    async def once(commit: Commit) -> bool:
        h.storage.commit = real
        raise OSError("database or disk is full")

    h.storage.commit = once


async def test_a_redeem_that_fails_to_commit_neither_burns_the_code_nor_grants(make_harness):
    h = make_harness(GUIDE)
    code = await h.house.roles.invite("facilitator", timedelta(days=1))
    fail_the_next_commit(h)
    with pytest.raises(NotStored):
        await h.say(f"/redeem {code}", user="fay")
    assert await h.house.roles.role_of(h.pseudonym("fay")) == "participant"
    # The code was not used up: it still works, once.
    said = [m.text for m in await h.say(f"/redeem {code}", user="fay")]
    assert any("facilitator" in t for t in said), said
    assert await h.house.roles.role_of(h.pseudonym("fay")) == "facilitator"


async def test_a_forget_that_fails_to_commit_erases_nothing(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    await h.say("4")
    await h.say("/forget")
    fail_the_next_commit(h)
    with pytest.raises(NotStored):
        await h.say("yes")
    kept = await h.storage.mine(h.pseudonym())
    assert kept.answers, "the erasure was half done"
    # Asked again, it erases everything, in one go.
    await h.say("/forget")
    await h.say("yes")
    assert not await h.storage.mine(h.pseudonym())


async def test_a_nudge_that_changes_nothing_writes_nothing_and_wakes_nobody(make_harness):
    h = make_harness(GUIDE)
    await h.say("/start pulse")
    person = await h.storage.participant(h.pseudonym())
    await h.dispatcher.nudge(h.pseudonym(), person.current_run, Open(1))
    woken: list[int] = []
    h.dispatcher.on_commit = lambda: woken.append(1)
    writes: list[Commit] = []
    real = h.storage.commit

    async def counted(commit: Commit) -> bool:
        writes.append(commit)
        return await real(commit)

    h.storage.commit = counted
    # The same part opened again (a second instance's nudge, say): nothing to do.
    await h.dispatcher.nudge(h.pseudonym(), person.current_run, Open(1))
    assert writes == [] and woken == []
