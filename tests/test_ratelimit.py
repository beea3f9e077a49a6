"""Send limits, on a clock the test moves: bursts pass, the average rate holds."""

from __future__ import annotations

from bot.channels.telegram.channel import telegram_limits
from bot.delivery.ratelimit import RateLimits


def sends_within(limits: RateLimits, chat: str, seconds: float, group: bool = False) -> int:
    """How many sends to one chat the limits allow in `seconds`, trying every 10 ms."""
    sent = 0
    for tick in range(int(seconds * 100)):
        while limits.reserve(chat, group, tick / 100) == 0:
            sent += 1
    return sent


def test_a_private_chat_gets_a_short_burst_then_one_a_second():
    limits = telegram_limits()
    assert [limits.reserve("1", False, 0.0) for _ in range(3)] == [0, 0, 0]
    wait = limits.reserve("1", False, 0.0)
    assert 0.9 < wait <= 1.0
    assert sends_within(telegram_limits(), "1", 10) in (12, 13)


def test_a_group_gets_twenty_a_minute():
    assert sends_within(telegram_limits(), "-5", 60, group=True) in (39, 40)
    limits = telegram_limits()
    for _ in range(20):
        assert limits.reserve("-5", True, 0.0) == 0
    assert limits.reserve("-5", True, 0.0) > 2.5


def test_thirty_a_second_overall_across_many_chats():
    limits = telegram_limits()
    allowed = sum(limits.reserve(str(chat), False, 0.0) == 0 for chat in range(100))
    assert allowed == 30
    one_second_later = sum(limits.reserve(str(chat), False, 1.0) == 0 for chat in range(100, 200))
    assert one_second_later == 30


def test_a_wait_takes_no_slot():
    limits = RateLimits(overall=(1, 1.0), per_chat=(1, 1.0), per_group=(1, 1.0))
    assert limits.reserve("a", False, 0.0) == 0
    assert limits.reserve("b", False, 0.0) > 0  # overall is spent
    assert limits.reserve("b", False, 1.0) == 0  # and "b" lost nothing by waiting


def test_idle_chats_are_forgotten_but_busy_ones_stay_limited():
    limits = RateLimits(overall=(10**6, 10**6), per_chat=(3, 1.0), per_group=(3, 1.0), max_chats=4)
    for chat in range(3):
        limits.reserve(f"idle{chat}", False, 0.0)
    for _ in range(3):
        assert limits.reserve("busy", False, 100.0) == 0
    # Room is made at t=100: the idle chats have refilled and go; "busy" has not.
    assert limits.reserve("newcomer", False, 100.0) == 0
    assert limits.reserve("busy", False, 100.0) > 0
    assert len(limits._chats) == 2
