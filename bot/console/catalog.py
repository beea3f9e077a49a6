"""The page modules the console serves: add yours here (one line), in any order; the
navigation is ordered by each entry's `order` (`bot/console/pages.py`)."""

from __future__ import annotations

from bot.console import (
    audit_page,
    gatherings,
    opendata,
    overview,
    people,
    results,
    schedules,
    themes_page,
)
from bot.console.pages import PageModule

PAGE_MODULES: tuple[PageModule, ...] = (
    overview,
    audit_page,
    schedules,
    opendata,
    results,
    gatherings,
    people,
    themes_page,
)
