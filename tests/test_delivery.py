"""Delivery from the outbox: order per person, waits, failures and surprises."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest

from bot.delivery.channel import Capabilities, Failed, RetryAfter, SendResult, Sent
from bot.delivery.deliverer import Deliverer
from bot.messages import Outbound
from bot.privacy import Identity
from storage.rows import Commit, OutboxRow
from tests.conftest import FakeClock

IDENTITY = Identity(b"delivery-test-secret")


class ScriptedChannel:
    """Answers each send from a script (per address), then with Sent; records what went out."""

    name = "terminal"
    capabilities = Capabilities(edit=True, buttons=True, files=True, groups=True)

    def __init__(self, script: dict[str, list[SendResult | Exception]]) -> None:
        self.script = script
        self.delivered: list[tuple[str, str]] = []

    async def send(self, address: str, message: Outbound) -> SendResult:
        planned = self.script.get(address)
        if planned:
            outcome = planned.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            if not isinstance(outcome, Sent):
                return outcome
        self.delivered.append((address, message.text))
        return Sent()


async def owe(storage, clock: FakeClock, *messages: tuple[str, str]) -> None:
    await storage.commit(
        Commit(
            outbox=[
                OutboxRow(
                    "terminal",
                    who,
                    IDENTITY.seal(who),
                    Outbound(text=text).model_dump_json(),
                    clock(),
                )
                for who, text in messages
            ]
        )
    )


def count_claims(storage, channel: ScriptedChannel) -> list[int]:
    """Each claim of the storage from now on, as how many messages had gone out by then."""
    claimed_after: list[int] = []
    claim_due = storage.claim_due

    async def counted(*args, **kwargs):
        claimed_after.append(len(channel.delivered))
        return await claim_due(*args, **kwargs)

    storage.claim_due = counted
    return claimed_after


async def test_a_wait_holds_back_that_persons_later_messages_only(storage, clock):
    channel = ScriptedChannel({"ana": [RetryAfter(5)]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock)
    await owe(storage, clock, ("ana", "a1"), ("ana", "a2"), ("ben", "b1"))
    await deliverer.drain("terminal")
    assert channel.delivered == [("ben", "b1")]
    clock.advance(seconds=4)
    await deliverer.drain("terminal")
    assert channel.delivered == [("ben", "b1")]
    clock.advance(seconds=1)
    await deliverer.drain("terminal")
    assert channel.delivered == [("ben", "b1"), ("ana", "a1"), ("ana", "a2")]


async def test_the_channels_overall_limit_holds_everyone_back_without_a_write_each(storage, clock):
    channel = ScriptedChannel({"ana": [RetryAfter(0.5, everyone=True)]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock, concurrency=1)
    await owe(storage, clock, ("ana", "a1"), ("ben", "b1"))
    await deliverer.drain("terminal")
    assert channel.delivered in ([], [("ben", "b1")])  # ben may have gone first
    waiting = await storage.claim_due("terminal", clock(), 10)
    assert [r.not_before for r in waiting if r.participant == "ana"] == [clock()]  # untouched
    await owe(storage, clock, ("cy", "c1"))
    await deliverer.drain("terminal")  # still held: nobody is sent anything
    assert ("cy", "c1") not in channel.delivered
    clock.advance(seconds=0.5)
    await deliverer.drain("terminal")
    assert sorted(channel.delivered) == [("ana", "a1"), ("ben", "b1"), ("cy", "c1")]


async def test_while_the_window_is_full_the_next_round_is_claimed_so_sending_resumes_at_once(
    storage, clock
):
    channel = ScriptedChannel({"ana": [RetryAfter(0.5, everyone=True)]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock, concurrency=1)
    claimed_after = count_claims(storage, channel)
    await owe(storage, clock, ("ana", "a1"), ("ana", "a2"))
    await deliverer.drain("terminal")
    assert channel.delivered == [] and claimed_after == [0, 0]  # a round, and the next one
    clock.advance(seconds=0.5)
    await deliverer.drain("terminal")
    assert channel.delivered == [("ana", "a1"), ("ana", "a2")]  # in order
    # After the wait, the first message went before any claim: the one made ahead served.
    assert claimed_after[2:] == [2]


async def test_messages_held_back_by_a_full_window_go_next_without_claiming_them_again(
    storage, clock
):
    channel = ScriptedChannel({"ana": [RetryAfter(0.5, everyone=True)]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock, batch=2, concurrency=1)
    claims = count_claims(storage, channel)
    await owe(storage, clock, ("ana", "a1"), ("ana", "a2"))
    await deliverer.drain("terminal")
    assert claims == [0]  # the two held back are kept: enough for a round
    await owe(storage, clock, ("cy", "c1"))  # queued while the window is full
    clock.advance(seconds=0.5)
    await deliverer.drain("terminal")
    # Ana's two first, as they were held, and in order; then a claim finds Cy's.
    assert channel.delivered == [("ana", "a1"), ("ana", "a2"), ("cy", "c1")]
    assert claims == [0, 2]


async def test_someone_forgotten_while_their_messages_wait_for_the_window_is_sent_nothing(
    storage, clock
):
    channel = ScriptedChannel({"ana": [RetryAfter(0.5, everyone=True)]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock, batch=2, concurrency=1)
    await owe(storage, clock, ("ana", "a1"), ("ana", "a2"), ("ben", "b1"))
    await deliverer.drain("terminal")  # the window is full: Ana's two wait, claimed
    assert ("ana", "a1") not in channel.delivered
    await storage.commit(Commit(forget=("ana", clock())))  # Ana says /forget meanwhile
    clock.advance(seconds=0.5)
    await deliverer.drain("terminal")
    assert [who for who, _ in channel.delivered] == ["ben"]


async def test_an_unexpected_error_is_retried_later_and_nothing_is_sent_twice(storage, clock):
    channel = ScriptedChannel({"bob": [RuntimeError("surprise")]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock)
    await owe(storage, clock, ("bob", "b1"), ("cy", "c1"), ("cy", "c2"))
    await deliverer.drain("terminal")
    await deliverer.drain("terminal")
    assert channel.delivered == [("cy", "c1"), ("cy", "c2")]
    clock.advance(seconds=2)
    await deliverer.drain("terminal")
    assert channel.delivered == [("cy", "c1"), ("cy", "c2"), ("bob", "b1")]


async def test_a_database_error_in_one_queue_sends_nobody_elses_messages_twice(storage, clock):
    """One queue's failure to record a send used to end the round while the others were
    still sending; the next round claimed their messages again and sent them twice
    (found by review)."""
    others_sending = asyncio.Event()

    class Slow(ScriptedChannel):
        async def send(self, address: str, message: Outbound) -> SendResult:
            if address == "cy":
                await others_sending.wait()  # still out when bob's send fails to be recorded
            return await super().send(address, message)

    channel = Slow({})
    recorded = storage.outbox_sent
    failed: list[Sequence[int]] = []

    async def flaky(ids: Sequence[int]) -> None:
        if not failed:
            failed.append(ids)
            others_sending.set()
            raise ConnectionError("the database went away")
        await recorded(ids)

    storage.outbox_sent = flaky
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock)
    await owe(storage, clock, ("bob", "b1"), ("cy", "c1"), ("cy", "c2"))
    with pytest.raises(ConnectionError):
        await deliverer.drain("terminal")
    await deliverer.drain("terminal")  # the run loop's next round
    for _ in range(20):  # and whatever the first round left running, to its end
        await asyncio.sleep(0)
    assert sorted(channel.delivered) == [("bob", "b1"), ("bob", "b1"), ("cy", "c1"), ("cy", "c2")]


async def test_a_message_that_cannot_be_read_is_dropped_and_the_next_goes(storage, clock, caplog):
    """A damaged row would fail for ever: it is dropped, and what follows it goes. The log
    says which and why, without its words (pydantic's error quoted the start of the
    payload, or a wrong field whole; found by review)."""
    channel = ScriptedChannel({})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock)
    damaged = [
        OutboxRow("terminal", "eve", IDENTITY.seal("eve"), '{"text": "my boss Ana Ruiz', clock()),
        OutboxRow(
            "terminal", "eve", IDENTITY.seal("eve"), '{"text": ["my boss Ana Ruiz"]}', clock()
        ),
    ]
    await storage.commit(Commit(outbox=damaged))
    await owe(storage, clock, ("eve", "e2"))
    await deliverer.drain("terminal")
    assert channel.delivered == [("eve", "e2")]
    assert await storage.next_due("terminal") is None
    dropped = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert len(dropped) == 2 and "ValidationError" in dropped[0]
    assert "Ana" not in caplog.text


async def test_a_seal_that_will_not_open_waits_for_the_right_key(storage, clock):
    """An address sealed with another key (an instance given the wrong secret) is not a
    damaged row: dropping it would lose everyone's messages; it waits and retries."""
    channel = ScriptedChannel({})
    other = Identity(b"another-instance-secret")
    await storage.commit(Commit(outbox=[
        OutboxRow("terminal", "fay", other.seal("fay"), Outbound(text="f1").model_dump_json(), clock())
    ]))  # fmt: skip
    await Deliverer(storage, IDENTITY, {"terminal": channel}, clock).drain("terminal")
    assert channel.delivered == []
    assert await storage.next_due("terminal") == clock() + timedelta(seconds=2)  # kept
    await Deliverer(storage, other, {"terminal": channel}, clock).drain("terminal")
    clock.advance(seconds=2)
    await Deliverer(storage, other, {"terminal": channel}, clock).drain("terminal")
    assert channel.delivered == [("fay", "f1")]


async def test_failures_back_off_longer_each_time(storage, clock):
    channel = ScriptedChannel({"dee": [Failed("500"), Failed("500"), Failed("500")]})
    deliverer = Deliverer(storage, IDENTITY, {"terminal": channel}, clock)
    await owe(storage, clock, ("dee", "d1"))
    waits = []
    for _ in range(3):
        await deliverer.drain("terminal")
        due = await storage.next_due("terminal")
        waits.append((due - clock()).total_seconds())
        clock.now = due
    assert waits == [2.0, 4.0, 8.0]
    await deliverer.drain("terminal")
    assert channel.delivered == [("dee", "d1")]
