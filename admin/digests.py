"""`kitchen-table digest`: what people said over a period, as text, Markdown or an HTML page."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from bot.library import GuideLibrary
from bot.reports.digest import build_digest
from bot.reports.render import Reports
from storage.protocol import ReportStore

TEMPLATE = {"text": ("digest", "text"), "md": ("digest", "md"), "html": ("digest_page", "page")}


async def digest(
    storage: ReportStore,
    library: GuideLibrary,
    reports: Reports,
    *,
    since: timedelta,
    now: datetime,
    guide: str | None,
    fmt: str,
    min_group: int,
    out_path: Path | None,
    out: TextIO,
    language: str = "en",
) -> int:
    if guide is not None and library.get(guide) is None:
        out.write(f"There is no guide {guide}. See `kitchen-table guides list`.\n")
        return 2
    found = await build_digest(
        storage, library, now - since, now, min_group=min_group, language=language, guide_id=guide
    )
    name, target = TEMPLATE[fmt]
    text = reports.render(name, target, language, d=found) + "\n"
    if out_path is None:
        out.write(text)
    else:
        await asyncio.to_thread(out_path.write_text, text, encoding="utf-8")
        out.write(f"Wrote the digest to {out_path}\n")
    return 0
