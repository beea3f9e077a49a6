"""The storage protocol's rights and retention (`RightsStore`): what /mydata shows,
/forget's erasure and tombstone, and old free text blanked, on every backend."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from storage.protocol import Storage
from storage.rows import (
    AnswerRow,
    Commit,
    ConsentRow,
    GatheringRow,
    KeptAbout,
    KeptAnswer,
    KeptConsent,
    KeptMembership,
    KeptPreference,
    KeptRole,
    KeptRun,
    ParticipantRow,
    PreferenceRow,
    RunRow,
)
from tests.conftest import START


def someones(who: str, run_id: str, story: str) -> Commit:
    run = RunRow(run_id, who, "pulse", 2, "h1", "finished", "{}", START, START)
    return Commit(
        participant=ParticipantRow(who, "terminal", b"sealed"),
        runs=[run],
        answers=[
            AnswerRow(run_id, "sector", who, "pulse", 2, "choose", '"care"', START),
            AnswerRow(run_id, "story", who, "pulse", 2, "ask", f'"{story}"', START),
        ],
        consents=[ConsentRow(who, "pulse", 2, True, START)],
        joined=[("weekly", who)],
        preference=PreferenceRow(who, "Europe/Madrid"),
    )


async def test_mine_is_everything_kept_about_them_and_nobody_else(store: Storage) -> None:
    await store.save_cohort("weekly", "WEEKLY1", START)
    await store.commit(someones("ana", "r1", "fair pay"))
    await store.commit(someones("ben", "r2", "rest"))
    await store.put_record("role", "ana", b"facilitator")
    kept = await store.mine("ana")
    assert kept.runs == [KeptRun("r1", "pulse", 2, "finished", START, START)]
    assert kept.answers == [
        KeptAnswer("r1", "pulse", "sector", "choose", '"care"', START),
        KeptAnswer("r1", "pulse", "story", "ask", '"fair pay"', START),
    ]
    assert kept.consents == [KeptConsent("pulse", 2, True, START)]
    assert [m.cohort for m in kept.cohorts] == ["weekly"]
    assert isinstance(kept.cohorts[0], KeptMembership)
    assert kept.preferences == [KeptPreference("Europe/Madrid", None)]
    assert kept.roles == [KeptRole("facilitator")]
    assert kept
    nothing = await store.mine("stranger")
    assert nothing == KeptAbout([], [], [], [], [], []) and not nothing


async def test_forget_leaves_a_tombstone_and_nothing_of_theirs(store: Storage) -> None:
    await store.save_cohort("weekly", "WEEKLY1", START)
    await store.commit(someones("ana", "r1", "fair pay"))
    await store.commit(someones("ben", "r2", "rest"))
    await store.put_record("role", "ana", b"facilitator")
    assert await store.tombstone("ana") is None
    when = START + timedelta(hours=1)
    await store.forget("ana", when)
    assert await store.tombstone("ana") == when
    assert not await store.mine("ana")
    assert await store.participant("ana") is None
    assert await store.record("role", "ana", when) is None
    assert [m.participant for m in await store.members("weekly")] == ["ben"]
    assert await store.mine("ben")  # others are untouched
    # Forgotten again, later: the tombstone says the latest time.
    await store.forget("ana", when + timedelta(days=1))
    assert await store.tombstone("ana") == when + timedelta(days=1)


async def test_reports_owed_to_others_that_quote_someone_forgotten_are_withdrawn(
    store: Storage,
) -> None:
    """A coordinator's digest waiting in the outbox quotes ana (it lists her pseudonym):
    when she is forgotten it goes unsent, and nothing of her words stays. Messages owed
    to others that quote only others stay."""
    from storage.rows import OutboxRow

    ana, ben = "a" * 32, "b" * 32

    def report(words: str, *quoting: str) -> OutboxRow:
        payload = json.dumps({"text": f"In their own words: {words}", "quoting": quoting})
        return OutboxRow("terminal", "coord", b"sealed", payload, START)

    await store.commit(someones(ana, "r1", "fair pay"))
    await store.commit(Commit(outbox=[report("fair pay; rest", ana, ben), report("rest", ben)]))
    await store.forget(ana, START + timedelta(hours=1))
    owed = await store.claim_due("terminal", START + timedelta(hours=1), 10)
    assert [json.loads(m.payload)["text"] for m in owed] == ["In their own words: rest"]


async def test_every_erasure_changes_what_reports_hear_of_the_forgotten(store: Storage) -> None:
    """How many have been forgotten and when the latest was: what tells a report kept a
    while that it may quote someone gone (the console's themes)."""
    assert await store.forgotten_so_far() == (0, None)
    await store.commit(someones("ana", "r1", "fair pay"))
    await store.forget("ana", START)
    assert await store.forgotten_so_far() == (1, START)
    await store.forget("ben", START + timedelta(hours=1))  # never here: a tombstone all the same
    assert await store.forgotten_so_far() == (2, START + timedelta(hours=1))
    await store.forget("ana", START + timedelta(hours=2))  # back since, and gone again
    assert await store.forgotten_so_far() == (2, START + timedelta(hours=2))


async def test_records_that_name_someone_forgotten_keep_what_happened_not_who(
    store: Storage,
) -> None:
    """The console's audit entries, sessions and sign-in links name people in their
    values: erasure puts "forgotten" there, and leaves records naming others alone."""
    ana, ben = "a" * 8 + "0123456789abcdef" + "b" * 8, "c" * 32
    entry = json.dumps({"who": ana, "what": "gathering_opened", "detail": "QX7P2K supper"})
    revoked = json.dumps({"who": ben, "what": "role_revoked", "detail": f"facilitator {ana}"})
    await store.put_record("audit", "20261205T1", entry.encode())
    await store.put_record("audit", "20261205T2", revoked.encode())
    await store.put_record("session", "s1", json.dumps({"who": ana}).encode())
    await store.put_record("session", "s2", json.dumps({"who": ben}).encode())
    await store.put_record("sealed", "x", b"\x00\xff binary, naming nobody")
    await store.forget(ana, START)
    kept = {(r.kind, r.key): r.value for kind in ("audit", "session", "sealed")
            for r in await store.records_of(kind, START)}  # fmt: skip
    assert not any(ana.encode() in value for value in kept.values())
    assert json.loads(kept[("audit", "20261205T1")]) == {
        "who": "forgotten",
        "what": "gathering_opened",
        "detail": "QX7P2K supper",
    }
    assert json.loads(kept[("audit", "20261205T2")])["detail"] == "facilitator forgotten"
    assert json.loads(kept[("session", "s1")]) == {"who": "forgotten"}
    assert json.loads(kept[("session", "s2")]) == {"who": ben}
    assert kept[("sealed", "x")] == b"\x00\xff binary, naming nobody"


async def test_old_free_text_is_blanked_and_the_rest_kept(store: Storage) -> None:
    old, new = START - timedelta(days=40), START
    state = '{"step": null, "answers": {"story": "an old hope", "sector": "care"}, "x": 1}'
    await store.commit(
        Commit(
            runs=[
                RunRow("r1", "p1", "pulse", 1, "h", "finished", state, old, old),
                RunRow(
                    "r2",
                    "p2",
                    "pulse",
                    1,
                    "h",
                    "active",
                    '{"answers": {"story": "a new hope"}}',
                    new,
                    new,
                ),
            ],
            answers=[
                AnswerRow("r1", "story", "p1", "pulse", 1, "ask", '"an old hope"', old),
                AnswerRow("r1", "skipped", "p1", "pulse", 1, "ask", "null", old),
                AnswerRow("r1", "sector", "p1", "pulse", 1, "choose", '"care"', old),
                AnswerRow("r2", "story", "p2", "pulse", 1, "ask", '"a new hope"', new),
                AnswerRow("r3", "story", "p3", "pulse", 1, "ask", '"not in its state"', old),
            ],
        )
    )
    # A state that keeps no copy of an answer is left as it is (nothing added to it).
    bare_state = RunRow("r3", "p3", "pulse", 1, "h", "finished", '{"answers": {}}', old, old)
    await store.commit(Commit(runs=[bare_state]))
    cutoff = START - timedelta(days=30)
    assert await store.expire_texts(["ask"], cutoff) == 2
    assert [a.value for a in await store.answers("r1")] == ['"care"', "null", '""']
    assert [a.value for a in await store.answers("r2")] == ['"a new hope"']
    # The copy a run's state keeps is blanked too; the rest of the state is as it was.
    kept = await store.run("r1")
    assert kept is not None and json.loads(kept.state) == {
        "step": None,
        "answers": {"story": "", "sector": "care"},
        "x": 1,
    }
    newer = await store.run("r2")
    assert newer is not None and "a new hope" in newer.state
    bare = await store.run("r3")
    assert bare is not None and json.loads(bare.state) == {"answers": {}}
    assert await store.expire_texts(["ask"], cutoff) == 0  # nothing left to blank
    assert await store.expire_texts([], cutoff) == 0


async def test_forgetting_a_facilitator_closes_their_gatherings_and_drops_their_addresses(
    store: Storage,
):
    """A gathering stays (others answered in it), but nothing in it reaches its erased
    facilitator any more, and nobody can go on joining it."""
    in_their_chat = GatheringRow(
        "g1", "K7M2QP", "pulse", "Night shift", "fay", "telegram", b"sealed-fay",
        b"sealed-fay-private", False, 0, "open", START, START + timedelta(days=1), place="fay",
    )  # fmt: skip
    in_a_room = GatheringRow(
        "g2", "R00M42", "pulse", "Union hall", "fay", "telegram", b"sealed-room",
        b"sealed-fay-private", False, 0, "open", START, START + timedelta(days=1), place="room",
    )  # fmt: skip
    assert await store.commit(Commit(gathering=in_their_chat))
    assert await store.commit(Commit(gathering=in_a_room))
    await store.forget("fay", START + timedelta(hours=1))
    mine = await store.gathering("g1")
    room = await store.gathering("g2")
    assert mine is not None and room is not None
    for gathering in (mine, room):
        assert gathering.status == "closed"
        assert gathering.facilitator == "forgotten"
        assert gathering.private_address == b""
    assert mine.address == b"" and mine.place == "forgotten"
    assert room.address == b"sealed-room"  # the room is not theirs: others may be there


async def test_a_turn_that_read_someone_erased_since_writes_nothing(store: Storage) -> None:
    """A turn reads the person, then commits; an operator's `kitchen-table forget` (its
    own process, no conversation lock) may erase them in between. The commit then
    writes nothing, alone or among others, plain or not, rather than bring them back."""
    import asyncio

    from storage.rows import OutboxRow

    for who in ("ana", "ben", "cy"):
        await store.commit(someones(who, f"r-{who}", "first words"))
    await store.forget("ana", START + timedelta(hours=1))
    await store.forget("cy", START + timedelta(hours=1))

    def turn(who: str, n: int, **more: object) -> Commit:
        run = RunRow(f"t-{who}", who, "pulse", 2, "h1", "active", "{}", START, START)
        return Commit(
            inbound_key=f"{who}-{n}",
            participant=ParticipantRow(who, "terminal", b"sealed"),
            runs=[run],
            answers=[AnswerRow(run.id, "story", who, "pulse", 2, "ask", '"said late"', START)],
            outbox=[OutboxRow("terminal", who, b"sealed", '{"text": "thanks"}', START)],
            still_kept=who,
            **more,  # type: ignore[arg-type]
        )

    alone = await store.commit(turn("ana", 1))
    together = await asyncio.gather(*(store.commit(turn(w, 2)) for w in ("ben", "ana", "cy")))
    not_plain = await store.commit(turn("cy", 3, preference=PreferenceRow("cy", "Europe/Madrid")))
    assert (alone, together, not_plain) == (False, [True, False, False], False)
    for who in ("ana", "cy"):
        assert await store.participant(who) is None
        assert not await store.mine(who)
        assert not await store.inbound_seen(f"{who}-1") and not await store.inbound_seen(f"{who}-2")
    assert await store.participant("ben") is not None
    assert [a.value for a in (await store.mine("ben")).answers] == ['"care"', '"first words"',
                                                                    '"said late"']  # fmt: skip
    owed = await store.claim_due("terminal", START + timedelta(days=1), 100)
    assert [row.participant for row in owed] == ["ben"]
    # Someone who comes back after being forgotten is read afresh, with no row: written.
    assert await store.commit(dataclasses.replace(turn("ana", 4), still_kept=None))
    assert await store.participant("ana") is not None
