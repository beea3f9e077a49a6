"""Facilitated gatherings through the dispatcher, as the terminal channel sees them:
roles, launch, join, paced rounds, status, close with a summary, and every refusal."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.features.roles import RoleHolder
from bot.messages import Outbound
from storage.rows import Commit
from tests.conftest import Harness

GUIDE = """
guide: supper
version: 1
title: Tuesday supper
consent: We keep your answers without your name.
steps:
  - id: sector
    choose: What do you do?
    options: [Retail, Health care, Other]
  - id: worry
    scale: How worried are you?
    labels: {1: Not at all, 5: Very}
  - id: hours
    number: Hours last week?
    range: [0, 100]
  - id: helps
    choose_many: What would help?
    options: [Training, A union, Better pay]
  - id: story
    ask: Tell us one thing.
    quotable: true
  - id: secret
    ask: Anything you would rather keep between us?
    sensitive: true
    optional: true
"""
PEOPLE = [f"p{n}" for n in range(7)]


def answers_for(n: int) -> list[str]:
    return ["yes", str(1 + n % 3), str(1 + n % 5), str(30 + n), "1, 3",
            f"Story <b>{n}</b> from the line", f"private-{n}"]  # fmt: skip


@pytest.fixture
async def room(make_harness) -> Harness:  # type: ignore[no-untyped-def]
    h: Harness = make_harness(GUIDE)
    h.house.roles.admins.add(h.pseudonym("admin"))
    code = await h.house.roles.invite("facilitator", timedelta(days=7))
    replies = await h.say(f"/redeem {code}", user="host")
    assert "now a facilitator" in replies[0].text
    return h


async def launch(h: Harness, arg: str = "supper Tuesday supper") -> str:
    replies = await h.say(f"/launch {arg}", user="host")
    match = re.search(r"Join code: ([A-Z0-9]{6})", replies[-1].text)
    assert match, replies[-1].text
    return match.group(1)


def text_of(message: Outbound) -> str:
    return message.markup["text"] if message.markup else message.text


async def test_seven_people_from_launch_to_a_shared_summary(room: Harness):
    h = room
    code = await launch(h)
    for n, person in enumerate(PEOPLE):
        joined = await h.say(f"/join {code}", user=person)
        assert "Is that all right" in joined[-1].text
        for answer in answers_for(n):
            await h.say(answer, user=person)
    status = (await h.say("/status", user="host"))[-1]
    assert "Joined 7" in text_of(status) and "finished 7" in text_of(status)
    assert status.buttons[0].label == "Refresh"
    replies = await h.say("/close --share", user="host")
    summaries = [m for m in replies if m.markup]
    assert len(summaries) == 1  # launched in a private chat: the room is the host's chat
    summary = text_of(summaries[0])
    assert "7 took part and 7 finished" in summary
    assert "fewer than 5 · Retail" in summary  # three said so: too few to count
    assert "fewer than 5 · Health care" in summary
    # Hours 30..36 and worry 1..5, one person each: no exact answer, no middle value
    # that is one person's (33 was p3's), and a sentence saying why.
    hours = summary.split("Hours last week?")[1].split("What would help?")[0]
    assert "split their answers into ranges" in hours
    assert not re.search(r"3[0-6]", hours) and "Middle value" not in summary
    assert re.search(r"7 · Training", summary) and re.search(r"0 · A union", summary)
    themed, below = summary.split("In their own words")
    quoted, quotes = re.findall(r"“(.*)”", themed), re.findall(r"“(.*)”", below)
    # Each of the seven stories once: three under their theme, the other four below.
    assert len(quoted) == 3 and len(quotes) == 4
    assert sorted(quoted + quotes) == sorted(f"Story <b>{n}</b> from the line" for n in range(7))
    # It knows whose words it quotes, so that it is withdrawn if one of them is
    # forgotten before it goes (never shown).
    assert summaries[0].quoting == sorted(h.pseudonym(person) for person in PEOPLE)
    assert not any(h.pseudonym(person) in summary for person in PEOPLE)
    assert "private-" not in summary and "rather keep" not in summary  # sensitive: never
    # Participant text is escaped for each target, never read as markup.
    assert "Story &lt;b&gt;" in summaries[0].markup["html"]  # type: ignore[index]
    assert "<b>Story" not in summaries[0].markup["html"]  # type: ignore[index]
    assert "Story &lt;b&gt;" in summaries[0].markup["mrkdwn"]  # type: ignore[index]


async def test_late_answers_after_close_are_refused_politely(room: Harness):
    h = room
    code = await launch(h)
    await h.say(f"/join {code}", user="late")
    await h.say("yes", user="late")
    await h.say("/close", user="host")
    refused = await h.say("1", user="late")
    assert "has closed" in refused[0].text
    late = await h.storage.participant(h.pseudonym("late"))
    assert late is not None and late.current_run is not None
    assert await h.storage.answers(late.current_run) == []
    rejoin = await h.say(f"/join {code}", user="someone-else")
    assert "has closed" in rejoin[0].text


async def test_paced_rooms_move_together_with_next(room: Harness):
    h = room
    code = await launch(h, "supper --paced")
    people = PEOPLE[:5]
    for person in people:
        await h.say(f"/join {code}", user=person)
        await h.say("yes", user=person)
        waiting = await h.say("1", user=person)
        assert "wait for the group" in waiting[-1].text
    early = await h.say("3", user=people[0])
    assert "waiting for the group" in early[-1].text
    await h.say("/next", user="host")
    assert "Question 2 of 6 is now open" in h.channel.texts("host")[-1]
    for person in people:
        asked = [m.text for a, m in h.channel.sent if a == person]
        assert asked[-1].endswith("How worried are you?")
    assert "Questions open to everyone: 2" in text_of((await h.say("/status", user="host"))[-1])


async def next_left_part_way(h: Harness) -> None:
    """`/next` by the host, its process stopping right after the commit: the opening is
    written down and nobody has been handed the question."""
    gatherings = h.house.gatherings
    opening = gatherings._open_for_everyone

    async def stopped(gathering_id: str, part: int) -> bool:
        return False

    gatherings._open_for_everyone = stopped  # type: ignore[method-assign]
    try:
        await h.say("/next", user="host")
    finally:
        gatherings._open_for_everyone = opening  # type: ignore[method-assign]


async def waiting_room(h: Harness, people: list[str]) -> None:
    """A paced room launched, these people in it, each waiting after question 1."""
    code = await launch(h, "supper --paced")
    for person in people:
        for text in (f"/join {code}", "yes", "1"):
            await h.say(text, user=person)


def asked(h: Harness, person: str) -> int:
    """How many times `person` was asked question 2."""
    return sum(m.text.endswith("How worried are you?") for a, m in h.channel.sent if a == person)


async def test_an_opening_a_stopped_process_left_part_way_is_finished_by_the_next_tick(
    room: Harness,
):
    """/next is committed with a record of the opening; if the process stops before
    everyone has the question, a scheduler's tick (any instance's) gives it to the rest,
    once, after the opener's minute of grace."""
    from bot.features.gatherings import OPENING
    from bot.scheduling.scheduler import Scheduler

    h = room
    people = PEOPLE[:3]
    await waiting_room(h, people)
    await next_left_part_way(h)
    gatherings = h.house.gatherings

    assert [asked(h, p) for p in people] == [0, 0, 0]
    assert len(await h.storage.records_of(OPENING, h.clock())) == 1
    tick = Scheduler(h.storage, h.dispatcher, h.library, h.clock,
                     chores=[gatherings.open_left_over]).tick  # fmt: skip
    await tick()  # within the grace: its own process may be at it
    await h.deliverer.drain("terminal")
    assert [asked(h, p) for p in people] == [0, 0, 0]
    h.clock.advance(minutes=2)
    for _ in range(2):
        await tick()
        await h.dispatcher.settle()
        await h.deliverer.drain("terminal")
    assert [asked(h, p) for p in people] == [1, 1, 1]
    assert await h.storage.records_of(OPENING, h.clock()) == []
    # An opening that went as it should leaves no record behind.
    await h.say("2", user=people[0])
    await h.say("/next", user="host")
    assert await h.storage.records_of(OPENING, h.clock()) == []
    # One left over in a room closed since is crossed off, and opens nothing (even to
    # someone waiting for it).
    assert "wait for the group" in (await h.say("30", user=people[0]))[-1].text
    await next_left_part_way(h)
    await h.say("/close", user="host")
    h.clock.advance(minutes=2)
    before = len(h.channel.sent)
    await tick()
    await h.dispatcher.settle()
    await h.deliverer.drain("terminal")
    assert h.channel.sent[before:] == []
    assert await h.storage.records_of(OPENING, h.clock()) == []


async def test_a_room_closed_while_its_next_question_goes_round_is_not_asked_it(
    room: Harness,
):
    """`/next` hands the question to each person in turn, after its commit; a `/close`
    that comes meanwhile stops the rest from being asked it."""
    from bot.features.gatherings import OPENING

    h = room
    people = PEOPLE[:3]
    await waiting_room(h, people)
    await next_left_part_way(h)  # committed; nobody handed the question yet
    (opening,) = await h.storage.records_of(OPENING, h.clock())
    gathering_id, _, part = opening.key.rpartition(":")
    await h.say("/close", user="host")
    before = len(h.channel.sent)
    # The round /next began goes on after the close, as it would in its own process.
    await h.house.gatherings._open_for_everyone(gathering_id, int(part))
    await h.dispatcher.settle()
    await h.deliverer.drain("terminal")
    assert [asked(h, p) for p in people] == [0, 0, 0]
    assert h.channel.sent[before:] == []


async def test_an_opening_that_failed_for_someone_is_taken_up_again_by_one_tick(
    room: Harness,
):
    """Left over, and then failing for one person: the others have it, the record stays,
    and a later tick (one at a time, each claim leased) gives it to the one left; those
    who had it already are not touched again (their runs do not even move in time)."""
    from bot.features.gatherings import OPENING
    from bot.scheduling.scheduler import Scheduler

    h = room
    people = PEOPLE[:3]
    await waiting_room(h, people)
    await next_left_part_way(h)
    gatherings = h.house.gatherings
    nudge = gatherings.nudge
    troubled = h.pseudonym(people[1])

    async def flaky(participant: str, run_id: str, given: object) -> None:
        if participant == troubled:
            raise ConnectionError("the database went away for a moment")
        await nudge(participant, run_id, given)  # type: ignore[arg-type]

    gatherings.nudge = flaky  # type: ignore[assignment]
    ticks = [Scheduler(h.storage, h.dispatcher, h.library, h.clock,
                       chores=[gatherings.open_left_over]).tick for _ in range(2)]  # fmt: skip

    async def tick(n: int) -> None:
        await ticks[n]()
        await h.dispatcher.settle()
        await h.deliverer.drain("terminal")

    h.clock.advance(minutes=2)
    await tick(0)
    assert [asked(h, p) for p in people] == [1, 0, 1]
    assert len(await h.storage.records_of(OPENING, h.clock())) == 1
    gatherings.nudge = nudge  # type: ignore[assignment]
    await tick(1)  # another instance, while the first one's claim holds
    assert [asked(h, p) for p in people] == [1, 0, 1]
    first = await h.storage.run((await h.storage.participant(h.pseudonym(people[0]))).current_run)  # type: ignore[union-attr,arg-type]
    h.clock.advance(minutes=1, seconds=1)
    await tick(1)
    assert [asked(h, p) for p in people] == [1, 1, 1]
    assert await h.storage.records_of(OPENING, h.clock()) == []
    again = await h.storage.run(first.id)  # type: ignore[union-attr]
    assert again is not None and again.updated_at == first.updated_at  # type: ignore[union-attr]


async def test_figures_from_fewer_than_five_people_are_left_out(room: Harness):
    h = room
    code = await launch(h)
    for n, person in enumerate(PEOPLE[:3]):
        await h.say(f"/join {code}", user=person)
        for answer in answers_for(n):
            await h.say(answer, user=person)
    summary = text_of(next(m for m in await h.say("/close", user="host") if m.markup))
    assert "Fewer than 5 people took part" in summary
    assert "Retail" not in summary and "Story" not in summary and "3 took part" not in summary


async def test_a_question_answered_by_too_few_is_left_out_with_a_note(room: Harness):
    h = room
    code = await launch(h)
    for n, person in enumerate(PEOPLE[:6]):
        await h.say(f"/join {code}", user=person)
        for answer in answers_for(n)[:3]:  # sector and worry
            await h.say(answer, user=person)
        if n < 4:
            await h.say("/stop", user=person)  # only two go on to the hours question
        else:
            for answer in answers_for(n)[3:]:
                await h.say(answer, user=person)
    summary = text_of(next(m for m in await h.say("/close", user="host") if m.markup))
    assert "6 took part and fewer than 5 finished." in summary  # two did: not a figure
    assert "fewer than 5 · Health care" in summary  # six answered; two chose this
    hours = summary.split("Hours last week?")[1]
    assert hours.lstrip().startswith("Fewer than 5 people answered this")
    assert "Fewer than 5 people answered the open questions" in summary  # no quotes


async def test_a_summary_with_every_figure_suppressed_says_why(room: Harness):
    h = room
    code = await launch(h)
    for person in PEOPLE[:5]:  # five took part, but each stopped before the first question
        await h.say(f"/join {code}", user=person)
        await h.say("yes", user=person)
        await h.say("/stop", user=person)
    summary = text_of(next(m for m in await h.say("/close", user="host") if m.markup))
    assert "5 took part and 0 finished" in summary
    assert "Every question was answered by fewer than 5 people, so no answers are shown" in summary
    assert "What do you do?" not in summary and "answered this, so" not in summary


async def test_every_refusal_is_a_clear_message(room: Harness):
    h = room
    assert "Only facilitators" in (await h.say("/launch supper", user="p1"))[0].text
    assert "didn't work" in (await h.say("/redeem NOTACODE", user="p1"))[0].text
    assert "/status and the gathering's code" in (await h.say("/status", user="host"))[0].text
    assert "couldn't find" in (await h.say("/status QQQQQQ", user="host"))[0].text
    assert "/join and the code" in (await h.say("/join", user="p1"))[0].text
    assert "/redeem and the code" in (await h.say("/redeem", user="p1"))[0].text
    code = await launch(h)
    other = await h.house.roles.invite("facilitator", timedelta(days=1))
    await h.say(f"/redeem {other}", user="other-host")
    assert "didn't work" in (await h.say(f"/redeem {other}", user="p2"))[0].text  # used
    for command in (f"/close {code}", f"/status {code}", f"/next {code}"):
        refused = await h.say(command, user="other-host")
        assert "Only the facilitator who launched" in refused[0].text, command
    assert "Summaries are for coordinators" in (await h.say(f"/summary {code}", user="p1"))[0].text
    # Not even its facilitator reads a summary while people are still joining.
    assert "Summaries are for" in (await h.say(f"/summary {code}", user="host"))[0].text
    assert "own pace" in (await h.say("/next", user="host"))[0].text
    assert "Tell us one thing" not in " ".join(h.channel.texts("p1"))  # saw nobody's answers
    coordinator = await h.house.roles.invite("coordinator", timedelta(days=1))
    await h.say(f"/redeem {coordinator}", user="coord")
    assert (await h.say(f"/summary {code}", user="coord"))[0].markup is not None
    # An admin may act on anyone's gathering.
    closed_by_admin = await h.say(f"/close {code}", user="admin")
    assert "Fewer than 5 people took part" in closed_by_admin[-1].text
    assert (await h.storage.gathering_by_code(code)).status == "closed"  # type: ignore[union-attr]
    assert "for example: /launch" in (await h.say("/launch", user="host"))[0].text


async def test_an_expired_join_code_is_refused(room: Harness):
    h = room
    code = await launch(h)
    h.clock.advance(days=8)
    refused = await h.say(f"/join {code}", user="p1")
    assert "has closed" in refused[0].text
    assert "didn't work" in (await h.say("/join ZZZZZZ", user="p1"))[0].text
    assert await h.storage.participant(h.pseudonym("p1")) is None  # nothing kept


async def test_join_codes_are_forgiving_about_case_and_spaces(room: Harness):
    h = room
    code = await launch(h)
    joined = await h.say(f"/join {code[:3].lower()} {code[3:].lower()}", user="p1")
    assert "Is that all right" in joined[-1].text


async def test_a_revoked_facilitator_can_no_longer_launch(room: Harness):
    h = room
    holders = await h.house.roles.holders()
    assert holders == [RoleHolder(h.pseudonym("host"), "facilitator")]
    assert await h.house.roles.revoke(h.pseudonym("host")[:8]) == [h.pseudonym("host")]
    assert "Only facilitators" in (await h.say("/launch supper", user="host"))[0].text


async def test_invites_open_by_deep_link_and_expire(room: Harness):
    h = room
    code = await h.house.roles.invite("coordinator", timedelta(days=1))
    h.clock.advance(days=2)
    assert "didn't work" in (await h.say(f"/start redeem-{code}", user="c1"))[0].text
    fresh = await h.house.roles.invite("coordinator", timedelta(days=1))
    assert "now a coordinator" in (await h.say(f"/start redeem-{fresh}", user="c1"))[0].text


async def test_a_paced_run_that_missed_the_nudge_catches_up_and_closed_means_closed(room: Harness):
    h = room
    code = await launch(h, "supper --paced")
    await h.say(f"/join {code}", user="p1")
    await h.say("yes", user="p1")
    waiting = await h.say("1", user="p1")
    assert "wait for the group" in waiting[-1].text
    # The host opens two questions while p1's run doesn't hear of it (another guide open).
    await h.storage.commit(Commit(gathering_part=(await gathering_id(h, code), 3)))
    caught_up = await h.say("anything", user="p1")
    assert caught_up[-1].text.endswith("How worried are you?")  # no longer stuck waiting
    await h.say("4", user="p1")
    # After close, answers and going back are refused; leaving still works.
    await h.say("/close", user="host")
    for late in ("30", "/back", "/skip"):
        assert "has closed" in (await h.say(late, user="p1"))[0].text
    answers = await h.storage.answers((await h.storage.participant(h.pseudonym("p1"))).current_run)  # type: ignore[union-attr,arg-type]
    assert [a.step for a in answers] == ["sector", "worry"]


async def test_one_voice_each(room: Harness):
    h = room
    code = await launch(h)
    await h.say(f"/join {code}", user="p1")
    for answer in answers_for(1):
        await h.say(answer, user="p1")
    again = await h.say(f"/join {code}", user="p1")
    assert "already taken part" in again[0].text
    assert len(await h.storage.gathering_runs(await gathering_id(h, code))) == 1


async def gathering_id(h: Harness, code: str) -> str:
    found = await h.storage.gathering_by_code(code)
    assert found is not None
    return found.id


async def test_after_a_close_the_guide_starts_afresh_instead_of_the_closed_run(room: Harness):
    """Someone who had not finished when the gathering closed can still take the guide on
    their own: /start begins a new run, never the closed gathering's again and again."""
    h = room
    code = await launch(h)
    await h.say(f"/join {code}", user="ana")
    await h.say("yes", user="ana")
    await h.say("1", user="ana")
    await h.say("/close", user="host")
    again = await h.say("/start supper", user="ana")
    assert "Is that all right" in again[-1].text  # a new run asks for consent first
    assert not any("has closed" in m.text for m in again)
    await h.say("yes", user="ana")
    answered = await h.say("2", user="ana")
    assert "How worried" in answered[-1].text
    person = await h.storage.participant(h.pseudonym("ana"))
    assert person is not None and person.current_run is not None
    run = await h.storage.run(person.current_run)
    assert run is not None and run.gathering is None  # on their own, not in the room


async def test_help_shows_a_facilitator_their_own_commands_too(room: Harness):
    h = room
    helped = [m.text for m in await h.say("/help", user="host")]
    assert len(helped) == 2 and "/mydata" in helped[0]
    assert helped[1].startswith("As a facilitator, you can also use:")
    assert "/launch opens a gathering" in helped[1] and "/close closes" in helped[1]
    others = [m.text for m in await h.say("/help", user="p1")]
    assert len(others) == 1 and "/launch" not in others[0]


async def test_a_guide_for_facilitators_is_offered_to_them_only(make_harness):  # type: ignore[no-untyped-def]
    """`audience: facilitators`: a host's report after a gathering is not on everyone's
    menu (a worker saw "After the gathering" among their guides), yet starts by name."""
    report = GUIDE.replace("guide: supper", "guide: host-report").replace(
        "title: ", "audience: facilitators\ntitle: Host report · ", 1
    )
    h: Harness = make_harness(GUIDE, report)
    h.house.roles.admins.add(h.pseudonym("admin"))
    code = await h.house.roles.invite("facilitator", timedelta(days=7))
    await h.say(f"/redeem {code}", user="host")
    worker = [b.label for m in await h.say("/guides", user="p1") for b in m.buttons]
    host = [b.label for m in await h.say("/guides", user="host") for b in m.buttons]
    assert not any("Host report" in label for label in worker) and worker
    assert any("Host report" in label for label in host) and len(host) == len(worker) + 1
    started = await h.say("/start host-report", user="p1")
    assert "Is that all right" in started[-1].text
