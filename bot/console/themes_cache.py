"""Themes the console found lately, kept a few minutes, so a guide's Results page can say
what people wrote about without grouping answers while the coordinator waits.

Grouping takes 0.1-0.3 s for a few hundred answers and seconds for 100,000, so the
Results page never groups in its own request: it shows what this cache holds (filled by
the Themes page, and by a warm-up in the background for questions with few answers) and
otherwise only the link to the Themes page. Kept per console app (per instance), keyed
by guide, question and period. Each copy is used only while it still holds
(`ThemeService.still_hold`: the question's codebook is the one it was found with, and
nobody has been forgotten since, both read from the database, so an edit or an erasure
made by any instance or command counts at once); an edit here also forgets that
question's copies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from aiohttp import web

from bot.reports.themes.model import Themes

Key = tuple[str, str, datetime | None, datetime]  # guide, question, since, until
LASTS = timedelta(minutes=5)  # answers keep coming: a summary this old is still fair
# The Themes page right after an edit shows the themes the edit gave (the service found
# them once already: seconds for a big question); any other visit finds them afresh.
JUST_SAVED = timedelta(seconds=30)
log = logging.getLogger(__name__)
WARM_MOST = 1000  # answers a warm-up groups in the background (well under a second)


class ThemesCache:
    """Themes by guide, question and period, each kept `lasts` (on the console's clock)."""

    def __init__(self, clock: Callable[[], datetime], lasts: timedelta = LASTS) -> None:
        self._clock = clock
        self._lasts = lasts
        self._found: dict[Key, tuple[datetime, Themes]] = {}
        self._pending: dict[Key, asyncio.Task[None]] = {}

    async def get(
        self,
        key: Key,
        hold: Callable[[Themes], Awaitable[bool]],
        within: timedelta | None = None,
    ) -> Themes | None:
        """These themes if found in the last `within` (at most `lasts`) and they still
        `hold` (asked only when there are themes to ask about), else None."""
        found = self._found.get(key)
        if found is None or self._clock() - found[0] > min(within or self._lasts, self._lasts):
            return None
        return found[1] if await hold(found[1]) else None

    def put(self, key: Key, themes: Themes) -> None:
        now = self._clock()
        # Drop what has expired, so a long-running console doesn't keep every period.
        self._found = {k: v for k, v in self._found.items() if now - v[0] <= self._lasts}
        self._found[key] = (now, themes)

    def forget(self, guide: str, step: str) -> None:
        """A codebook edit changes this question's themes for every period."""
        self._found = {k: v for k, v in self._found.items() if k[:2] != (guide, step)}

    def warm(self, key: Key, find: Callable[[], Awaitable[Themes]]) -> None:
        """Find these themes in the background (once at a time per key), for a later visit
        (the caller found none kept that still hold)."""
        if key in self._pending:
            return

        async def run() -> None:
            try:
                self.put(key, await find())
            except Exception:  # a summary is a nicety: the Themes page says what went wrong
                log.warning("themes for %s could not be found ahead", key[:2], exc_info=True)
            finally:
                self._pending.pop(key, None)

        self._pending[key] = asyncio.create_task(run())

    async def settled(self) -> None:
        """Wait for the warm-ups under way (tests; the app's cleanup)."""
        await asyncio.gather(*self._pending.values(), return_exceptions=True)

    async def close(self, _app: web.Application | None = None) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        await self.settled()


THEMES_CACHE = web.AppKey("console_themes_cache", ThemesCache)
