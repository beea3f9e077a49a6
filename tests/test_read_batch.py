"""Read batching: look-ups asked for together go as one fetch, and each gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from storage.read_batch import ReadBatch


class Squares:
    """A fetch that records the batches it was asked for; it can be made to fail or wait."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, keys: Sequence[int]) -> list[int]:
        self.batches.append(list(keys))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [key * key for key in keys]


async def test_look_ups_asked_together_go_as_one_fetch() -> None:
    fetch = Squares()
    batch = ReadBatch(fetch)
    assert await asyncio.gather(*(batch.get(n) for n in range(10))) == [n * n for n in range(10)]
    assert fetch.batches == [list(range(10))]
    assert await batch.get(7) == 49  # one alone goes alone
    assert fetch.batches[-1] == [7]


async def test_look_ups_asked_during_a_fetch_make_the_next_one() -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    batch = ReadBatch(fetch, max_batch=3)
    first = asyncio.gather(*(batch.get(n) for n in range(5)))
    await asyncio.sleep(0)  # let the first fetch go out
    await asyncio.sleep(0)
    later = asyncio.gather(*(batch.get(n) for n in (10, 11)))
    await asyncio.sleep(0)
    fetch.gate.set()
    assert await first == [0, 1, 4, 9, 16]
    assert await later == [100, 121]
    assert fetch.batches == [[0, 1, 2], [3, 4, 10], [11]]


async def test_a_failed_fetch_fails_its_batch_only() -> None:
    fetch = Squares()
    fetch.fail = OSError("disk I/O error")
    batch = ReadBatch(fetch)
    results = await asyncio.gather(*(batch.get(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    fetch.fail = None
    assert await batch.get(3) == 9


async def test_a_fetch_with_a_value_missing_is_an_error_not_a_wrong_answer() -> None:
    async def short(keys: Sequence[int]) -> list[int]:
        return list(keys)[:-1]

    batch: ReadBatch[int, int] = ReadBatch(short)
    with pytest.raises(RuntimeError):
        await asyncio.gather(batch.get(1), batch.get(2))


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    batch = ReadBatch(fetch)
    impatient = asyncio.create_task(batch.get(2))
    patient = asyncio.create_task(batch.get(3))
    await asyncio.sleep(0)
    impatient.cancel()
    fetch.gate.set()
    assert await patient == 9
    assert impatient.cancelled()


async def test_stopping_mid_fetch_leaves_nobody_waiting_forever() -> None:
    fetch = Squares()
    fetch.gate = asyncio.Event()
    batch = ReadBatch(fetch)
    waiting = [asyncio.create_task(batch.get(n)) for n in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert batch._fetching is not None
    batch._fetching.cancel()
    done, _ = await asyncio.wait(waiting, timeout=5)
    assert done == set(waiting) and all(task.cancelled() for task in waiting)
