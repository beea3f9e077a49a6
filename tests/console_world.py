"""An in-process console for tests: the bot's house (with /console declared), its web app
with the console mounted, and an HTTP client, on the run's storage backend and a fake
clock. Tests sign in the way people do: /console in a (terminal) chat, then the link."""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from admin.schedules import ScheduleDesk
from bot.app.build import House, build_house
from bot.app.web import make_web_app
from bot.console.app import make_console
from bot.console.catalog import PAGE_MODULES
from bot.console.context import Services
from bot.console.pages import PageModule
from bot.console.strings import load_strings
from bot.console.themes_cache import THEMES_CACHE, ThemesCache
from bot.delivery.deliverer import Deliverer
from bot.features.digests import DigestArchive
from bot.features.roles import Roles
from bot.library import GuideLibrary
from bot.locales import load_phrasebook
from bot.messages import Inbound, Outbound
from bot.privacy import Identity
from bot.scheduling.scheduler import DIGEST
from storage.protocol import Storage
from tests.conftest import GUIDES, FakeClock, RecordingChannel

ADDRESS = "https://kt.example/console"
LINK = re.compile(r"https://kt\.example/console(/signin\?t=[A-Za-z0-9_-]+)")


def text_of(page: str) -> str:
    """A page's words, tags dropped and entities read, spaces squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def main_of(page: str) -> str:
    """A page's <main>: what it says, without the menu around it."""
    found = re.search(r"<main.*</main>", page, re.S)
    assert found is not None
    return found.group(0)


@dataclass
class World:
    storage: Storage
    clock: FakeClock
    identity: Identity
    house: House
    channel: RecordingChannel
    deliverer: Deliverer
    services: Services
    client: TestClient[web.Request, web.Application]

    def pseudonym(self, user: str) -> str:
        return self.identity.pseudonym("terminal", user)

    async def say(self, text: str, user: str, **extra: object) -> list[Outbound]:
        before = len(self.channel.sent)
        inbound = Inbound("terminal", user, user, text, **extra)  # type: ignore[arg-type]
        await self.house.dispatcher.handle(inbound)
        await self.house.dispatcher.settle()
        await self.deliverer.drain("terminal")
        return [m for _, m in self.channel.sent[before:]]

    async def link(self, user: str) -> str:
        """/console from this person: the path of the link they were sent."""
        said = " ".join(m.text for m in await self.say("/console", user))
        found = LINK.search(said)
        assert found is not None, said
        return f"/console{found.group(1)}"

    async def sign_in(self, user: str) -> str:
        """Sign in with a fresh link; the session's CSRF token (from the overview's form)."""
        path = await self.link(user)
        answer = await self.client.post("/console/signin", data={"t": path.split("t=")[1]},
                                        allow_redirects=False)  # fmt: skip
        assert answer.status == 303, await answer.text()
        overview = await self.client.get("/console/")
        assert overview.status == 200
        token = re.search(r'name="csrf" value="([^"]+)"', await overview.text())
        assert token is not None
        return token.group(1)

    async def grant(self, user: str, role: str) -> None:
        code = await self.house.roles.invite(role, timedelta(days=1))
        await self.say(f"/redeem {code}", user)

    def themes_cache(self) -> ThemesCache:
        """The console's cache of themes (the console is a sub-application of the web app)."""
        for resource in self.client.app.router.resources():
            app = getattr(resource, "_app", None)
            if app is not None and THEMES_CACHE in app:
                return app[THEMES_CACHE]
        raise AssertionError("no console")

    async def close(self) -> None:
        await self.client.close()


async def open_world(
    storage: Storage,
    clock: FakeClock,
    *,
    admins: Iterable[str] = ("root",),
    modules: Iterable[PageModule] = PAGE_MODULES,
    secure: bool = False,
) -> World:
    """`secure`: cookies marked Secure, as under https (the test client, on http, then
    keeps them to itself)."""
    identity = Identity(b"test-secret-test-secret")
    channel = RecordingChannel()
    deliverer = Deliverer(storage, identity, {"terminal": channel}, clock)
    ids = itertools.count(1)
    roles = Roles(storage, {identity.pseudonym("terminal", a) for a in admins}, clock)
    house = build_house(
        storage=storage, library=GuideLibrary.from_paths([GUIDES]), identity=identity,
        phrases=load_phrasebook(), clock=clock, new_id=lambda: f"run{next(ids)}",
        roles=roles, console_url=ADDRESS,
    )  # fmt: skip
    assert house.console is not None
    services = Services(
        storage=storage, library=house.dispatcher.library, roles=roles, links=house.console,
        strings=load_strings(), clock=clock, address=ADDRESS, secure_cookies=secure,
        gatherings=house.gatherings, cohorts=house.cohorts, digests=house.digests,
        reports=house.reports,
        schedule_desk=ScheduleDesk(storage, house.dispatcher.library),
        digest_archive=DigestArchive(storage, house.digests, DIGEST), bot_link="https://t.me/KitchenTableBot",
    )  # fmt: skip
    app = make_web_app(console=make_console(services, modules))
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    return World(storage, clock, identity, house, channel, deliverer, services, client)
