"""Conversation locks: one person's messages are handled one at a time, in order.

`ConversationLocks` is what the dispatcher asks for; `KeyedLocks` is today's, one
asyncio lock per key in this process, dropped when nobody holds or waits for it.
With several instances on one database the lock must live in the database (an
advisory lock), behind the same interface.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class Held(Protocol):
    """A lock as its holder has it."""

    async def check(self) -> None:
        """Raise a storage failure (try again later) if the lock may be someone else's by
        now: asked just before the holder writes, so that two turns of one conversation
        never both write."""
        ...


class ConversationLocks(Protocol):
    def hold(self, key: str) -> AbstractAsyncContextManager[Held]:
        """Hold one conversation's lock for the block."""
        ...

    def hold_many(self, keys: Iterable[str]) -> AbstractAsyncContextManager[Held]:
        """Hold several together (a chunk of a cohort), never deadlocking another holder."""
        ...


class InMemory:
    """A lock in this process's memory: held until its block ends, whatever happens."""

    async def check(self) -> None:
        return None


IN_MEMORY = InMemory()


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[InMemory]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield IN_MEMORY
        finally:
            self._forget(key)

    @asynccontextmanager
    async def hold_many(self, keys: Iterable[str]) -> AsyncIterator[InMemory]:
        """Hold several keys together (a chunk of a scheduled prompt's people).

        They are taken in sorted order, so two callers holding several keys at once
        can never each wait for a key the other holds. Written out rather than as
        nested `hold`s: a chunk takes a thousand keys, and this is on the hot path.
        """
        ordered = sorted(set(keys))  # the same key twice would wait for itself
        for key in ordered:
            self._locks.setdefault(key, asyncio.Lock())
            self._users[key] = self._users.get(key, 0) + 1
        taken: list[asyncio.Lock] = []
        try:
            for key in ordered:
                lock = self._locks[key]
                await lock.acquire()
                taken.append(lock)
            yield IN_MEMORY
        finally:
            for lock in taken:
                lock.release()
            for key in ordered:
                self._forget(key)

    def _forget(self, key: str) -> None:
        self._users[key] -= 1
        if self._users[key] == 0:
            # Nobody else holds or waits: forget the lock so memory stays flat.
            del self._users[key], self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
