"""Send limits, on a clock the test moves: bursts pass, the average rate holds (the
in-process limits; tests/test_pg_limits.py holds the shared ones to the same numbers)."""

from __future__ import annotations

import pytest

from bot.channels.telegram.channel import telegram_limits
from bot.delivery.channel import RetryAfter, reserve
from bot.delivery.ratelimit import RateLimits

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py


async def sends_within(limits: RateLimits, chat: str, seconds: float, group: bool = False) -> int:
    """How many sends to one chat the limits allow in `seconds`, trying every 10 ms."""
    sent = 0
    for tick in range(int(seconds * 100)):
        while await limits.reserve(chat, group, tick / 100) == 0:
            sent += 1
    return sent


async def test_a_private_chat_gets_a_short_burst_then_one_a_second():
    limits = telegram_limits()
    assert [await limits.reserve("1", False, 0.0) for _ in range(3)] == [0, 0, 0]
    wait = await limits.reserve("1", False, 0.0)
    assert 0.9 < wait <= 1.0
    assert await sends_within(telegram_limits(), "1", 10) in (12, 13)


async def test_a_group_gets_twenty_a_minute():
    assert await sends_within(telegram_limits(), "-5", 60, group=True) in (39, 40)
    limits = telegram_limits()
    for _ in range(20):
        assert await limits.reserve("-5", True, 0.0) == 0
    assert await limits.reserve("-5", True, 0.0) > 2.5


async def test_thirty_a_second_overall_across_many_chats():
    limits = telegram_limits()
    allowed = sum([await limits.reserve(str(chat), False, 0.0) == 0 for chat in range(100)])
    assert allowed == 30
    later = sum([await limits.reserve(str(chat), False, 1.0) == 0 for chat in range(100, 200)])
    assert later == 30


async def test_a_wait_takes_no_slot():
    limits = RateLimits(overall=(1, 1.0), per_chat=(1, 1.0), per_group=(1, 1.0))
    assert await limits.reserve("a", False, 0.0) == 0
    assert await limits.reserve("b", False, 0.0) > 0  # overall is spent
    assert await limits.reserve("b", False, 1.0) == 0  # and "b" lost nothing by waiting


async def test_a_channel_hears_whether_everyone_waits_or_only_this_chat():
    limits = RateLimits(overall=(2, 2.0), per_chat=(1, 1.0), per_group=(1, 1.0))
    assert await reserve(limits, "a", False, 0.0) is None
    assert await reserve(limits, "a", False, 0.0) == RetryAfter(1.0)  # only "a" waits
    assert await reserve(limits, "b", False, 0.5) is None
    assert await reserve(limits, "c", False, 0.5) == RetryAfter(0.5, everyone=True)


async def test_idle_chats_are_forgotten_but_busy_ones_stay_limited():
    limits = RateLimits(overall=(10**6, 10**6), per_chat=(3, 1.0), per_group=(3, 1.0), max_chats=4)
    for chat in range(3):
        await limits.reserve(f"idle{chat}", False, 0.0)
    for _ in range(3):
        assert await limits.reserve("busy", False, 100.0) == 0
    # Room is made at t=100: the idle chats have refilled and go; "busy" has not.
    assert await limits.reserve("newcomer", False, 100.0) == 0
    assert await limits.reserve("busy", False, 100.0) > 0
    assert len(limits._chats) == 2
