"""Wiring the conversation: the dispatcher, its router, and every feature registered on it.

Part of the composition root (with `bot/app/cli.py`): the one place that knows every
feature. The dispatcher imports none of them; each feature registers its
commands and buttons on the router here, and gets from the core only what it
needs (start a guide for someone, move someone's run on).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from bot.console.strings import add_chat_phrases
from bot.conversation.dispatcher import Dispatcher
from bot.conversation.locks import ConversationLocks
from bot.conversation.router import Router
from bot.features.cohorts import DEFAULT_TZ, Cohorts
from bot.features.console import ConsoleLinks
from bot.features.digests import Digests
from bot.features.gatherings import Gatherings
from bot.features.rights import Rights
from bot.features.roles import Roles
from bot.flows.phrases import Phrasebook
from bot.library import GuideLibrary
from bot.privacy import Identity
from bot.reports.render import Reports
from storage.protocol import Storage


@dataclass
class House:
    """The conversation, wired: what the app, the scheduler and the tests reach for."""

    dispatcher: Dispatcher
    roles: Roles
    reports: Reports
    gatherings: Gatherings
    cohorts: Cohorts
    rights: Rights
    digests: Digests
    console: ConsoleLinks | None = None  # sign-in links, when the console is on

    @property
    def router(self) -> Router:
        return self.dispatcher.router


def write_help(router: Router, phrases: Phrasebook) -> None:
    """/help in every language: its intro, then one line per command everyone may use,
    from the router's declarations and each command's `command_<name>` description."""
    for language in phrases.languages:
        lines = [f"/{c.name} {phrases.text(language, c.help_key)}" for c in router.listed()]
        for key, intro in (("help", "help_intro"), ("help_terminal", "help_terminal_intro")):
            phrases.define(language, key, "\n".join([phrases.text(language, intro), *lines]))


def command_menu(router: Router, phrases: Phrasebook) -> dict[str, list[tuple[str, str]]]:
    """The commands a platform's menu offers, per language ("" for any other language,
    in English), from the router: what everyone may use, with its description."""
    menu = {
        language: [(c.name, phrases.text(language, c.help_key)) for c in router.listed()]
        for language in phrases.languages
    }
    menu[""] = menu["en"]
    return menu


def build_house(
    *,
    storage: Storage,
    library: GuideLibrary,
    identity: Identity,
    phrases: Phrasebook,
    clock: Callable[[], datetime],
    new_id: Callable[[], str] = lambda: secrets.token_hex(16),
    max_answer_chars: int = 4000,
    on_commit: Callable[[], None] = lambda: None,
    roles: Roles | None = None,
    reports: Reports | None = None,
    min_group: int = 5,
    default_tz: str = DEFAULT_TZ,
    locks: ConversationLocks | None = None,
    console_url: str | None = None,
) -> House:
    """`console_url`: the console's address when it is on; only then is /console declared
    (without a console there is nothing to link to)."""
    roles = roles or Roles(storage, set(), clock)
    reports = reports or Reports(phrases)
    dispatcher = Dispatcher(
        storage=storage,
        library=library,
        identity=identity,
        phrases=phrases,
        clock=clock,
        new_id=new_id,
        max_answer_chars=max_answer_chars,
        on_commit=on_commit,
        role_of=roles.role_of,
        locks=locks,
    )
    cohorts = Cohorts(storage, default_tz)
    gatherings = Gatherings(
        storage, library, roles, reports, cohorts,
        start_guide=dispatcher.start_guide, nudge=dispatcher.nudge, new_id=dispatcher.new_id,
        min_group=min_group,
    )  # fmt: skip
    rights = Rights(storage, library)
    digests = Digests(storage, library, reports, roles, min_group)
    for feature in (gatherings, cohorts, rights, digests):
        feature.register(dispatcher.router)
    console = None
    if console_url is not None:
        console = ConsoleLinks(storage, console_url, clock)
        console.register(dispatcher.router)
        add_chat_phrases(phrases)
    dispatcher.plug(offer=cohorts.offer)
    write_help(dispatcher.router, phrases)
    return House(dispatcher, roles, reports, gatherings, cohorts, rights, digests, console)
