"""The storage protocol suite: written against `Storage`, run against every backend (the
`store` fixture); the few tests of SQLite alone open a `SQLiteStorage` and say so."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from dataclasses import astuple
from datetime import timedelta
from pathlib import Path

import pytest

from storage.protocol import Storage
from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    GatheringRow,
    GuideSourceRow,
    OutboxRow,
    ParticipantRow,
    PreferenceRow,
    RecordRow,
    RunRow,
    StepCount,
    WrongCodeRow,
    WrongCodes,
)
from storage.sqlite import SQLiteStorage
from tests.conftest import START


def people(counts: list[StepCount]) -> list[tuple[str, int]]:
    return [(c.step, c.count) for c in counts]


def run_row(run_id: str = "r1", status: str = "active", state: str = "{}") -> RunRow:
    return RunRow(run_id, "p1", "g", 1, "h1", status, state, START, START)


def answer(step: str, value: str = '"x"', run_id: str = "r1") -> AnswerRow:
    return AnswerRow(run_id, step, "p1", "g", 1, "ask", value, START)


def outbox(text: str, participant: str = "p1", channel: str = "terminal") -> OutboxRow:
    return OutboxRow(channel, participant, b"sealed", f'{{"text": "{text}"}}', START)


async def test_a_commit_writes_everything_together(store: Storage) -> None:
    commit = Commit(
        inbound_key="u1",
        participant=ParticipantRow("p1", "terminal", b"sealed", "en", "r1"),
        runs=[run_row()],
        guide_source=GuideSourceRow("h1", "g", 1, "guide: g"),
        answers=[answer("a"), answer("b")],
        consents=[ConsentRow("p1", "g", 1, True, START)],
        outbox=[outbox("one"), outbox("two")],
    )
    assert await store.commit(commit)
    assert (await store.participant("p1")) == ParticipantRow(
        "p1", "terminal", b"sealed", "en", "r1"
    )
    assert (await store.run("r1")) == run_row()
    assert [a.step for a in await store.answers("r1")] == ["a", "b"]
    assert [c.given for c in await store.consents("p1")] == [True]
    assert await store.guide_source("h1") == "guide: g"
    due = await store.claim_due("terminal", START, 10)
    assert [row.payload for row in due] == ['{"text": "one"}', '{"text": "two"}']
    first = due[0]
    assert first == OutboxRow("terminal", "p1", b"sealed", '{"text": "one"}', START, 0, first.id)
    assert isinstance(first.id, int) and due[1].id == first.id + 1
    # Just claimed: the caller's own to send (on every backend).
    assert store.claim_holds(first.id) and store.claim_holds(due[1].id)


async def test_the_same_inbound_key_commits_once(store: Storage) -> None:
    assert await store.commit(Commit(inbound_key="u1", answers=[answer("a")]))
    assert not await store.commit(Commit(inbound_key="u1", answers=[answer("b")]))
    assert [a.step for a in await store.answers("r1")] == ["a"]
    assert await store.inbound_seen("u1")
    assert not await store.inbound_seen("u2")


async def test_a_failed_commit_leaves_nothing_half_done(store: Storage) -> None:
    broken = Commit(runs=[run_row()], answers=[answer("a")], outbox=[outbox("x")])
    broken.consents.append(ConsentRow("p1", "g", 1, True, None))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        await store.commit(broken)
    assert await store.run("r1") is None
    assert await store.answers("r1") == []
    assert await store.claim_due("terminal", START, 10) == []
    # The store still works afterwards.
    assert await store.commit(Commit(runs=[run_row()]))


async def test_answers_are_replaced_and_withdrawn(store: Storage) -> None:
    await store.commit(Commit(runs=[run_row()], answers=[answer("a", '"first"')]))
    await store.commit(Commit(answers=[answer("a", '"second"')]))
    assert [a.value for a in await store.answers("r1")] == ['"second"']
    await store.commit(Commit(withdrawn=[("r1", "a")]))
    assert await store.answers("r1") == []


async def test_run_updates_and_open_run(store: Storage) -> None:
    await store.commit(Commit(runs=[run_row("r1", "finished"), run_row("r2", "active")]))
    assert (await store.open_run("p1", "g")).id == "r2"  # type: ignore[union-attr]
    await store.commit(Commit(runs=[run_row("r2", "stopped", '{"x": 1}')]))
    assert await store.open_run("p1", "g") is None
    assert (await store.run("r2")).state == '{"x": 1}'  # type: ignore[union-attr]
    assert await store.count_runs("p1") == 2


async def test_deleting_a_run_deletes_its_answers(store: Storage) -> None:
    await store.commit(
        Commit(
            participant=ParticipantRow("p1", "terminal", b"s"),
            runs=[run_row()],
            answers=[answer("a")],
        )
    )
    await store.commit(Commit(delete_run="r1", delete_unused_participant="p1"))
    assert await store.run("r1") is None
    assert await store.answers("r1") == []
    assert await store.participant("p1") is None


async def test_a_participant_is_deleted_only_when_nothing_of_theirs_is_kept(
    store: Storage,
) -> None:
    person = ParticipantRow("p1", "terminal", b"s")
    await store.save_cohort("weekly", "WEEKLY1", START)
    await store.commit(Commit(participant=person, runs=[run_row("r1"), run_row("r2")]))
    await store.commit(Commit(delete_run="r1", delete_unused_participant="p1"))
    assert await store.participant("p1") == person  # r2 is still theirs
    settings = PreferenceRow("p1", "America/Chicago")
    await store.commit(Commit(joined=[("weekly", "p1")], preference=settings))
    await store.commit(Commit(delete_run="r2", delete_unused_participant="p1"))
    assert await store.participant("p1") == person  # a member, to be asked again
    assert await store.preference("p1") == settings
    await store.commit(Commit(left=[(None, "p1")], delete_unused_participant="p1"))
    assert await store.participant("p1") is None
    assert await store.preference("p1") is None  # only ever for check-ins
    # A run started in the same commit is kept too, with its person.
    await store.commit(Commit(participant=person, runs=[run_row("r3")], delete_run="r1",
                              delete_unused_participant="p1"))  # fmt: skip
    assert await store.participant("p1") == person


async def test_outbox_order_retry_and_sent(store: Storage) -> None:
    await store.commit(
        Commit(
            outbox=[
                outbox("one"),
                outbox("two"),
                outbox("three", participant="p2"),
                outbox("other", channel="slack"),
            ]
        )
    )
    first, second, third = await store.claim_due("terminal", START, 10)
    assert first.id is not None and second.id is not None and third.id is not None
    # The first was partly sent: what is still owed of it goes in its place.
    await store.outbox_retry(first.id, START + timedelta(seconds=30), 1, '{"text": "the rest"}')
    # p1's second message waits behind their first; p2 is not held up.
    assert [r.id for r in await store.claim_due("terminal", START, 10)] == [third.id]
    await store.outbox_sent([third.id])
    assert await store.next_due("terminal") == START
    later = await store.claim_due("terminal", START + timedelta(minutes=1), 10)
    assert [(r.id, r.attempts) for r in later] == [(first.id, 1), (second.id, 0)]
    assert [r.payload for r in later] == ['{"text": "the rest"}', second.payload]
    await store.outbox_retry(second.id, START + timedelta(minutes=1), 1)  # no payload: kept
    again = await store.claim_due("terminal", START + timedelta(minutes=1), 10)
    assert [(r.id, r.payload) for r in again] == [(r.id, r.payload) for r in later]
    await store.outbox_sent([first.id, second.id])
    assert await store.next_due("terminal") is None
    assert await store.next_due("nowhere") is None


async def test_messages_owed_are_those_neither_sent_nor_dropped(store: Storage) -> None:
    await store.commit(Commit(outbox=[outbox("a", participant="p1"), outbox("b", participant="p2"),
                                      outbox("c", participant="p3")]))  # fmt: skip
    a, b, c = await store.claim_due("terminal", START, 10)
    ids = [a.id or 0, b.id or 0, c.id or 0]
    assert await store.outbox_owed(ids) == set(ids)
    await store.outbox_sent([a.id or 0])
    await store.commit(Commit(forget=("p2", START)))  # /forget
    assert await store.outbox_owed(ids) == {c.id}
    await store.mark_unreachable("p3")
    assert await store.outbox_owed(ids) == set()
    assert await store.outbox_owed([]) == set()


async def test_messages_recorded_as_sent_one_by_one_at_once_all_leave(store: Storage) -> None:
    # Delivery records each message as soon as it is taken; many such records queued
    # together are written as one, and each message still leaves only once.
    await store.commit(Commit(outbox=[outbox(f"m{n}", participant=f"p{n}") for n in range(9)]))
    due = await store.claim_due("terminal", START, 10)
    assert len(due) == 9
    await asyncio.gather(*(store.outbox_sent([row.id or 0]) for row in due[:8]))
    assert [r.payload for r in await store.claim_due("terminal", START, 10)] == [due[8].payload]


async def test_a_batch_takes_whole_people_in_order_however_their_waits_fell(
    store: Storage,
) -> None:
    def at(text: str, who: str, seconds: int) -> OutboxRow:
        row = outbox(text, participant=who)
        return OutboxRow(
            row.channel, who, row.address, row.payload, START + timedelta(seconds=seconds)
        )

    # ana's first message was put off (a retry) past her second; carl's second must wait.
    rows = [at("a1", "ana", 5), at("a2", "ana", 0), at("b1", "ben", 1),
            at("c1", "carl", 0), at("c2", "carl", 60), at("c3", "carl", 0)]  # fmt: skip
    await store.commit(Commit(outbox=rows))
    now = START + timedelta(seconds=10)

    def texts(batch: list[OutboxRow]) -> list[str]:
        return [json.loads(r.payload)["text"] for r in batch]

    # People are taken by whose first message fell due first: carl (0), ben (1), ana (5).
    assert texts(await store.claim_due("terminal", now, 1)) == ["c1"]
    assert texts(await store.claim_due("terminal", now, 2)) == ["b1", "c1"]
    assert texts(await store.claim_due("terminal", now, 3)) == ["a1", "a2", "b1", "c1"]


async def test_unreachable_people_are_marked_and_owed_nothing(store: Storage) -> None:
    await store.commit(
        Commit(
            participant=ParticipantRow("p1", "terminal", b"s"),
            outbox=[outbox("a"), outbox("b"), outbox("c", participant="p2")],
        )
    )
    await store.mark_unreachable("p1")
    assert (await store.participant("p1")).unreachable  # type: ignore[union-attr]
    assert [r.participant for r in await store.claim_due("terminal", START, 10)] == ["p2"]


@pytest.mark.sqlite_only(reason="SQLite's file, reopened")
async def test_reopening_keeps_data_and_schema(tmp_path: Path) -> None:
    """SQLite only: its file, reopened, and private to its owner."""
    first = SQLiteStorage(tmp_path / "again.db")
    await first.open()
    await first.commit(Commit(runs=[run_row()]))
    await first.close()
    second = SQLiteStorage(tmp_path / "again.db")
    await second.open()
    assert await second.run("r1") == run_row()
    await second.close()
    assert (tmp_path / "again.db").stat().st_mode & 0o077 == 0


async def test_records_expire_and_are_taken_once(store: Storage) -> None:
    now = START
    await store.put_record("slack-install", "T1", b"sealed-1")
    await store.put_record("slack-install", "T1", b"sealed-2")  # replaces
    assert await store.record("slack-install", "T1", now) == b"sealed-2"
    assert await store.record("slack-install", "T2", now) is None
    await store.put_record("oauth-state", "s1", b"", now + timedelta(minutes=10))
    await store.put_record("oauth-state", "old", b"", now - timedelta(seconds=1))
    assert await store.record("oauth-state", "old", now) is None
    assert await store.take_record("oauth-state", "s1", now) == b""
    assert await store.take_record("oauth-state", "s1", now) is None  # only once
    assert await store.take_record("oauth-state", "old", now) is None  # expired
    await store.delete_records("slack-install", "T1")
    assert await store.record("slack-install", "T1", now) is None


async def test_a_record_is_replaced_only_if_it_is_still_what_was_read(store: Storage) -> None:
    now = START
    assert await store.replace_record("codebook", "g/q", None, b"v1")  # there was none
    assert not await store.replace_record("codebook", "g/q", None, b"other")  # there is now
    assert await store.replace_record("codebook", "g/q", b"v1", b"v2a")
    assert not await store.replace_record("codebook", "g/q", b"v1", b"v2b")  # read v1, too late
    assert await store.record("codebook", "g/q", now) == b"v2a"
    assert not await store.replace_record("codebook", "elsewhere", b"v1", b"x")  # none to replace
    assert await store.record("codebook", "elsewhere", now) is None


async def test_expired_records_are_cleared_and_the_rest_kept(store: Storage) -> None:
    now = START
    await store.put_record("console-session", "gone", b"who", now - timedelta(hours=1))
    await store.put_record("console-link", "due", b"", now)  # expires at this very moment
    await store.put_record("console-session", "live", b"who", now + timedelta(hours=1))
    await store.put_record("role", "p1", b"facilitator")  # never expires
    assert await store.clear_expired_records(now) == 2
    assert await store.clear_expired_records(now) == 0
    assert [r.key for r in await store.records_of("console-session", now)] == ["live"]
    assert await store.record("role", "p1", now) == b"facilitator"
    later = now + timedelta(hours=2)
    assert await store.clear_expired_records(later) == 1
    assert await store.record("role", "p1", later) == b"facilitator"


async def test_gatherings_and_the_runs_joined_through_them(store: Storage) -> None:
    from storage.rows import Commit, GatheringRow

    gathering = GatheringRow(
        "g1", "K7M2QP", "pulse", "Tuesday supper", "fac", "telegram", b"group", b"dm",
        True, 1, "open", START, START + timedelta(days=7),
    )  # fmt: skip
    await store.commit(Commit(gathering=gathering))
    assert await store.gathering_by_code("K7M2QP") == gathering
    run = RunRow("r9", "p1", "pulse", 1, "h", "active", "{}", START, START, "g1")
    await store.commit(Commit(runs=[run, run_row("r8")], answers=[answer("q", run_id="r9")]))
    assert [r.id for r in await store.gathering_runs("g1")] == ["r9"]
    assert [a.step for a in await store.gathering_answers("g1")] == ["q"]
    await store.commit(Commit(gathering_closed=("g1", START)))
    await store.commit(Commit(gathering_part=("g1", 5)))  # too late: it is closed
    closed = GatheringRow(**{**gathering.__dict__, "status": "closed", "closed_at": START})
    assert (await store.gathering("g1")) == closed
    assert await store.gathering_by_code("NOPE") is None


async def test_free_text_leaves_out_what_was_written_before_someone_was_forgotten(
    store: Storage,
) -> None:
    """As exports do: an older copy of someone's words that came back after they asked to
    be forgotten (a backup restored by other means) is never read; what a person with
    the same pseudonym writes afterwards is."""
    await store.commit(Commit(forget=("p1", START)))  # the tombstone
    given = [
        AnswerRow("old", "story", "p1", "g", 1, "ask", '"before"', START - timedelta(hours=1)),
        AnswerRow("new", "story", "p1", "g", 1, "ask", '"after"', START + timedelta(hours=1)),
        AnswerRow("p2r", "story", "p2", "g", 1, "ask", '"someone else"', START - timedelta(hours=1)),
    ]  # fmt: skip
    await store.commit(Commit(answers=given))
    since, until = START - timedelta(days=1), START + timedelta(days=1)
    pages = [page async for page in store.answer_text_pages("g", ["story"], since, until)]
    assert sorted(json.loads(a.value) for page in pages for a in page) == ["after", "someone else"]


async def test_free_text_comes_a_page_at_a_time_each_row_once(store: Storage) -> None:
    said = []
    for n in range(7):  # people p0..p6; every other one ran the guide twice
        for run in range(1 + n % 2):
            at = START + timedelta(minutes=10 * run + n)
            said += [AnswerRow(f"r{n}.{run}", step, f"p{n}", "g", 1, "ask", f'"{step} {n}.{run}"',
                               at + timedelta(seconds=s))
                     for s, step in enumerate(["story", "hope"])]  # fmt: skip
    others = [
        AnswerRow("r0.0", "week", "p0", "g", 1, "scale", "3", START),  # not a step asked for
        AnswerRow("x1", "story", "p0", "other", 1, "ask", '"elsewhere"', START),  # other guide
        AnswerRow("x2", "story", "p1", "g", 1, "ask", '"late"', START + timedelta(days=2)),
        AnswerRow("x3", "story", "p2", "g", 1, "ask", "null", START),  # skipped
    ]
    await store.commit(Commit(answers=said + others))
    since, until = START - timedelta(hours=1), START + timedelta(days=1)
    by_person = sorted(said, key=lambda a: (a.participant, a.answered_at, a.run_id, a.step))
    expected = [
        (a.participant, a.run_id, a.step, a.value, "") for a in by_person
    ]  # "": no language asked
    for size in (3, 4, 20, 100):  # a last page part full, exactly full, one page, too big
        pages = [page async for page in store.answer_text_pages(
            "g", ["story", "hope"], since, until, page=size)]  # fmt: skip
        assert [len(p) for p in pages[:-1]] == [size] * (len(pages) - 1)
        assert [astuple(row) for page in pages for row in page] == expected
    runs = ["r5.1", "r2.0", "r5.0", "x2"]  # x2: answered too late
    some = store.answer_text_pages("g", ["story"], since, until, runs=runs, page=1)
    assert [astuple(row) async for page in some for row in page] == [
        (f"p{n[0]}", f"r{n}", "story", f'"story {n}"', "") for n in ["2.0", "5.0", "5.1"]
    ]
    assert [p async for p in store.answer_text_pages("g", [], since, until)] == []
    assert [p async for p in store.answer_text_pages("g", ["story"], since, until, [])] == []
    # Stopping early closes it; the store reads on.
    async with aclosing(store.answer_text_pages("g", ["story"], since, until, page=2)) as stream:
        async for _page in stream:
            break
    assert (await store.answer_people("g", since, until, ["story"])) == [StepCount("story", 7)]


async def test_tallies_split_lists_of_choices_and_people_count_once(store: Storage) -> None:
    def given(run: str, who: str, step: str, kind: str, value: str) -> AnswerRow:
        return AnswerRow(run, step, who, "g", 1, kind, value, START)

    await store.commit(Commit(answers=[
        given("r1", "p1", "help", "choose_many", '["pay", "rest"]'),
        given("r2", "p2", "help", "choose_many", '["pay"]'),
        given("r3", "p1", "help", "choose_many", '["pay", "rest"]'),  # p1 again, another run
        given("r4", "p4", "help", "choose_many", "[]"),
        given("r1", "p1", "sector", "choose", '"care"'),
        given("r2", "p2", "sector", "choose", '"care"'),
        given("r3", "p1", "week", "scale", "4"),
        given("r4", "p4", "week", "scale", "null"),  # skipped: neither tallied nor counted
        given("r1", "p1", "story", "ask", '"text"'),  # free text is not tallied
    ]))  # fmt: skip
    since, until = START, START + timedelta(seconds=1)
    tallies = await store.people_tallies("g", since, until)  # p1 counts once in each
    assert sorted((t.step, json.loads(t.value), t.count) for t in tallies) == [
        ("help", "pay", 2), ("help", "rest", 1), ("sector", "care", 2), ("week", 4, 1),
    ]  # fmt: skip
    assert sorted(people(await store.answer_people("g", since, until))) == [
        ("help", 3), ("sector", 2), ("story", 1), ("week", 1),
    ]  # fmt: skip
    assert sorted(people(await store.answer_people("g", since, until, ["help", "week"]))) == [
        ("help", 3), ("week", 1),
    ]  # fmt: skip
    assert await store.answer_people("g", since, until, []) == []


async def test_a_broken_commit_among_others_fails_alone(store: Storage) -> None:
    # Commits that reach the backend at the same moment (answers from many people).
    run = RunRow("r1", "p1", "g", 1, "h1", "active", "{}", START, START)
    good = Commit(inbound_key="k1", runs=[run])
    broken = Commit(inbound_key="k2", consents=[ConsentRow("p2", "g", 1, True, None)])  # type: ignore[arg-type]
    seen_again = Commit(inbound_key="k1", answers=[AnswerRow("r1", "q1", "p1", "g", 1, "text", '"x"', START)])  # fmt: skip
    also_good = Commit(inbound_key="k3", outbox=[OutboxRow("terminal", "p3", b"s", "{}", START)])
    results = await asyncio.gather(
        *(store.commit(c) for c in (good, broken, seen_again, also_good)), return_exceptions=True
    )
    assert results[0] is True and results[2] is False and results[3] is True
    assert isinstance(results[1], AttributeError)
    assert await store.run("r1") == run
    assert await store.answers("r1") == []  # the repeated key wrote nothing
    assert await store.consents("p2") == []
    assert [r.participant for r in await store.claim_due("terminal", START, 10)] == ["p3"]
    assert not await store.inbound_seen("k2")


async def test_every_run_under_way_the_latest_first(store: Storage) -> None:
    later = RunRow("r3", "p1", "other", 1, "h1", "consent", "{}", START, START + timedelta(hours=1))
    await store.commit(Commit(runs=[run_row("r1"), run_row("r2", "finished"), later]))
    assert [r.id for r in await store.open_runs("p1")] == ["r3", "r1"]
    assert await store.open_runs("nobody") == []


async def test_records_of_a_kind_by_key_and_unexpired(store: Storage) -> None:
    now = START
    await store.put_record("role", "p2", b"coordinator")
    await store.put_record("role", "p1", b"facilitator", now + timedelta(days=1))
    await store.put_record("role", "p0", b"facilitator", now - timedelta(seconds=1))  # expired
    await store.put_record("invite", "h1", b"facilitator")  # another kind
    assert await store.records_of("role", now) == [
        RecordRow("role", "p1", b"facilitator", now + timedelta(days=1)),
        RecordRow("role", "p2", b"coordinator"),
    ]
    assert await store.records_of("nothing", now) == []


async def test_wrong_codes_are_counted_theirs_and_everyones_since_a_moment(
    store: Storage,
) -> None:
    def wrong(who: str, minutes: int, forget_before: int = -120) -> Commit:
        at = START + timedelta(minutes=minutes)
        return Commit(wrong_code=WrongCodeRow(who, at, START + timedelta(minutes=forget_before)))

    for commit in (wrong("p1", 0), wrong("p1", 10), wrong("p2", 20), wrong("p1", -90)):
        await store.commit(commit)
    assert await store.wrong_codes("p1", START) == WrongCodes(theirs=2, everyone=3)
    assert await store.wrong_codes("p3", START) == WrongCodes(theirs=0, everyone=3)
    assert await store.wrong_codes("p1", START + timedelta(minutes=15)) == WrongCodes(0, 1)
    # Each wrong code written forgets those from before its window.
    await store.commit(wrong("p2", 30, forget_before=5))
    assert await store.wrong_codes("p1", START - timedelta(hours=5)) == WrongCodes(1, 3)


async def test_the_latest_gathering_of_a_place_or_else_of_its_facilitator(store: Storage) -> None:
    def launched(gathering_id: str, code: str, place: str, hours: int) -> GatheringRow:
        return GatheringRow(
            gathering_id, code, "pulse", "supper", "fac", "telegram", b"group", b"dm", False, 0,
            "open", START + timedelta(hours=hours), START + timedelta(days=7), place=place,
        )  # fmt: skip

    for gathering in (
        launched("g1", "AAAAAA", "hall", 0),
        launched("g2", "BBBBBB", "kitchen", 1),
        launched("g3", "CCCCCC", "hall", 2),
        launched("g4", "DDDDDD", "dm-of-fac", 3),
    ):
        await store.commit(Commit(gathering=gathering))
    assert (await store.latest_gathering("fac", "hall")).id == "g3"  # type: ignore[union-attr]
    assert (await store.latest_gathering("fac", "kitchen")).id == "g2"  # type: ignore[union-attr]
    assert (await store.latest_gathering("fac", "elsewhere")).id == "g4"  # type: ignore[union-attr]
    assert await store.latest_gathering("someone", "elsewhere") is None


async def test_a_commit_the_database_refuses_among_others_fails_alone(store: Storage) -> None:
    # Refused by the database itself (a join code already taken), not before it is sent:
    # the others that reached it at the same moment are written all the same.
    def launched(gathering_id: str) -> GatheringRow:
        return GatheringRow(
            gathering_id, "SAME01", "pulse", "supper", "fac", "telegram", b"g", b"d", False, 0,
            "open", START, START + timedelta(days=7),
        )  # fmt: skip

    await store.commit(Commit(gathering=launched("g1")))
    results = await asyncio.gather(
        store.commit(Commit(inbound_key="k1", runs=[run_row("r1")])),
        store.commit(Commit(inbound_key="k2", gathering=launched("g2"))),
        store.commit(Commit(inbound_key="k3", runs=[run_row("r3")])),
        return_exceptions=True,
    )
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], Exception)
    assert await store.run("r1") is not None and await store.run("r3") is not None
    assert await store.gathering("g2") is None
    assert not await store.inbound_seen("k2")


async def test_answers_from_many_people_at_once_each_written_once(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    # As under load: many people's answers reach storage at the same moment, one of them
    # an update the platform sent again (its key seen before), two starting runs on the
    # same guide text.
    def answered(n: int, key: str) -> Commit:
        who = f"p{n}"
        run = RunRow(f"r{n}", who, "g", 1, "h1", "active", f'{{"n": {n}}}', START, START)
        return Commit(
            inbound_key=key,
            participant=ParticipantRow(who, "terminal", b"s", "en", run.id),
            runs=[run],
            guide_source=GuideSourceRow("h1", "g", 1, f"guide: g{n}"),
            answers=[AnswerRow(run.id, "q1", who, "g", 1, "ask", f'"{n}"', START)],
            consents=[ConsentRow(who, "g", 1, True, START)],
            outbox=[outbox(f"{n}a", who), outbox(f"{n}b", who)],
        )

    assert await store.commit(answered(0, "k0"))
    results = await asyncio.gather(*(store.commit(answered(n, f"k{n % 5}")) for n in range(5, 12)))
    assert results == [False, True, True, True, True, False, False]  # k0 seen, k1 taken by 6
    assert await store.participant("p5") is None and await store.run("r5") is None
    assert (await store.run("r6")).state == '{"n": 6}'  # type: ignore[union-attr]
    assert await store.guide_source("h1") == "guide: g0"  # the first one kept
    assert [c.given for c in await store.consents("p7")] == [True]
    due = await store.claim_due("terminal", START, 100)
    assert [json.loads(r.payload)["text"] for r in due] == [
        f"{n}{part}" for n in (0, 6, 7, 8, 9) for part in "ab"
    ]
    assert "failed" not in caplog.text  # written together, not one by one after an error
