"""The Open data page (coordinators and admins): a guide's answers as CSV (one row per
answer, or one per conversation), JSON Lines or a FLOIP Flow Results package (a zip), for
any date range, with the minimum-group rule on by default and sensitive questions left out
(admins alone may include them, as only an admin runs `kitchen-table export`); and the
digest archive: the weekly digests sent, each made again when opened, and any week's made
on demand.

Downloads stream: answers are read a page at a time by `bot/reports/exports.py` (the same
readers and writers as `kitchen-table export`) and sent as they are written, so a large
export needs no more memory than a small one. File names say the guide, the kind and the
dates, never a person. Each download is written to the audit log (who exported what).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.console.app import SECURITY_HEADERS
from bot.console.context import Visit
from bot.console.pages import Pages
from bot.features.console import STAFF
from bot.features.roles import ADMIN
from bot.flows.guide import Guide
from bot.flows.text import localize
from bot.reports import exports

FORMATS = ("csv", "wide", "jsonl", "floip")
CHUNK = 64 * 1024  # sent once this much is written: small enough to flow, big enough to be cheap
TYPES = {
    "csv": "text/csv",
    "wide": "text/csv",
    "jsonl": "application/x-ndjson",
    "floip": "application/zip",
}


def setup(pages: Pages) -> None:
    pages.get("/data", show, name="opendata", roles=STAFF)
    pages.get("/data/export", export, name="export", roles=STAFF)
    pages.get("/data/digests/{day}", kept_digest, name="digest_kept", roles=STAFF)
    pages.get("/data/digest", made_digest, name="digest_made", roles=STAFF)
    pages.nav("nav_opendata", "opendata", roles=STAFF, order=60)


@dataclass
class Asked:
    """An export as asked for in the form (what was typed kept, to show back)."""

    guide: str = ""
    format: str = "csv"
    since: str = ""
    until: str = ""
    min_group: bool = True
    sensitive: bool = False

    @classmethod
    def read(cls, query: Any) -> Asked:
        def field(name: str) -> str:
            return str(query.get(name, "")).strip()[:40]

        return cls(field("guide"), field("format") or "csv", field("since"), field("until"),
                   min_group=bool(query.get("min_group")),
                   sensitive=bool(query.get("sensitive")))  # fmt: skip


def guides(visit: Visit) -> list[tuple[str, str]]:
    return sorted(
        (g.guide.id, localize(g.guide.title, visit.language, g.guide.default_language))
        for g in visit.services.library.all() if g.guide is not None
    )  # fmt: skip


async def page(visit: Visit, *, status: int = 200, **data: Any) -> web.Response:
    archive = visit.services.digest_archive
    today = visit.now.astimezone(ZoneInfo(visit.services.timezone)).date()
    defaults: dict[str, Any] = {
        "guides": guides(visit),
        "asked": Asked(),
        "problem": None,
        "problem_field": "",
        "min_group": visit.services.min_group,
        "may_include_sensitive": visit.can(ADMIN),
        "kept": await archive.days() if archive is not None else [],
        "today": today.isoformat(),
        "week_ending": today.isoformat(),
        "digest_problem": None,
        "zone": visit.services.timezone,
    }
    return visit.render("opendata.html", status=status, **{**defaults, **data})


async def show(visit: Visit) -> web.StreamResponse:
    return await page(visit)


def day_of(text: str) -> date | None:
    """A date as the form's date field sends it (2026-03-02); None if it isn't one."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def start_of(day: date, zone: str) -> datetime:
    """Midnight at the start of `day` in the console's time zone."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))


def file_name(guide: Guide, asked: Asked, since: date | None, until: date | None) -> str:
    """Says the guide, the kind and the dates: `weekly-checkin-answers-2026-03-01-to-
    2026-03-07.csv`. Never a person; ids are lowercase letters, digits and dashes."""
    kind = {"csv": "answers", "wide": "runs", "jsonl": "answers", "floip": "floip"}[asked.format]
    span = f"{since or 'start'}-to-{until or 'now'}"
    extra = "-with-sensitive" if asked.sensitive else ""
    extension = {"csv": "csv", "wide": "csv", "jsonl": "jsonl", "floip": "zip"}[asked.format]
    return f"{guide.id}-{kind}-{span}{extra}.{extension}"


async def export(visit: Visit) -> web.StreamResponse:
    asked = Asked.read(visit.request.query)
    loaded = visit.services.library.get(asked.guide)
    since, until = day_of(asked.since), day_of(asked.until)

    def refuse(problem: str, field: str) -> Awaitable[web.Response]:
        return page(visit, status=400, asked=asked, problem=visit.t(problem), problem_field=field)

    if loaded is None or loaded.guide is None:
        return await refuse("export_no_guide", "guide")
    if asked.format not in FORMATS:
        return await refuse("export_no_format", "format")
    if (asked.since and since is None) or (asked.until and until is None):
        return await refuse(
            "export_bad_date", "since" if asked.since and since is None else "until"
        )
    if since and until and since > until:
        return await refuse("export_dates_backwards", "until")
    if asked.sensitive and not visit.can(ADMIN):
        return visit.render("refused.html", status=403, reason="refused_role")
    guide = loaded.guide
    zone = visit.services.timezone
    rows = exports.answers(
        visit.services.storage, guide,
        since=start_of(since, zone) if since else None,
        until=start_of(until + timedelta(days=1), zone) if until else None,
        include_sensitive=asked.sensitive,
        min_group=visit.services.min_group if asked.min_group else None,
        by_run=asked.format == "wide",
    )  # fmt: skip
    name = file_name(guide, asked, since, until)
    await visit.audit("exported", f"{name} (minimum group {'on' if asked.min_group else 'off'}, "
                                  f"sensitive {'included' if asked.sensitive else 'left out'})")  # fmt: skip
    response = await start_download(visit, name, TYPES[asked.format])
    if asked.format == "floip":
        await stream_floip(visit, rows, guide, response, asked.sensitive, asked.min_group)
    else:
        await stream_text(rows, guide, asked.format, response, asked.sensitive, asked.min_group)
    await response.write_eof()
    return response


async def start_download(visit: Visit, name: str, content_type: str) -> web.StreamResponse:
    """Headers sent now (a stream's can't change later), the console's own among them."""
    response = web.StreamResponse(headers={**SECURITY_HEADERS, "Cache-Control": "no-store",
                                           "Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
    response.content_type = content_type
    if content_type.startswith("text/") or content_type.endswith("ndjson"):
        response.charset = "utf-8"
    await response.prepare(visit.request)
    return response


async def sending(
    rows: AsyncIterator[exports.Answer], take: Callable[[], bytes], response: web.StreamResponse
) -> AsyncIterator[exports.Answer]:
    """The rows, passed on to a writer; whenever it has written CHUNK bytes or so, they go
    out (and a slow reader holds the next page of the database back)."""
    async for row in rows:
        yield row
        chunk = take()
        if chunk:
            await response.write(chunk)


class _Spool(io.StringIO):
    """What a text writer has written and not yet sent."""

    def take(self, at_least: int | None = None) -> bytes:
        if self.tell() < (CHUNK if at_least is None else at_least):
            return b""
        text = self.getvalue()
        self.seek(0)
        self.truncate()
        return text.encode("utf-8")


async def stream_text(
    rows: AsyncIterator[exports.Answer], guide: Guide, kind: str, response: web.StreamResponse,
    include_sensitive: bool, public: bool,
) -> None:  # fmt: skip
    spool = _Spool()
    flowing = sending(rows, spool.take, response)
    if kind == "jsonl":
        await exports.write_jsonl(flowing, spool)
    elif kind == "wide":
        await exports.write_wide_csv(flowing, guide, spool, include_sensitive, public)
    else:
        await exports.write_csv(flowing, spool)
    await response.write(spool.take(0))


class _ByteSpool(io.RawIOBase):
    """Where the zip is written: it can't seek back (the zip then puts each file's sizes
    after its data), and what was written is taken from it and sent."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.size += len(chunk)
        return len(chunk)

    def take(self, at_least: int | None = None) -> bytes:
        if self.size < (CHUNK if at_least is None else at_least):
            return b""
        taken = b"".join(self.parts)
        self.parts, self.size = [], 0
        return taken


async def stream_floip(
    visit: Visit,
    rows: AsyncIterator[exports.Answer],
    guide: Guide,
    response: web.StreamResponse,
    include_sensitive: bool,
    public: bool,
) -> None:
    """A zip holding the package's folder: datapackage.json, then its data file, written
    as the rows come (as `kitchen-table export --format floip` writes the folder)."""
    folder = f"{guide.id}-floip"
    data_file = f"{guide.id}-responses.json"
    descriptor = exports.floip_descriptor(guide, data_file, visit.now, visit.language,
                                          include_sensitive, public)  # fmt: skip
    spool = _ByteSpool()
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.writestr(f"{folder}/datapackage.json",
                         json.dumps(descriptor, indent=2, ensure_ascii=False))  # fmt: skip
        # force_zip64: the data file's size isn't known until it is written.
        with package.open(f"{folder}/{data_file}", "w", force_zip64=True) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
            await exports.write_floip_rows(sending(rows, spool.take, response), text)
            text.flush()
            text.detach()  # the zip closes its own file
    await response.write(spool.take(0))


# The digest archive ----------------------------------------------------------------------

DIGEST_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


async def kept_digest(visit: Visit) -> web.StreamResponse:
    """A weekly digest the bot sent, made now: opened in the browser, or downloaded."""
    day = day_of(visit.request.match_info["day"])
    archive = visit.services.digest_archive
    kept = await archive.page(day, visit.language) if day is not None and archive else None
    if kept is None:
        raise web.HTTPNotFound()
    return await digest_response(visit, kept, f"digest-{day}.html")


async def made_digest(visit: Visit) -> web.StreamResponse:
    """Any week's digest, made now from what is stored (the minimum group kept)."""
    ending = day_of(str(visit.request.query.get("week_ending", "")))
    digests = visit.services.digests
    if ending is None or digests is None:
        typed = str(visit.request.query.get("week_ending", ""))[:40]
        return await page(visit, status=400, week_ending=typed,
                          digest_problem=visit.t("export_bad_date"))  # fmt: skip
    until = start_of(ending + timedelta(days=1), visit.services.timezone)
    made = await digests.page(until - timedelta(days=7), until, visit.language)
    return await digest_response(visit, made, f"digest-week-to-{ending}.html")


async def digest_response(visit: Visit, text: str, name: str) -> web.Response:
    download = bool(visit.request.query.get("download"))
    await visit.audit("digest_downloaded" if download else "digest_opened", name)
    disposition = "attachment" if download else "inline"
    headers = {
        "Content-Disposition": f'{disposition}; filename="{name}"',
        # The digest page is one self-contained file styled inline (it is mailed and kept
        # as it is); it runs no script, and nothing it shows can load anything.
        "Content-Security-Policy": DIGEST_POLICY,
    }
    return web.Response(text=text, content_type="text/html", charset="utf-8", headers=headers)
