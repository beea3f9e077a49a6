"""The storage protocol's cohorts, schedules, occurrences and deliveries
(`ScheduleStore`), run against every backend like the rest of the suite."""

from __future__ import annotations

from datetime import timedelta

from storage.protocol import Storage
from storage.rows import (
    CohortRow,
    Commit,
    DeliveryRow,
    MemberRow,
    OccurrenceRow,
    ParticipantRow,
    PreferenceRow,
    RunRow,
    ScheduleRow,
)
from tests.conftest import START

LEASE = timedelta(minutes=10)


def weekly(schedule_id: str = "s1", created: int = 0) -> ScheduleRow:
    at = START + timedelta(minutes=created)
    return ScheduleRow(schedule_id, "pulse", "weekly", "0 9 * * MON", "UTC", False, at, at)


async def test_cohorts_are_found_by_name_and_code_and_kept_once(store: Storage) -> None:
    await store.save_cohort("weekly", "WEEKLY1", START)
    await store.save_cohort("riverside", "RIVER22", START)
    await store.save_cohort("weekly", "OTHER99", START)  # already there: kept as it was
    assert await store.cohort("weekly") == CohortRow("weekly", "WEEKLY1")
    assert await store.cohort("nowhere") is None
    assert await store.cohorts() == [
        CohortRow("riverside", "RIVER22"),
        CohortRow("weekly", "WEEKLY1"),
    ]
    assert await store.cohort_by_code("RIVER22") == "riverside"
    assert await store.cohort_by_code("OTHER99") is None


async def test_members_with_their_settings_and_whether_they_can_be_reached(
    store: Storage,
) -> None:
    for name in ("weekly", "riverside"):
        await store.save_cohort(name, name.upper(), START)
    paused = START + timedelta(days=14)
    await store.commit(
        Commit(
            participant=ParticipantRow("p1", "terminal", b"s"),
            joined=[("weekly", "p1"), ("riverside", "p1")],
            preference=PreferenceRow("p1", "America/Chicago", paused),
        )
    )
    await store.commit(Commit(participant=ParticipantRow("p2", "terminal", b"s")))
    await store.commit(Commit(joined=[("weekly", "p2"), ("weekly", "p3")]))  # p3: no person row
    await store.mark_unreachable("p2")
    assert await store.members("weekly") == [
        MemberRow("p1", "America/Chicago", paused, False),
        MemberRow("p2", None, None, True),
        MemberRow("p3", None, None, True),  # nobody to reach
    ]
    assert await store.cohorts_of("p1") == ["riverside", "weekly"]
    await store.commit(Commit(left=[("weekly", "p1")]))
    assert await store.cohorts_of("p1") == ["riverside"]
    assert [m.participant for m in await store.members("weekly")] == ["p2", "p3"]
    assert await store.cohorts_of("nobody") == []


async def test_schedules_are_saved_paused_advanced_and_removed(store: Storage) -> None:
    first, second = weekly("s1", created=1), weekly("s2", created=0)
    await store.save_schedule(first)
    await store.save_schedule(second)
    assert await store.schedules() == [second, first]  # in the order they were made
    later = START + timedelta(days=7)
    await store.advance_schedule("s1", later)
    await store.advance_schedule("s1", START)  # never moves back
    [_, s1] = await store.schedules()
    assert s1.checked_until == later
    paused = ScheduleRow(**{**s1.__dict__, "paused": True})
    await store.commit(Commit(schedule=paused))  # paused from chat, in a turn's commit
    assert (await store.schedules())[1] == paused
    assert await store.remove_schedule("s1")
    assert not await store.remove_schedule("s1")
    assert await store.schedules() == [second]


async def test_an_occurrence_is_claimed_once_taken_over_after_its_lease_and_finished(
    store: Storage,
) -> None:
    due = START
    assert await store.claim_occurrence("s1", "UTC", due, START, LEASE) == "claimed"
    assert await store.claim_occurrence("s1", "UTC", due, START, LEASE) == "held"
    # The same time in another zone is an occurrence of its own.
    assert await store.claim_occurrence("s1", "Europe/Madrid", due, START, LEASE) == "claimed"
    # The first claimant crashed: past its lease, another takes it over.
    past_lease = START + LEASE + timedelta(seconds=1)
    assert await store.claim_occurrence("s1", "UTC", due, past_lease, LEASE) == "claimed"
    await store.finish_occurrence("s1", "UTC", due, "sent")
    assert await store.claim_occurrence("s1", "UTC", due, past_lease, LEASE) == "done"
    await store.finish_occurrence("s1", "Europe/Madrid", due, "missed")
    missed = START + timedelta(days=7)
    assert await store.claim_occurrence("s1", "UTC", missed, START, LEASE) == "claimed"
    assert await store.occurrences("s1") == [
        OccurrenceRow("Europe/Madrid", due, "missed"),
        OccurrenceRow("UTC", due, "sent"),
        OccurrenceRow("UTC", missed, "claimed"),
    ]
    assert await store.occurrences("other") == []


async def test_reminders_are_due_for_prompts_still_under_way(store: Storage) -> None:
    def prompt(n: int, status: str, hours_ago: int) -> Commit:
        at = START - timedelta(hours=hours_ago)
        run = RunRow(f"r{n}", f"p{n}", "pulse", 1, "h1", status, "{}", at, at)
        return Commit(runs=[run], delivery=DeliveryRow(f"d{n}", "s1", f"p{n}", f"r{n}", at))

    for commit in (prompt(1, "active", 30), prompt(2, "finished", 30), prompt(3, "consent", 2),
                   prompt(4, "consent", 48)):  # fmt: skip
        await store.commit(commit)
    cutoff = START - timedelta(hours=24)
    assert [d.key for d in await store.due_reminders(cutoff, 1)] == ["d4", "d1"]
    await store.commit(Commit(reminded="d1"))  # its reminder sent, in that turn's commit
    due = await store.due_reminders(cutoff, 1)
    assert [d.key for d in due] == ["d4"] and due[0].reminders == 0
    [d1] = [d for d in await store.deliveries("s1") if d.key == "d1"]
    assert d1.reminders == 1
    assert [d.key for d in await store.due_reminders(cutoff, 2)] == ["d4", "d1"]
