"""Slack installations and OAuth states, kept in our own storage.

When a coordinator installs the app in a community's workspace, Slack hands us
that workspace's bot token. We keep it sealed (encrypted with the bot's secret)
in storage's records, never in files beside the code. OAuth `state` values are
one-time records that expire after ten minutes.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.privacy import Identity

INSTALLATION = "slack-installation"
STATE = "slack-oauth-state"
STATE_LIFETIME = timedelta(minutes=10)

log = logging.getLogger(__name__)


def team_key(enterprise_id: str | None, team_id: str | None) -> str:
    return f"{enterprise_id or '-'}:{team_id or '-'}"


class Records(Protocol):
    """The small keyed records Slack's installations and OAuth states are kept in (the
    bot's storage provides them; the composition root hands it over)."""

    async def put_record(
        self, kind: str, key: str, value: bytes, expires_at: datetime | None = None
    ) -> None: ...

    async def record(self, kind: str, key: str, now: datetime) -> bytes | None: ...

    async def take_record(self, kind: str, key: str, now: datetime) -> bytes | None: ...

    async def delete_records(self, kind: str, key: str) -> None: ...


class StoredInstallations(AsyncInstallationStore):
    """One installation per workspace (bot-only: we never act as a user)."""

    def __init__(self, storage: Records, identity: Identity, clock: Callable[[], datetime]) -> None:
        self.storage = storage
        self.identity = identity
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        data = json.dumps(installation.__dict__, default=str)
        key = team_key(installation.enterprise_id, installation.team_id)
        await self.storage.put_record(INSTALLATION, key, self.identity.seal(data))

    async def async_save_bot(self, bot: Bot) -> None:
        pass  # saved with its installation

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        sealed = await self.storage.record(
            INSTALLATION, team_key(enterprise_id, team_id), self.clock()
        )
        if sealed is None:
            return None
        installation = Installation(**json.loads(self.identity.unseal(sealed)))
        if user_id is not None and user_id != installation.user_id:
            return None  # Bolt then asks for the workspace's bot
        return installation

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        installation = await self.async_find_installation(
            enterprise_id=enterprise_id, team_id=team_id
        )
        return None if installation is None else installation.to_bot()

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self.storage.delete_records(INSTALLATION, team_key(enterprise_id, team_id))

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.storage.delete_records(INSTALLATION, team_key(enterprise_id, team_id))

    async def bot_token(self, team_id: str) -> str | None:
        installation = await self.async_find_installation(enterprise_id=None, team_id=team_id)
        return None if installation is None else installation.bot_token


class StoredStates(AsyncOAuthStateStore):
    """OAuth `state` values: issued once, consumed once, gone after ten minutes."""

    def __init__(self, storage: Records, clock: Callable[[], datetime]) -> None:
        self.storage = storage
        self.clock = clock

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await self.storage.put_record(STATE, state, b"", self.clock() + STATE_LIFETIME)
        return state

    async def async_consume(self, state: str) -> bool:
        return await self.storage.take_record(STATE, state, self.clock()) is not None
