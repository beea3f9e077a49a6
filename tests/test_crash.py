"""Kill a writer with SIGKILL in the middle of a burst: nothing acknowledged is lost."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.flows.run import RunState
from bot.messages import Inbound
from bot.privacy import Identity
from storage.sqlite import SQLiteStorage
from tests.conftest import ROOT
from tests.crash_writer import SECRET, STEPS, burst_dispatcher

pytestmark = pytest.mark.same_on_every_backend  # tests/storage_suite.py

PEOPLE = 12


def burst_until_killed(db: Path, acks_before_kill: int) -> dict[str, int]:
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.crash_writer", str(db), str(PEOPLE)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    acked: dict[str, int] = defaultdict(int)
    assert writer.stdout is not None
    for count, line in enumerate(writer.stdout, start=1):
        _, user, answer = line.split()
        acked[user] = max(acked[user], int(answer))
        if count >= acks_before_kill:
            writer.send_signal(signal.SIGKILL)
            break
    writer.wait(timeout=30)
    return acked


async def test_every_acknowledged_answer_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    kill_at = random.Random(7).randint(40, PEOPLE * STEPS - 40)
    acked = burst_until_killed(db, kill_at)
    assert acked, "the writer acknowledged nothing"

    storage = SQLiteStorage(db)
    await storage.open()
    try:
        identity = Identity(SECRET)
        for n in range(PEOPLE):
            user = f"user{n}"
            person = await storage.participant(identity.pseudonym("terminal", user))
            if person is None:
                assert acked.get(user, 0) == 0
                continue
            run = await storage.run(person.current_run)  # type: ignore[arg-type]
            assert run is not None
            stored = {a.step: json.loads(a.value) for a in await storage.answers(run.id)}
            # Every acknowledged answer is there; at most one more (committed, not yet acked).
            expected = {f"q{i}": i for i in range(1, acked.get(user, 0) + 1)}
            assert expected.items() <= stored.items()
            assert len(stored) - len(expected) in (0, 1)
            # The run resumes at the step after the last stored answer.
            state = RunState.model_validate_json(run.state)
            assert state.step == (f"q{len(stored) + 1}" if len(stored) < STEPS else None)
        # Every message owed is still in the outbox, nothing was lost.
        owed = await storage.claim_due("terminal", datetime.now(UTC), 100_000)
        assert len(owed) >= sum(acked.values())
    finally:
        await storage.close()

    # The restarted bot carries on where each person was.
    storage = SQLiteStorage(db)
    await storage.open()
    try:
        dispatcher = burst_dispatcher(storage)
        user = max(acked, key=lambda u: acked[u])
        if acked[user] < STEPS - 1:
            # A retried update that was already committed is not applied twice.
            replay = await dispatcher.handle(
                Inbound("terminal", user, user, "999", key=f"{user}-{acked[user]}")
            )
            assert not replay.accepted
    finally:
        await storage.close()
