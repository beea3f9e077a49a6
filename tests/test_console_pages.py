"""A page module added the way other pages will be (bot/console/pages.py): its routes
guarded by role, its form guarded by CSRF, its change in the audit log, its entry in the
menu of the roles it names. On the run's storage backend."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.console.catalog import PAGE_MODULES
from bot.console.context import Visit, see_other
from bot.console.pages import Pages
from bot.features.roles import ADMIN, COORDINATOR
from storage.protocol import Storage
from tests.conftest import FakeClock
from tests.console_world import World, open_world


async def _show(visit: Visit) -> web.StreamResponse:
    return web.Response(text=f"notes for {visit.role} in {visit.language}")


async def _add(visit: Visit) -> web.StreamResponse:
    form = await visit.form()
    await visit.audit("note_added", str(form.get("note", "")))
    return see_other(str(visit.request.app.router["notes"].url_for()))


def _setup(pages: Pages) -> None:
    pages.get("/notes", _show, name="notes", roles=(COORDINATOR, ADMIN))
    pages.post("/notes", _add, roles=(COORDINATOR, ADMIN))
    pages.nav("nav_audit", "notes", roles=(COORDINATOR,), order=50)


NOTES = types.SimpleNamespace(setup=_setup)


@pytest.fixture
async def world(storage: Storage, clock: FakeClock) -> AsyncIterator[World]:
    opened = await open_world(storage, clock, modules=[*PAGE_MODULES, NOTES])  # type: ignore[list-item]
    yield opened
    await opened.close()


async def test_a_registered_page_is_served_to_its_roles_and_refused_to_others(world: World):
    await world.grant("fay", "facilitator")
    await world.sign_in("fay")
    refused = await world.client.get("/console/notes")
    assert refused.status == 403
    assert "This page isn&#39;t for your role" in await refused.text()
    world.client.session.cookie_jar.clear()
    await world.grant("cora", "coordinator")
    await world.sign_in("cora")
    shown = await world.client.get("/console/notes")
    assert shown.status == 200 and await shown.text() == "notes for coordinator in en"
    overview = await (await world.client.get("/console/")).text()
    assert 'href="/console/notes"' in overview  # in a coordinator's menu


async def test_a_change_needs_the_token_and_is_audited(world: World):
    await world.grant("cora", "coordinator")
    csrf = await world.sign_in("cora")
    without = await world.client.post("/console/notes", data={"note": "x"})
    assert without.status == 403
    world.clock.advance(seconds=1)  # after the sign-in, in the log's order
    done = await world.client.post(
        "/console/notes", data={"note": "<b>hi</b>", "csrf": csrf}, allow_redirects=False
    )
    assert done.status == 303 and done.headers["Location"] == "/console/notes"
    entries = await world.services.audit_log.newest()
    newest = entries[0]
    assert (newest.what, newest.detail, newest.who) == (
        "note_added", "<b>hi</b>", world.pseudonym("cora"),
    )  # fmt: skip
    assert [e.what for e in entries].count("note_added") == 1  # the refused one: not kept
    world.client.session.cookie_jar.clear()
    await world.sign_in("root")
    page = await (await world.client.get("/console/audit")).text()
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page  # escaped where shown
    assert "note added" in page


def test_a_page_must_name_its_roles():
    pages = Pages(web.Application(), lambda visit: web.Response())
    with pytest.raises(ValueError, match="needs roles"):
        pages.get("/x", _show, roles=())
    with pytest.raises(ValueError, match="needs roles"):
        pages.get("/x", _show, roles=("participant",))
