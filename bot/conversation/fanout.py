"""One scheduled prompt to a whole cohort: many people at once, each still once.

`Dispatcher.prompt` handles one person the way a message is handled: lock, read,
engine, commit. A cohort of 100,000 done that way is 100,000 reads and commits
one after another. Here people go in chunks:

- the chunk's locks are taken together, in sorted order (see `KeyedLocks.hold_many`),
  so a message from someone in it can't interleave with their prompt;
- two reads tell, for everyone in the chunk, whether the prompt's key was seen
  (prompted already, perhaps by a process that died mid-way), whether they can be
  reached, and which run of the guide they have under way, if any;
- the chunk's commits go to storage in one transaction, each under its own keys
  and each accepted or refused alone, so nobody is prompted twice whatever runs
  beside it or crashes.

Starting a guide gives every person the same rows but for their run id and their
own names (pseudonym, sealed address, keys), so the engine runs once per chunk,
channel and language, for a made-up person, and each person's rows are stamped
from that sample. A second sample under other names checks that stamping gives exactly what
the engine and `Dispatcher._record` give; if it didn't, it is one `prompt` each.
Someone with a run of the guide under way (last week's, say) goes through the
dispatcher's own code instead, from the chunk's reads: welcomed back to it, or (if it
expired) started afresh, in the chunk's transaction like everyone else.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bot.flows.events import Reply
from bot.flows.loader import LoadedGuide
from storage.protocol import STORAGE_FAILURES
from storage.rows import Commit, DeliveryRow, GuideSourceRow, OutboxRow, ParticipantRow, RunRow

if TYPE_CHECKING:
    from bot.conversation.dispatcher import Dispatcher
    from bot.conversation.turn import Turn

# People per read and per transaction. Each transaction rewrites the index pages its
# rows land on (keys are hashes, so anywhere), so fewer, bigger ones write far less:
# 100,000 people took 13 s in chunks of 1,000 and 9 s in chunks of 10,000. The
# chunk's people wait that long (about a second) if they write meanwhile.
log = logging.getLogger(__name__)

CHUNK = 10_000
# Run ids as the engine makes them (uuid hex), spelled the same inside JSON strings.
PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]+")


@dataclass(frozen=True)
class _Names:
    """A made-up person to start a guide for: names nothing a guide could contain."""

    participant: str
    address: bytes
    run: str
    key: str

    @classmethod
    def fresh(cls) -> _Names:
        token = uuid.uuid4().hex
        return cls(f"p{token}", f"a{token}".encode(), f"r{token}", f"k{token}")


@dataclass(frozen=True)
class _Opening:
    """What starting one guide writes for anyone on one channel in one language, with
    the run id cut out of the run's state and of each message (where the buttons name
    it, so a tap is checked against the run it belongs to)."""

    language: str | None
    run: RunRow
    state: list[str]  # the state's JSON, split where the run id goes
    source: GuideSourceRow | None
    messages: list[tuple[OutboxRow, list[str]]]  # and each payload, split the same way
    schedule: str
    delivered_at: datetime

    @classmethod
    def cut(cls, sample: Commit, names: _Names) -> _Opening | None:
        """The opening in a sample's commit, or None if it is not one run and its messages."""
        if sample.participant is None or sample.delivery is None or len(sample.runs) != 1:
            return None
        run = sample.runs[0]
        return cls(
            sample.participant.language,
            run,
            run.state.split(names.run),
            sample.guide_source,
            [(row, row.payload.split(names.run)) for row in sample.outbox],
            sample.delivery.schedule,
            sample.delivery.delivered_at,
        )

    def stamp(self, person: ParticipantRow, run_id: str, key: str, seen_key: str | None) -> Commit:
        """The commit `Dispatcher.prompt` would write for this person and run id (one
        that JSON spells as it is: see PLAIN_ID)."""
        run = self.run
        return Commit(
            inbound_key=seen_key,
            participant=ParticipantRow(person.id, person.channel, person.address, self.language,
                                       run_id),
            runs=[RunRow(run_id, person.id, run.guide_id, run.guide_version, run.guide_hash,
                         run.status, run_id.join(self.state), run.started_at, run.updated_at,
                         run.gathering)],
            guide_source=self.source,
            outbox=[OutboxRow(row.channel, person.id, person.address, run_id.join(payload),
                              row.not_before) for row, payload in self.messages],
            delivery=DeliveryRow(key, self.schedule, person.id, run_id, self.delivered_at),
            still_kept=person.id,
        )  # fmt: skip


class Fanout:
    def __init__(self, dispatcher: Dispatcher, chunk: int = CHUNK) -> None:
        self.d = dispatcher
        self.chunk = chunk

    async def prompt_many(
        self, prompts: Sequence[tuple[str, str]], schedule_id: str, guide_id: str,
        not_before: datetime | None,
    ) -> int:  # fmt: skip
        """Prompt each (participant, key) once: how many were prompted now."""
        # Two chunks at a time: while one is written (SQLite's work, mostly off the
        # interpreter) the next is read and made ready. Week two, when everyone's last
        # invitation must be ended first: 100,000 people in 17 s instead of 19.5.
        prompted = 0
        under_way: list[asyncio.Task[int]] = []
        try:
            for start in range(0, len(prompts), self.chunk):
                if len(under_way) == 2:
                    prompted += await under_way.pop(0)
                if under_way and under_way[0].done():
                    prompted += under_way.pop(0).result()  # if it failed, none more begins
                part = prompts[start : start + self.chunk]
                under_way.append(
                    asyncio.create_task(self._chunk(part, schedule_id, guide_id, not_before))
                )
            while under_way:
                prompted += await under_way.pop(0)
        finally:
            # One failed (or we were cancelled): the other finishes what it began, as its
            # writes stand whatever happens, before the failure is told; its own, logged.
            for failure in await asyncio.gather(*under_way, return_exceptions=True):
                if isinstance(failure, Exception):
                    log.error("a chunk of a scheduled prompt failed too", exc_info=failure)
        return prompted

    async def _chunk(
        self, prompts: Sequence[tuple[str, str]], schedule_id: str, guide_id: str,
        not_before: datetime | None,
    ) -> int:  # fmt: skip
        d = self.d
        loaded = d.library.get(guide_id.strip().lower())
        one_by_one: list[tuple[str, str]] = []
        written: list[bool] = []
        async with d._locks.hold_many(participant for participant, _ in prompts) as held:
            now = d.clock()
            seen_keys = [d._seen_key(key) for _, key in prompts]
            under_way: dict[str, RunRow] = {}
            try:
                found = await d.storage.conversations(
                    [(person, seen) for (person, _), seen in zip(prompts, seen_keys, strict=True)]
                )
                if loaded is not None and loaded.guide is not None:
                    under_way = await d.storage.open_runs_of(
                        [participant for participant, _ in prompts], loaded.guide.id
                    )
                read = list(zip(prompts, seen_keys, found, strict=True))
            except STORAGE_FAILURES:
                raise  # storage is failing: the occurrence is tried again later
            except Exception:
                # A row that can't be read (a damaged run) must not cost everyone else
                # this week's prompt: each goes alone, after, and fails alone.
                log.exception("a chunk of a scheduled prompt could not be read; one by one")
                read, one_by_one = [], list(prompts)
            listed: set[str] = set()
            # With their key, seen key, and the turn that ended a run of theirs, if any.
            starting: list[tuple[ParticipantRow, str, str | None, Turn | None]] = []
            commits: list[Commit] = []
            for (participant, key), seen_key, conversation in read:
                person = conversation.participant
                if conversation.seen or person is None or person.unreachable:
                    continue  # prompted already, or gone
                if participant in listed or loaded is None or loaded.guide is None:
                    one_by_one.append((participant, key))  # listed twice: after, alone
                    continue
                listed.add(participant)
                existing = under_way.get(participant)
                if existing is None:
                    starting.append((person, key, seen_key, None))
                    continue
                # Last week's run still open: welcomed back to it, or (expired) ended and
                # started afresh below, as `Dispatcher.prompt` does, from the reads above.
                turn = d._prompt_turn(person, key, conversation.run, now, not_before)
                try:
                    outcome = await d._carry_on(turn, existing, scheduled=True)
                except Exception:  # their run could not be read (see below)
                    # Never the whole chunk for one person: alone, after, where a
                    # failure is logged and everyone else's prompt still goes.
                    one_by_one.append((participant, key))
                    continue
                if outcome is None:
                    # Not theirs to carry on (joined through a gathering since closed):
                    # begun afresh, as one at a time begins it, with nothing to end first.
                    starting.append((person, key, seen_key, None))
                elif outcome.state.status.ended:
                    starting.append((person, key, seen_key, turn))
                elif d._delivered(turn, key, schedule_id, guide_id):
                    commits.append(turn.commit)
            openings: dict[tuple[str, str | None], _Opening | None] = {}
            for person, _, _, _ in starting:
                group = (person.channel, person.language)
                if group not in openings and loaded is not None:
                    openings[group] = await self._opening(
                        loaded, person, schedule_id, guide_id, now, not_before
                    )
            with _collector_paused():
                for person, key, seen_key, ended in starting:
                    opening = openings[(person.channel, person.language)]
                    run_id = d.new_id()
                    if opening is None or not PLAIN_ID.fullmatch(run_id):
                        one_by_one.append((person.id, key))  # from the start, alone
                        continue
                    begun = opening.stamp(person, run_id, key, seen_key)
                    commits.append(begun if ended is None else _after(ended.commit, begun))
                if commits:
                    await held.check()  # nobody else's turn in these conversations either
                    written = await d.storage.commit_many(commits)
                starting.clear()
                commits.clear()  # freed now, before the collector is back
        prompted = sum(written)
        if prompted:
            d.on_commit()
        # The rest under their own locks (the chunk's are released), side by side so
        # their commits share transactions too.
        done = await asyncio.gather(
            *(d.prompt(participant, key, schedule_id, guide_id, not_before)
              for participant, key in one_by_one),
            return_exceptions=True,
        )  # fmt: skip
        failures = [r for r in done if isinstance(r, BaseException)]
        for failure in failures:
            # One person's prompt failing must not stop anyone else's, nor the tick...
            log.error("a scheduled prompt could not be sent", exc_info=failure)
        for failure in failures:
            if isinstance(failure, STORAGE_FAILURES):
                raise failure  # ...but storage failing must: the occurrence is tried again
        return prompted + sum(1 for r in done if r is True)

    async def _opening(
        self, loaded: LoadedGuide, person: ParticipantRow, schedule_id: str, guide_id: str,
        now: datetime, not_before: datetime | None,
    ) -> _Opening | None:  # fmt: skip
        """The opening for people on this person's channel in their language, checked:
        None if stamping would not give exactly what starting the guide gives."""
        first, second = _Names.fresh(), _Names.fresh()
        sample = await self._sample(loaded, person, first, schedule_id, guide_id, now, not_before)
        other = await self._sample(loaded, person, second, schedule_id, guide_id, now, not_before)
        if sample is None or other is None:
            return None
        opening = _Opening.cut(sample, first)
        if opening is None:
            return None
        someone = ParticipantRow(second.participant, person.channel, second.address)
        if opening.stamp(someone, second.run, second.key, self.d._seen_key(second.key)) != other:
            return None
        return opening

    async def _sample(
        self, loaded: LoadedGuide, person: ParticipantRow, names: _Names, schedule_id: str,
        guide_id: str, now: datetime, not_before: datetime | None,
    ) -> Commit | None:  # fmt: skip
        """What `Dispatcher.prompt` commits for a made-up person like this one (same
        channel and language) with no run under way; None unless it is a plain start:
        the run not ended at once, and only messages (no answers, no reads that would
        depend on who the person is)."""
        d = self.d
        like = ParticipantRow(names.participant, person.channel, names.address, person.language)
        turn = d._prompt_turn(like, names.key, None, now, not_before)
        outcome = await d._begin(turn, loaded, names.run)
        if outcome.state.status.ended or not all(isinstance(e, Reply) for e in outcome.events):
            return None
        if not d._delivered(turn, names.key, schedule_id, guide_id):
            return None
        return turn.commit


def _after(ended: Commit, begun: Commit) -> Commit:
    """One commit: a run ended (and recorded) by a turn, then a new one begun, as
    `Dispatcher._carry_on_or_begin` writes them. The run begun comes last, as the
    delivery and the person's current run name it."""
    ended.runs.extend(begun.runs)
    ended.outbox.extend(begun.outbox)
    ended.participant = begun.participant
    ended.guide_source = begun.guide_source
    ended.delivery = begun.delivery
    return ended


# Chunks under way with the collector paused (two overlap), and whether it was on before.
_pausing = 0
_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a chunk's rows are made, written and
    freed.

    That loop makes about fifteen objects per person, keeps them until they are
    written, and makes no cycles; the collector would otherwise walk every live
    object in the process again and again meanwhile, finding nothing: over a
    second per 100,000 people. Resumed while the rows were still alive, its first
    pass walked them all once more (0.5 s per 100,000). Two chunks are under way at
    once, so the collector stays off from the first chunk to the last: about 15 s for
    100,000 people. Other tasks run meanwhile: reference counting still frees what
    they make (a dispatcher handling 6,000 messages leaves no garbage in cycles), and
    a cycle among it waits for the collector's next pass.
    """
    global _pausing, _was_enabled
    if _pausing == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _pausing += 1
    try:
        yield
    finally:
        _pausing -= 1
        if _pausing == 0 and _was_enabled:  # the last chunk under way is done
            gc.enable()
