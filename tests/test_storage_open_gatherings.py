"""The console's overview asks storage for the gatherings still open: part of the
per-backend storage suite (the `store` fixture runs it on every backend)."""

from __future__ import annotations

from datetime import timedelta

from storage.protocol import Storage
from storage.rows import Commit, GatheringRow
from tests.conftest import START


def gathering(gathering_id: str, code: str, launched_after: timedelta) -> GatheringRow:
    at = START + launched_after
    return GatheringRow(
        gathering_id, code, "pulse", f"Gathering {code}", "fac", "telegram", b"group", b"dm",
        False, 0, "open", at, at + timedelta(days=7),
    )  # fmt: skip


async def test_open_gatherings_are_the_unclosed_ones_the_latest_first(store: Storage) -> None:
    assert await store.open_gatherings() == []
    for row in (
        gathering("g1", "AAAAAA", timedelta(hours=1)),
        gathering("g2", "BBBBBB", timedelta(hours=3)),
        gathering("g3", "CCCCCC", timedelta(hours=2)),
    ):
        await store.commit(Commit(gathering=row))
    await store.commit(Commit(gathering_closed=("g2", START + timedelta(hours=4))))
    found = await store.open_gatherings()
    assert [g.code for g in found] == ["CCCCCC", "AAAAAA"]
    assert found[0] == gathering("g3", "CCCCCC", timedelta(hours=2))
