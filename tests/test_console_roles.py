"""The People and roles page, in process on the run's storage backend and a fake clock:
an admin makes an invitation code that works with /redeem in chat (once); sees who holds
a role by pseudonym; takes a role back after a confirmation, and the person loses the
console at once; admins from the settings are shown and can't be revoked here; only
admins reach the page; a POST without the CSRF token changes nothing; each change is in
the audit log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from storage.protocol import Storage
from tests.conftest import FakeClock
from tests.console_world import World, open_world, text_of


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock)
    yield opened
    await opened.close()


async def post(world: World, path: str, csrf: str | None, **fields: str):  # type: ignore[no-untyped-def]
    data = {**fields, **({"csrf": csrf} if csrf is not None else {})}
    return await world.client.post(f"/console{path}", data=data, allow_redirects=False)


async def invite(world: World, csrf: str, role: str) -> str:
    answer = await post(world, "/people/invite", csrf, role=role)
    assert answer.status == 200
    page = await answer.text()
    found = re.search(r"<code>([A-Z0-9]{10})</code>", page)
    assert found is not None, text_of(page)
    code = found.group(1)
    assert f"https://t.me/KitchenTableBot?start=redeem-{code}" in page
    assert f"/redeem {code}" in text_of(page)
    return code


async def audited(world: World) -> list[tuple[str, str]]:
    return [(e.what, e.detail) for e in await world.services.audit_log.newest()]


async def test_an_invitation_made_here_works_once_with_redeem_in_chat(world: World):
    csrf = await world.sign_in("root")
    code = await invite(world, csrf, "facilitator")
    assert ("role_invited", "facilitator") in await audited(world)
    said = await world.say(f"/redeem {code}", "fran")
    assert await world.house.roles.role_of(world.pseudonym("fran")) == "facilitator", said
    again = await world.say(f"/redeem {code}", "gil")  # once only
    assert await world.house.roles.role_of(world.pseudonym("gil")) == "participant", again
    # The link's deep link works the same: /start redeem-CODE.
    other = await invite(world, csrf, "coordinator")
    await world.say(f"/start redeem-{other}", "cora")
    assert await world.house.roles.role_of(world.pseudonym("cora")) == "coordinator"

    page = await (await world.client.get("/console/people")).text()
    for user, role in (("fran", "facilitator"), ("cora", "coordinator")):
        full = world.pseudonym(user)
        assert f'<code title="{full}">{full[:12]}…</code>' in page
        assert f'<code class="whole">{full}</code>' in page
        row = page.split(f'title="{full}"')[1].split("</tr>")[0]
        assert role in row and "Take back the role" in row
    root = world.pseudonym("root")
    admin_row = page.split(f'title="{root}"')[1].split("</tr>")[0]
    assert "Set in the settings" in admin_row and "Take back" not in admin_row
    assert code not in page  # shown once, on the answer to the form that made it


async def test_an_unknown_role_is_refused(world: World):
    csrf = await world.sign_in("root")
    answer = await post(world, "/people/invite", csrf, role="admin")
    assert answer.status == 400
    assert "Choose a role" in text_of(await answer.text())
    assert await audited(world) == [("signed_in", "")]


async def test_revoking_asks_first_and_takes_the_console_away_at_once(world: World):
    await world.grant("fran", "facilitator")
    fran = world.pseudonym("fran")
    await world.sign_in("fran")
    fran_cookies = world.client.session.cookie_jar.filter_cookies(
        world.client.make_url("/console/")
    )
    assert (await world.client.get("/console/gatherings")).status == 200

    world.client.session.cookie_jar.clear()
    csrf = await world.sign_in("root")
    ask = await post(world, "/people/revoke/ask", csrf, who=fran)
    assert ask.status == 200
    assert "Take this role back?" in text_of(await ask.text())
    assert await world.house.roles.role_of(fran) == "facilitator"  # asking changes nothing
    done = await post(world, "/people/revoke", csrf, who=fran)
    assert done.status == 303
    page = text_of(await (await world.client.get(done.headers["Location"])).text())
    assert "The role of facilitator was taken back." in page
    assert await world.house.roles.role_of(fran) == "participant"
    assert ("role_revoked", f"facilitator {fran[:12]}…") in await audited(world)  # shown short
    gone = await post(world, "/people/revoke", csrf, who=fran)  # twice: nothing to take
    assert "done=gone" in gone.headers["Location"]

    world.client.session.cookie_jar.clear()
    world.client.session.cookie_jar.update_cookies(fran_cookies)
    refused = await world.client.get("/console/gatherings")
    assert refused.status == 403
    assert "You no longer have access" in text_of(await refused.text())
    assert "Only facilitators" in (await world.say("/launch changing-work", "fran"))[0].text


async def test_admins_from_the_settings_cannot_be_revoked_here(world: World):
    csrf = await world.sign_in("root")
    root = world.pseudonym("root")
    for path in ("/people/revoke/ask", "/people/revoke"):
        answer = await post(world, path, csrf, who=root)
        assert "done=configured" in answer.headers["Location"]
    assert await world.house.roles.role_of(root) == "admin"
    assert (await world.client.get("/console/people")).status == 200


async def test_only_admins_reach_the_page(world: World):
    await world.grant("cora", "coordinator")
    csrf = await world.sign_in("cora")
    assert (await world.client.get("/console/people")).status == 403
    assert (await post(world, "/people/invite", csrf, role="coordinator")).status == 403
    assert (await post(world, "/people/revoke", csrf, who=world.pseudonym("cora"))).status == 403
    assert await world.house.roles.role_of(world.pseudonym("cora")) == "coordinator"


async def test_a_post_without_the_csrf_token_changes_nothing(world: World):
    await world.grant("fran", "facilitator")
    await world.sign_in("root")
    before = await audited(world)
    assert (await post(world, "/people/invite", None, role="facilitator")).status == 403
    fran = world.pseudonym("fran")
    assert (await post(world, "/people/revoke", None, who=fran)).status == 403
    assert (await post(world, "/people/revoke", "forged", who=fran)).status == 403
    assert await world.house.roles.role_of(fran) == "facilitator"
    assert await audited(world) == before
