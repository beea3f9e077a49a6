"""Read batching: look-ups asked for together go as one fetch, and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from storage.sqlite.read_batch import ReadBatch

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py


class Squares:
    """A fetch that records the batches it was asked for; it can fail, or wait to answer."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.failures: list[Exception] = []  # the next fetches raise these, in turn
        self.gate: asyncio.Event | None = None
        self.began = asyncio.Event()  # set when a fetch begins

    async def __call__(self, keys: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(keys))
        self.began.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        # A negative key stands for a row that can't be read: its look-up alone fails.
        return [ValueError(f"row {key} is damaged") if key < 0 else key * key for key in keys]


async def test_look_ups_asked_together_go_as_one_fetch() -> None:
    fetch = Squares()
    batch = ReadBatch(fetch)
    assert await asyncio.gather(*(batch.get(n) for n in range(10))) == [n * n for n in range(10)]
    assert fetch.batches == [list(range(10))]
    assert await batch.get(7) == 49  # one alone goes alone
    assert fetch.batches[-1] == [7]


async def test_a_look_up_asked_a_turn_of_the_loop_later_joins_the_batch() -> None:
    """The turns a trip answers ask their next look-ups a moment later, each in a turn
    of its own: the batch waits for them (two turns of the loop) instead of leaving."""
    fetch = Squares()
    batch = ReadBatch(fetch)
    first = asyncio.ensure_future(batch.get(2))
    await asyncio.sleep(0)  # first asks, and its batch's trip is made ready to go
    second = asyncio.ensure_future(batch.get(3))
    assert (await first, await second) == (4, 9)
    assert fetch.batches == [[2, 3]]
    lone = ReadBatch(fetch, linger=0)  # without: the first goes alone
    first = asyncio.ensure_future(lone.get(4))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(lone.get(5))
    assert (await first, await second) == (16, 25)
    assert fetch.batches[1:] == [[4], [5]]


async def test_look_ups_asked_during_a_fetch_make_the_next_one() -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    batch = ReadBatch(fetch, max_batch=3)
    first = asyncio.gather(*(batch.get(n) for n in range(5)))
    await fetch.began.wait()
    later = asyncio.gather(*(batch.get(n) for n in (10, 11)))
    await asyncio.sleep(0)
    fetch.gate.set()
    assert await first == [0, 1, 4, 9, 16]
    assert await later == [100, 121]
    assert fetch.batches == [[0, 1, 2], [3, 4, 10], [11]]


async def test_a_failed_fetch_fails_its_own_trip_and_the_next_is_still_served() -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    fetch.failures = [OSError("disk I/O error")]
    batch = ReadBatch(fetch)
    first = asyncio.gather(*(batch.get(n) for n in range(3)), return_exceptions=True)
    await fetch.began.wait()
    queued = asyncio.gather(*(batch.get(n) for n in (5, 6)))  # waiting for the next trip
    await asyncio.sleep(0)
    fetch.gate.set()
    assert [type(r) for r in await first] == [OSError] * 3
    # With no further look-up asked for (the guard is against hanging, not a timing).
    assert await asyncio.wait_for(queued, 10) == [25, 36]
    assert await batch.get(3) == 9


async def test_a_row_that_cannot_be_read_fails_only_its_own_look_up() -> None:
    fetch = Squares()
    batch = ReadBatch(fetch)
    looked_up = [asyncio.create_task(batch.get(n)) for n in (2, -1, 3)]
    with pytest.raises(ValueError, match="row -1"):
        await looked_up[1]
    assert [await looked_up[0], await looked_up[2]] == [4, 9]
    assert fetch.batches == [[2, -1, 3]]  # they did go together


async def test_a_fetch_with_a_value_missing_is_an_error_not_a_wrong_answer() -> None:
    async def short(keys: Sequence[int]) -> list[int | Exception]:
        return list(keys)[:-1]

    batch: ReadBatch[int, int] = ReadBatch(short)
    results = await asyncio.gather(batch.get(1), batch.get(2), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]


async def test_a_caller_that_gives_up_mid_fetch_leaves_the_others_their_answers() -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    batch = ReadBatch(fetch)
    impatient = asyncio.create_task(batch.get(2))
    patient = asyncio.create_task(batch.get(3))
    await fetch.began.wait()
    impatient.cancel()
    await asyncio.sleep(0)
    fetch.gate.set()
    assert await patient == 9
    assert impatient.cancelled()


@pytest.mark.parametrize("when", ["before it began", "mid-fetch"])
async def test_stopping_leaves_nobody_waiting_forever(when: str) -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    batch = ReadBatch(fetch)
    waiting = [asyncio.create_task(batch.get(n)) for n in range(3)]
    await asyncio.sleep(0)  # they ask, and the first of them sets a fetch going
    if when == "mid-fetch":
        await fetch.began.wait()
    assert batch._fetching is not None
    assert fetch.began.is_set() == (when == "mid-fetch")
    batch._fetching.cancel()
    # A guard against hanging, not a timing: the cancellations land within a few turns.
    done, _ = await asyncio.wait(waiting, timeout=10)
    assert done == set(waiting) and all(task.cancelled() for task in waiting)
    fetch.gate.set()
    assert await batch.get(4) == 16  # and it works again afterwards
