"""Signing in to the console, in process (on the run's storage backend, with a fake clock):
a one-time link by /console for the roles that may have one, valid ten minutes, used
once; a session for `console_session_hours`; roles read again on every request; the
CSRF token on every change; the audit log; only hashes of tokens kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.console.audit import AUDIT
from bot.console.sessions import SESSION
from bot.features.console import LINK
from storage.protocol import Storage
from tests.conftest import FakeClock
from tests.console_world import World, open_world


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    yield opened
    await opened.close()


async def test_console_in_chat_sends_a_link_to_roles_only_and_never_in_a_group(world: World):
    said = " ".join(m.text for m in await world.say("/console", "root"))
    assert "https://kt.example/console/signin?t=" in said
    assert "works once, for 10 minutes" in said
    refused = " ".join(m.text for m in await world.say("/console", "ana"))
    assert refused == "The console is for facilitators, coordinators and admins."
    in_group = " ".join(
        m.text for m in await world.say("/console", "root", group=True, link="https://t.me/x")
    )
    assert "/signin" not in in_group
    await world.grant("fay", "facilitator")
    assert "/console/signin?t=" in " ".join(m.text for m in await world.say("/console", "fay"))


async def test_a_link_shows_a_button_first_then_signs_in_once(storage: Storage, clock: FakeClock):
    world = await open_world(storage, clock, secure=True)  # as under https
    path = await world.link("root")
    token = path.split("t=")[1]
    for _ in range(2):  # a chat app's link preview opens it: that uses nothing up
        shown = await world.client.get(path)
        assert shown.status == 200
        assert 'action="/console/signin"' in await shown.text()
    taken = await world.client.post("/console/signin", data={"t": token}, allow_redirects=False)
    assert taken.status == 303 and taken.headers["Location"] == "/console/"
    cookie = taken.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/console", "Max-Age=43200"):
        assert flag in cookie, cookie
    again = await world.client.post("/console/signin", data={"t": token})
    assert again.status == 410
    assert "doesn&#39;t work any more" in await again.text()
    assert (await world.client.get(path)).status == 410
    await world.close()


async def test_a_sign_in_form_sent_from_another_site_is_refused(world: World):
    token = (await world.link("root")).split("t=")[1]
    elsewhere = {"Origin": "https://attacker.example"}
    refused = await world.client.post("/console/signin", data={"t": token}, headers=elsewhere)
    assert refused.status == 403
    ours = {"Origin": "https://kt.example"}  # the console's own address, behind a proxy
    taken = await world.client.post(
        "/console/signin", data={"t": token}, headers=ours, allow_redirects=False
    )
    assert taken.status == 303  # the refused attempt did not use the link up


async def test_a_link_lasts_ten_minutes(world: World):
    path = await world.link("root")
    world.clock.advance(minutes=10, seconds=1)
    answer = await world.client.get(path)
    assert answer.status == 410
    token = path.split("t=")[1]
    assert (await world.client.post("/console/signin", data={"t": token})).status == 410


async def test_a_session_lasts_twelve_hours(world: World):
    await world.sign_in("root")
    world.clock.advance(hours=11, minutes=59)
    assert (await world.client.get("/console/")).status == 200
    world.clock.advance(minutes=2)
    answer = await world.client.get("/console/")
    assert answer.status == 401
    assert "Please sign in first" in await answer.text()


async def test_without_a_session_every_page_asks_to_sign_in(world: World):
    for path in ("/console/", "/console/audit"):
        answer = await world.client.get(path)
        assert answer.status == 401
        assert "Send /console to the bot" in await answer.text()
    assert (await world.client.post("/console/signout", data={})).status == 401
    bare = await world.client.get("/console", allow_redirects=False)
    assert bare.status == 308 and bare.headers["Location"] == "/console/"


async def test_a_change_without_the_csrf_token_is_refused_and_nothing_changes(world: World):
    csrf = await world.sign_in("root")
    for form in ({}, {"csrf": "wrong"}, {"csrf": csrf[:-1]}):
        refused = await world.client.post("/console/signout", data=form, allow_redirects=False)
        assert refused.status == 403
        assert "missing its security token" in await refused.text()
    assert (await world.client.get("/console/")).status == 200  # still signed in
    done = await world.client.post("/console/signout", data={"csrf": csrf}, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/console/signed-out"
    assert (await world.client.get("/console/")).status == 401


async def test_a_revoked_role_loses_access_on_its_next_request(world: World):
    await world.grant("cora", "coordinator")
    await world.sign_in("cora")
    await world.house.roles.revoke(world.pseudonym("cora"))
    answer = await world.client.get("/console/")
    assert answer.status == 403
    assert "You no longer have access" in await answer.text()
    assert await world.storage.records_of(SESSION, world.clock()) == []


async def test_the_audit_log_names_pseudonyms_and_is_for_admins_only(world: World):
    csrf = await world.sign_in("root")
    world.clock.advance(seconds=1)
    await world.client.post("/console/signout", data={"csrf": csrf})
    world.clock.advance(seconds=1)
    await world.sign_in("root")
    page = await world.client.get("/console/audit")
    text = await page.text()
    assert page.status == 200
    assert text.count("<td>Signed in</td>") == 2 and text.count("<td>Signed out</td>") == 1
    assert world.pseudonym("root")[:12] in text
    entries = await world.services.audit_log.newest()
    assert [e.what for e in entries] == ["signed_in", "signed_out", "signed_in"]  # newest first
    assert {e.who for e in entries} == {world.pseudonym("root")}
    await world.grant("cora", "coordinator")
    world.client.session.cookie_jar.clear()
    await world.sign_in("cora")
    refused = await world.client.get("/console/audit")
    assert refused.status == 403
    assert "isn&#39;t for your role" in await refused.text()
    assert 'href="/console/audit"' not in await (await world.client.get("/console/")).text()


async def test_only_hashes_of_links_and_sessions_are_kept(world: World):
    path = await world.link("root")
    token = path.split("t=")[1]
    kept = await world.storage.records_of(LINK, world.clock())
    assert len(kept) == 1 and token not in kept[0].key and token.encode() not in kept[0].value
    answer = await world.client.post("/console/signin", data={"t": token}, allow_redirects=False)
    cookie = answer.cookies["kt_console"].value
    sessions = await world.storage.records_of(SESSION, world.clock())
    assert len(sessions) == 1
    assert cookie not in sessions[0].key and cookie.encode() not in sessions[0].value
    assert all(cookie.encode() not in r.value for r in await world.storage.records_of(
        AUDIT, world.clock()))  # fmt: skip


async def test_pages_carry_headers_that_keep_links_and_framing_out(world: World):
    await world.sign_in("root")
    answer = await world.client.get("/console/")
    assert answer.headers["Referrer-Policy"] == "same-origin"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    # Scripts only from our own files (the live gathering's refresh): never inline.
    policy = answer.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    css = await world.client.get("/console/static/console.css")
    assert css.status == 200 and ":focus-visible" in await css.text()
    missing = await world.client.get("/console/no-such-page")
    assert missing.status == 404 and "There is no such page" in await missing.text()
