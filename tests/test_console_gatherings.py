"""The Gatherings pages, in process on the run's storage backend and a fake clock: a
facilitator opens a gathering in the console and people join it in chat by its code; its
page shows who joined and where they are (and the live fragment the script fetches);
Next opens the next question to everyone in a paced one; Close (asked first) stops the
code and shows the summary. A facilitator is refused another's gathering (403) and a
coordinator sees it but may not pace or close it; a POST without the CSRF token changes
nothing; each change is in the audit log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from storage.protocol import Storage
from storage.rows import GatheringRow
from tests.conftest import FakeClock
from tests.console_world import World, open_world, text_of


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    yield opened
    await opened.close()


async def facilitator(world: World, user: str = "fran") -> str:
    await world.grant(user, "facilitator")
    return await world.sign_in(user)


async def post(world: World, path: str, csrf: str | None, **fields: str):  # type: ignore[no-untyped-def]
    data = {**fields, **({"csrf": csrf} if csrf is not None else {})}
    return await world.client.post(f"/console{path}", data=data, allow_redirects=False)


async def launch(world: World, csrf: str, paced: bool = False, title: str = "") -> GatheringRow:
    fields = {"guide": "changing-work", "title": title, **({"paced": "yes"} if paced else {})}
    answer = await post(world, "/gatherings", csrf, **fields)
    assert answer.status == 303, await answer.text()
    gathering_id = answer.headers["Location"].split("/gatherings/")[1].split("?")[0]
    found = await world.storage.gathering(gathering_id)
    assert found is not None
    return found


async def audited(world: World) -> list[tuple[str, str]]:
    return [(e.what, e.detail) for e in await world.services.audit_log.newest()]


async def test_a_gathering_opened_in_the_console_is_joined_in_chat_and_shows_who_is_where(
    world: World,
):
    csrf = await facilitator(world)
    gathering = await launch(world, csrf, title="Thursday <b>table</b>")
    assert gathering.status == "open" and not gathering.paced
    assert gathering.place == gathering.facilitator == world.pseudonym("fran")
    page = await (await world.client.get(f"/console/gatherings/{gathering.id}?done=opened")).text()
    assert "Thursday &lt;b&gt;table&lt;/b&gt;" in page  # a typed title is escaped
    assert f"<code>{gathering.code}</code>" in page
    assert f"https://t.me/KitchenTableBot?start=join-{gathering.code}" in page
    assert "The gathering is open." in text_of(page)
    assert "Joined 0" in text_of(page)
    assert 'src="/console/static/gathering-live.js"' in page
    assert (("gathering_opened", f"{gathering.code} changing-work")) in await audited(world)

    for person in ("ana", "ben", "cai"):
        said = await world.say(f"/join {gathering.code}", person)
        assert any("Is that all right" in m.text for m in said), [m.text for m in said]
    await world.say("yes", "ana")  # past the consent, at the first question
    live = await world.client.get(f"/console/gatherings/{gathering.id}/live")
    words = text_of(await live.text())
    assert live.status == 200 and "<html" not in await live.text()
    assert "Joined 3" in words and "Answering 3" in words and "Finished 0" in words
    assert "Deciding whether to take part 2" in words
    assert re.search(r"\b1\. [^0-9]+ 1\b", words), words  # ana, at question 1

    listing = text_of(await (await world.client.get("/console/gatherings")).text())
    assert "Thursday <b>table</b>" in listing and gathering.code in listing
    # The overview's live gathering opens its own page.
    overview = await (await world.client.get("/console/")).text()
    assert f'href="/console/gatherings/{gathering.id}">Thursday &lt;b&gt;table' in overview


async def test_the_qr_code_and_the_projector_view(world: World):
    csrf = await facilitator(world)
    gathering = await launch(world, csrf)
    qr = await world.client.get(f"/console/gatherings/{gathering.id}/qr.svg")
    assert qr.status == 200 and qr.content_type == "image/svg+xml"
    assert (await qr.text()).startswith("<svg")
    big = await (await world.client.get(f"/console/gatherings/{gathering.id}/join")).text()
    assert f"<code>{gathering.code}</code>" in big and "qr.svg" in big
    assert f"/join {gathering.code}" in text_of(big)


async def test_next_opens_the_next_question_for_everyone_in_a_paced_gathering(world: World):
    csrf = await facilitator(world)
    gathering = await launch(world, csrf, paced=True)
    assert gathering.paced and gathering.part == 1
    for person in ("ana", "ben"):
        await world.say(f"/join {gathering.code}", person)
        await world.say("yes", person)
        await world.say("1", person)  # the first question answered: they wait for the next
    assert not any("how many years" in t for t in world.channel.texts("ana"))
    moved = await post(world, f"/gatherings/{gathering.id}/next", csrf)
    assert moved.status == 303 and "done=next" in moved.headers["Location"]
    await world.deliverer.drain("terminal")
    for person in ("ana", "ben"):  # the next question reached each of them
        assert any("how many years" in t for t in world.channel.texts(person)), person
    now = await world.storage.gathering(gathering.id)
    assert now is not None and now.part == 2
    page = text_of(await (await world.client.get(moved.headers["Location"])).text())
    assert "The next question is open for everyone." in page
    assert "Questions open to everyone: 2 of" in page
    assert (("gathering_next", f"{gathering.code} 2/14")) in await audited(world)

    unpaced = await launch(world, csrf)
    refused = await post(world, f"/gatherings/{unpaced.id}/next", csrf)
    assert "done=not_paced" in refused.headers["Location"]


async def test_close_asks_first_then_stops_the_code_and_shows_the_summary(world: World):
    csrf = await facilitator(world)
    gathering = await launch(world, csrf, title="Supper")
    await world.say(f"/join {gathering.code}", "ana")
    ask = await world.client.get(f"/console/gatherings/{gathering.id}/close")
    assert "Close this gathering?" in text_of(await ask.text())
    early = await world.client.get(f"/console/gatherings/{gathering.id}/summary")
    assert early.status == 403  # its facilitator reads it once it has closed, as in chat
    closed = await post(world, f"/gatherings/{gathering.id}/close", csrf)
    assert closed.status == 303
    assert closed.headers["Location"] == f"/console/gatherings/{gathering.id}/summary"
    summary = await (await world.client.get(closed.headers["Location"])).text()
    words = text_of(summary)
    assert "Summary: Supper" in words and "Fewer than 5 people took part" in words, words
    assert "<b>" in summary  # the report's own HTML, not its markup escaped
    stored = await world.storage.gathering(gathering.id)
    assert stored is not None and stored.status == "closed"
    late = await world.say(f"/join {gathering.code}", "ben")
    assert any("closed" in m.text for m in late)
    assert (("gathering_closed", f"{gathering.code} changing-work")) in await audited(world)
    page = await (await world.client.get(f"/console/gatherings/{gathering.id}")).text()
    assert "Close the gathering" not in page and "gathering-live.js" not in page
    listing = await (await world.client.get("/console/gatherings")).text()
    closed_lately = listing.split("Closed lately")[1].split("Open a new gathering")[0]
    assert f'href="/console/gatherings/{gathering.id}"' in closed_lately  # found again


async def test_a_facilitator_is_refused_another_facilitators_gathering(world: World):
    csrf = await facilitator(world, "fran")
    theirs = await launch(world, csrf)
    other = await facilitator(world, "gil")  # now signed in as gil
    for path in ("", "/live", "/join", "/qr.svg", "/close", "/summary"):
        refused = await world.client.get(f"/console/gatherings/{theirs.id}{path}")
        assert refused.status == 403, path
    assert "This gathering isn't yours" in text_of(await refused.text())
    for action in ("next", "close"):
        assert (await post(world, f"/gatherings/{theirs.id}/{action}", other)).status == 403
    still = await world.storage.gathering(theirs.id)
    assert still is not None and still.status == "open"
    listing = await (await world.client.get("/console/gatherings")).text()
    assert theirs.code not in listing and theirs.id not in listing  # gil's holds only gil's

    await world.grant("cora", "coordinator")  # coordinators see every one, and read it
    coordinator = await world.sign_in("cora")
    assert (await world.client.get(f"/console/gatherings/{theirs.id}")).status == 200
    assert theirs.code in await (await world.client.get("/console/gatherings")).text()
    assert (await world.client.get(f"/console/gatherings/{theirs.id}/summary")).status == 200
    # ...but pacing, closing and launching are a facilitator's or an admin's, as in chat.
    assert (await post(world, f"/gatherings/{theirs.id}/close", coordinator)).status == 403
    assert (await post(world, "/gatherings", coordinator, guide="changing-work")).status == 403

    admin = await world.sign_in("root")
    closed = await post(world, f"/gatherings/{theirs.id}/close", admin)
    assert closed.status == 303
    assert theirs.id in await (await world.client.get("/console/gatherings")).text()
    await world.sign_in("gil")  # closed lately: still only fran's, not gil's to see
    assert theirs.id not in await (await world.client.get("/console/gatherings")).text()


async def test_a_post_without_the_csrf_token_changes_nothing(world: World):
    csrf = await facilitator(world)
    gathering = await launch(world, csrf, paced=True)
    before = await audited(world)
    assert (await post(world, "/gatherings", None, guide="changing-work")).status == 403
    for action in ("next", "close"):
        assert (await post(world, f"/gatherings/{gathering.id}/{action}", None)).status == 403
        assert (await post(world, f"/gatherings/{gathering.id}/{action}", "forged")).status == 403
    after = await world.storage.gathering(gathering.id)
    assert after == gathering
    assert await world.storage.open_gatherings() == [gathering]
    assert await audited(world) == before


async def test_an_unknown_guide_is_refused_saying_so(world: World):
    csrf = await facilitator(world)
    answer = await post(world, "/gatherings", csrf, guide="nope", title="Kept")
    assert answer.status == 400
    page = await answer.text()
    assert "Choose one of the guides in the list." in text_of(page)
    assert 'value="Kept"' in page
    assert await world.storage.open_gatherings() == []


async def test_chat_commands_reach_a_gathering_opened_in_the_console(world: World):
    """/status and /close in the facilitator's own chat act on it: its place is theirs."""
    csrf = await facilitator(world)
    gathering = await launch(world, csrf)
    status = await world.say("/status", "fran")
    assert any(gathering.code in m.text for m in status), [m.text for m in status]
    await world.say("/close", "fran")
    closed = await world.storage.gathering(gathering.id)
    assert closed is not None and closed.status == "closed"


async def test_the_pages_speak_spanish(world: World):
    await world.grant("fran", "facilitator")
    link = await world.services.links.issue(world.pseudonym("fran"), "es")
    answer = await world.client.post("/console/signin", data={"t": link.split("t=")[1]},
                                      allow_redirects=False)  # fmt: skip
    assert answer.status == 303
    page = text_of(await (await world.client.get("/console/gatherings")).text())
    assert "Abrir una reunión nueva" in page


async def test_a_room_of_five_gets_its_figures_in_the_summary_with_every_answer_escaped(
    world: World,
):
    csrf = await facilitator(world)
    gathering = await launch(world, csrf, title="Supper")
    for person in ("ana", "ben", "cai", "dee", "eli"):
        await world.say(f"/join {gathering.code}", person)
        asked = await world.say("yes", person)
        for _ in range(30):
            if not asked:
                break
            # A choice, a number or a scale: "1" (the first option, or one); free text:
            # words with markup in them, which no page may read as markup.
            typed = "1" if asked[-1].buttons or "years" in asked[-1].text else "<i>pay</i>"
            asked = await world.say(typed, person)
        runs = [r for r in await world.storage.gathering_runs(gathering.id)
                if r.participant == world.pseudonym(person)]  # fmt: skip
        assert runs and runs[0].status == "finished", [m.text for m in asked]
    live = text_of(
        await (await world.client.get(f"/console/gatherings/{gathering.id}/live")).text()
    )
    assert "Joined 5" in live and "Finished 5" in live
    await post(world, f"/gatherings/{gathering.id}/close", csrf)
    page = await (await world.client.get(f"/console/gatherings/{gathering.id}/summary")).text()
    words = text_of(page)
    assert "5 took part and 5 finished." in words
    assert "What kind of work do you do now?" in words
    assert "&lt;i&gt;pay&lt;/i&gt;" in page and "<i>pay</i>" not in page


async def test_a_gathering_that_does_not_exist_is_not_found(world: World):
    await facilitator(world)
    for path in ("", "/live", "/qr.svg", "/summary"):
        assert (await world.client.get(f"/console/gatherings/nothing{path}")).status == 404
