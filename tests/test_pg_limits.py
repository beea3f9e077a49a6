"""Send limits held in PostgreSQL: two instances (two pools) sending at once, on a clock the
test moves, together never exceed Telegram's limits, and still reach them."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage.postgres.limits import PostgresSendLimits
from tests.coordination_pg import fresh_schema

pytestmark = pytest.mark.postgres

T0 = 1_800_000_000.0  # a wall-clock time, as every instance's clock would say
SECRET = b"limits-test-secret"


def telegram(pool: Any, per_second: float = 30) -> PostgresSendLimits:
    """Telegram's limits as bot/channels/telegram/channel.py's telegram_limits() sets them."""
    return PostgresSendLimits(
        pool, "telegram", overall=(per_second, per_second), per_chat=(3.0, 1.0),
        per_group=(20.0, 20 / 60), secret=SECRET,
    )  # fmt: skip


@pytest.fixture
async def pools() -> AsyncIterator[list[Any]]:
    async with fresh_schema(pools=2, size=8) as (_, made):
        yield made


def most_in_any_second(times: list[float]) -> int:
    """The most sends that fall in any one second, (t - 1, t]."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_two_instances_hammering_together_keep_the_limits_and_reach_them(pools):
    instances = [telegram(pool) for pool in pools]
    chats = [str(1000 + n) for n in range(60)]
    sent: list[float] = []
    per_chat: defaultdict[str, list[float]] = defaultdict(list)
    draw = random.Random(20)

    async def try_send(limits: PostgresSendLimits, chat: str, now: float) -> None:
        if await limits.reserve(chat, False, now) == 0:
            sent.append(now)
            per_chat[chat].append(now)

    # Ten seconds in steps of 10 ms; at each, both instances try to send to a dozen
    # chats at once (some the same), as two deliverers draining one outbox would.
    for step in range(1000):
        now = T0 + step / 100
        await asyncio.gather(
            *(try_send(limits, draw.choice(chats), now) for limits in instances for _ in range(6))
        )
    assert most_in_any_second(sent) == 30  # never more, and the limit is reached
    assert len(sent) >= 290  # ~30 a second, together, for ten seconds
    for chat, times in per_chat.items():
        # A burst of three, then one a second: never more than 3 + n in n seconds.
        for i, t in enumerate(times):
            later = [u for u in times[i:] if u < t + 2.0]
            assert len(later) <= 4, (chat, times)


async def test_one_chat_gets_a_short_burst_then_one_a_second_from_both_instances(pools):
    first, second = (telegram(pool) for pool in pools)
    assert [await first.reserve("7", False, T0) for _ in range(2)] == [0, 0]
    assert await second.reserve("7", False, T0) == 0
    wait = await second.reserve("7", False, T0)
    assert 0.9 < wait <= 1.0
    assert await first.reserve("7", False, T0 + wait) == 0
    count = 0
    for tick in range(1, 1001):  # ten more seconds, every 10 ms, alternating instances
        limits = first if tick % 2 else second
        while await limits.reserve("7", False, T0 + 1 + tick / 100) == 0:
            count += 1
    assert count in (10, 11)


async def test_a_group_gets_twenty_then_waits_and_a_wait_takes_no_slot(pools):
    first, second = (telegram(pool, per_second=1000) for pool in pools)
    for n in range(20):
        assert await (first if n % 2 else second).reserve("-5", True, T0) == 0
    assert await first.reserve("-5", True, T0) > 2.5
    tight_first, tight_second = (telegram(pool, per_second=1) for pool in pools)
    assert await tight_first.reserve("a", False, T0 + 100) == 0
    assert await tight_second.reserve("b", False, T0 + 100) > 0  # overall is spent
    assert await tight_second.overall_wait(T0 + 100) == pytest.approx(1.0)
    assert await tight_second.reserve("b", False, T0 + 101) == 0  # "b" lost nothing


async def test_thirty_a_second_overall_across_many_chats(pools):
    first, second = (telegram(pool) for pool in pools)
    allowed = 0
    for chat in range(100):
        allowed += await (first if chat % 2 else second).reserve(str(chat), False, T0) == 0
    assert allowed == 30
    assert await first.overall_wait(T0 + 0.5) == pytest.approx(0.5)
    later = [await second.reserve(str(c), False, T0 + 1.0) == 0 for c in range(100, 200)]
    assert sum(later) == 30


async def test_chats_are_kept_as_keyed_hashes_and_forgotten_once_idle(pools):
    limits = telegram(pools[0])
    await limits.reserve("123456789", False, T0)
    rows = await pools[1].fetch("SELECT chat FROM send_chats")
    assert len(rows) == 1 and b"123456789" not in bytes(rows[0]["chat"])
    await limits.reserve("987", False, T0 + 200)  # minutes later: the idle chat goes
    assert await pools[1].fetchval("SELECT count(*) FROM send_chats") == 1


async def test_a_monotonic_clock_is_refused_not_trusted(pools):
    with pytest.raises(ValueError, match="wall-clock"):
        await telegram(pools[0]).reserve("1", False, 12_345.6)


async def test_many_asked_at_once_by_one_instance_keep_the_limits_as_asked_in_turn(pools):
    """A deliverer asks for 64 slots at once; they go to the database together and are
    counted exactly as if asked one by one: 30 of 100 chats, then none from the other
    instance in that second, and a chat asked for three times at once sends once."""
    first, second = (telegram(pool) for pool in pools)
    waits = await asyncio.gather(*(first.reserve(str(c), False, T0) for c in range(100)))
    assert sum(w == 0 for w in waits) == 30
    assert all(w == pytest.approx(1.0) for w in waits if w > 0)
    assert await first.overall_wait(T0) == pytest.approx(1.0)
    later = await asyncio.gather(
        *(second.reserve(str(c), False, T0 + 0.5) for c in range(100, 150))
    )
    assert all(w == pytest.approx(0.5) for w in later)
    same = await asyncio.gather(*(first.reserve("7", False, T0 + 1) for _ in range(3)))
    assert sorted(w == 0 for w in same) == [False, False, True]


async def test_the_chats_table_is_analyzed_as_it_grows(pools):
    """Without statistics, `reserve_sends` is planned for an empty table and reads every
    chat at each call (22 ms a call at 96,000 chats): the limits analyze it as it grows,
    at the first count given and at each doubling."""
    limits = PostgresSendLimits(
        pools[0], "telegram", overall=(1000, 1000), per_chat=(3.0, 1.0),
        per_group=(20.0, 20 / 60), secret=SECRET, analyze_after=40,
    )  # fmt: skip

    async def counted() -> float:
        async with pools[0].acquire() as connection:
            return float(await connection.fetchval(
                "SELECT reltuples FROM pg_class WHERE oid = 'send_chats'::regclass"
            ))  # fmt: skip

    async def reserve(first: int, count: int) -> None:
        waits = await asyncio.gather(
            *(limits.reserve(str(chat), False, T0) for chat in range(first, first + count))
        )
        assert waits == [0.0] * count

    await reserve(0, 30)
    assert await counted() == -1  # never analyzed
    await reserve(30, 20)
    assert await counted() == 50  # 50 given a slot: analyzed, and next at 100
    await reserve(50, 40)
    assert await counted() == 50
    await reserve(90, 20)
    assert await counted() == 110
