"""Read batching: look-ups asked for at about the same time go to the database as one query.

Each trip to the reader thread costs the event loop about 55 µs (a future, a queue,
a wake-up through the loop's self-pipe, a callback), far more than the look-up
itself. Under load many people's messages arrive together, and each needs its
conversation read first: a `ReadBatch` gathers the look-ups asked for while its
own trip is out and sends them together as the next trip, one query for all of
them. A look-up asked for when no trip of its batch is out goes on the next turn
of the event loop, with any others asked for meanwhile.

Measured with 500 concurrent point reads on one aiosqlite connection: 55 µs of the
event loop's time per read one by one, 3 µs per read fifty at a time.

Before each trip the batch lets the event loop turn twice (`LINGER`): the look-ups
that the callbacks already woken are about to ask for (the turns a trip just answered,
the webhook calls just read) join it instead of waiting for the trip after. It costs
a look-up two turns of the loop, microseconds when the loop is idle; under load it
fills the batches. Measured (benchmarks/RESULTS.md, session 13), two instances on
one PostgreSQL flat out: CPU per answer 1.09-1.12 ms without, 1.05-1.08 ms with two
turns (one turn: 1.08); one instance unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key")
Value = TypeVar("Value")

Waiting = list[tuple[Key, "asyncio.Future[Value]"]]
# Turns of the event loop a batch waits for more look-ups before each trip.
LINGER = 2


class ReadBatch(Generic[Key, Value]):
    """`await get(key)`, answered by `fetch(keys)` for every key waiting at that moment.

    `fetch` returns one item per key, in the order given: the value, or the exception
    that look-up alone should raise (a row that can't be read fails only whoever asked
    for it). If `fetch` itself raises, every look-up of that trip raises the same
    error; those waiting for the next trip are still served.
    """

    def __init__(
        self,
        fetch: Callable[[Sequence[Key]], Awaitable[Sequence[Value | Exception]]],
        max_batch: int = 500,
        linger: int = LINGER,
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._linger = linger
        self._waiting: Waiting[Key, Value] = []
        self._out: Waiting[Key, Value] = []  # the look-ups on the trip now out
        self._fetching: asyncio.Task[None] | None = None

    async def get(self, key: Key) -> Value:
        future: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._fetching is None or self._fetching.done():
            self._fetching = asyncio.create_task(self._fetch_waiting())
            self._fetching.add_done_callback(self._stopped)
        return await future

    async def _fetch_waiting(self) -> None:
        while self._waiting:
            for _ in range(self._linger):
                await asyncio.sleep(0)  # a turn of the loop: those about to ask join
            self._out = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            try:
                values = await self._fetch([key for key, _ in self._out])
                if len(values) != len(self._out):
                    raise RuntimeError("a batched read gave a value too many or too few")
            except Exception as error:
                values = [error] * len(self._out)
            for (_, future), value in zip(self._out, values, strict=True):
                if future.done():  # its caller gave up meanwhile
                    continue
                if isinstance(value, Exception):
                    future.set_exception(value)
                else:
                    future.set_result(value)
            self._out = []

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """Fetching was cancelled (the bot is stopping), perhaps before it began: cancel
        whoever it was to answer, so nobody waits forever."""
        if not task.cancelled() and task.exception() is None:
            return  # it answered everyone it took
        stranded = self._out
        if self._fetching is task:  # else the waiting are a newer task's to answer
            stranded = stranded + self._waiting
            self._waiting = []
        self._out = []
        for _, future in stranded:
            future.cancel()
