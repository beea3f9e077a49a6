"""Guessing invitation codes: wrong /redeem codes are limited per person and overall,
counted in the database, and a right code from anyone else always works."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

from bot.features.roles import WRONG_CODES_OVERALL, WRONG_CODES_PER_PERSON
from bot.messages import Inbound
from tests.conftest import Harness

GUIDE = """
guide: tiny
version: 1
title: Tiny
steps:
  - id: one
    ask: Anything?
"""

LATER = "try again in an hour"
FAILED = "didn't work"


async def redeem(h: Harness, code: str, user: str, **extra: object) -> str:
    replies = await h.say(f"/redeem {code}", user=user, **extra)
    assert len(replies) == 1
    return replies[0].text


async def test_a_guesser_is_told_to_wait_after_five_wrong_codes_and_others_are_not(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h: Harness = make_harness(GUIDE)
    for n in range(WRONG_CODES_PER_PERSON):
        assert FAILED in await redeem(h, f"WRONG{n:05d}", "guesser")
    # The sixth in the hour is not even checked: a right one would not work either.
    assert LATER in await redeem(h, "WRONG99999", "guesser")
    code = await h.house.roles.invite("facilitator", timedelta(days=1))
    assert LATER in await redeem(h, code, "guesser")
    assert "demasiados códigos" in await redeem(h, "WRONG99998", "guesser", language="es")
    # Someone else's right code works; their wrong one is only a wrong one.
    assert FAILED in await redeem(h, "NOTMINE123", "someone")
    assert "now a facilitator" in await redeem(h, code, "someone")
    # An hour after the first wrong code, the guesser is counted afresh.
    h.clock.advance(hours=1, seconds=1)
    other = await h.house.roles.invite("coordinator", timedelta(days=1))
    assert "now a coordinator" in await redeem(h, other, "guesser")


async def test_the_overall_limit_answers_wrong_codes_later_and_never_refuses_a_right_one(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h: Harness = make_harness(GUIDE)
    # Many people, a few wrong codes each: no one reaches their own limit.
    people = [f"crowd{n}" for n in range(WRONG_CODES_OVERALL // 2)]
    for person in people:
        for attempt in range(2):
            assert FAILED in await redeem(h, f"BAD{attempt}{person}", person)
    assert LATER in await redeem(h, "BADONEMORE", "newcomer")
    code = await h.house.roles.invite("facilitator", timedelta(days=1))
    assert "now a facilitator" in await redeem(h, code, "host")  # right: always checked
    # Counted in the database (several instances share it), and no more once over the
    # limit; the hour's older ones are cleared as new ones are written.
    with sqlite3.connect(h.storage.path) as db:
        assert db.execute("SELECT count(*) FROM wrong_codes").fetchone() == (WRONG_CODES_OVERALL,)
    h.clock.advance(hours=1, seconds=1)
    assert FAILED in await redeem(h, "BADAGAIN", "newcomer")
    with sqlite3.connect(h.storage.path) as db:
        assert db.execute("SELECT count(*) FROM wrong_codes").fetchone() == (1,)


async def test_forgetting_someone_forgets_their_wrong_codes(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h: Harness = make_harness(GUIDE)
    for n in range(WRONG_CODES_PER_PERSON):
        await redeem(h, f"WRONG{n:05d}", "guesser")
    await h.storage.forget(h.pseudonym("guesser"), h.clock())
    tried = await h.storage.wrong_codes(h.pseudonym("guesser"), h.clock() - timedelta(hours=1))
    assert (tried.theirs, tried.everyone) == (0, 0)


async def test_two_people_redeeming_one_code_at_once_each_hear_what_became_of_it(
    make_harness,  # type: ignore[no-untyped-def]
) -> None:
    h: Harness = make_harness(GUIDE)
    code = await h.house.roles.invite("facilitator", timedelta(days=1))
    roles = h.house.roles
    looked_up = roles.invitation
    both_read = asyncio.Barrier(2)
    first_reads = 0

    async def at_the_same_moment(typed: str) -> str | None:
        # Both find the code good before either's turn is committed, as two people on two
        # instances would; only the first two look-ups wait for each other.
        nonlocal first_reads
        found = await looked_up(typed)
        first_reads += 1
        if first_reads <= 2:
            await both_read.wait()
        return found

    roles.invitation = at_the_same_moment  # type: ignore[method-assign]
    await asyncio.gather(
        *(h.dispatcher.handle(Inbound("terminal", who, who, f"/redeem {code}"))
          for who in ("dee", "eli"))
    )  # fmt: skip
    await h.deliverer.drain("terminal")
    heard = {who: h.channel.texts(who) for who in ("dee", "eli")}
    # One of them has the role; the other is told the code didn't work, not left hanging.
    assert sorted(len(said) for said in heard.values()) == [1, 1], heard
    winners = [who for who, said in heard.items() if "now a facilitator" in said[0]]
    losers = [who for who, said in heard.items() if FAILED in said[0]]
    assert len(winners) == 1 and len(losers) == 1, heard
    assert await roles.role_of(h.pseudonym(winners[0])) == "facilitator"
    assert await roles.role_of(h.pseudonym(losers[0])) == "participant"
