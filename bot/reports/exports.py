"""Open-data exports of a guide's answers: CSV (long or wide), JSON Lines, and a FLOIP
Flow Results package.

Exports stream: answers are read a page at a time and written as they come, so
memory stays flat however many there are. They carry pseudonyms, never addresses;
`sensitive` steps are left out unless asked for; answers from people who were
forgotten never appear. For a public release, `min_group` holds back what could
point to someone, counted in the export's dates: a choice, a point of a scale or a
number that fewer than that many people gave (an option of a choose-many answer is
taken out of it), and written answers but to `quotable` questions that many people
answered, as the public report does. A CSV cell that a spreadsheet
would run as a formula starts with a ' (see `_cell`); JSON Lines and the FLOIP package
carry answers exactly as stored.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bot.flows.guide import Guide, Step, StepKind
from bot.flows.scrub import strip_invisible
from bot.flows.text import localize
from storage.protocol import ReportStore

PAGE = 2000
# An export with no dates asks for everything.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
# What a spreadsheet takes as the start of a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\x00")
LONG_FIELDS = ["run", "participant", "step", "kind", "answer", "answered_at", "guide_version",
               "language"]  # fmt: skip
FLOIP_FIELDS = [
    ("timestamp", "datetime"),
    ("row_id", "string"),
    ("contact_id", "string"),
    ("session_id", "string"),
    ("question_id", "string"),
    ("response", "any"),
    ("response_metadata", "object"),
]
FLOIP_TYPES = {
    StepKind.CHOOSE: "select_one",
    StepKind.CHOOSE_MANY: "select_many",
    StepKind.SCALE: "numeric",
    StepKind.NUMBER: "numeric",
    StepKind.ASK: "text",
}


@dataclass(frozen=True)
class Answer:
    answered_at: datetime
    run: str
    step: str
    guide_version: int
    participant: str
    kind: str
    value: Any
    language: str


async def answers(
    storage: ReportStore,
    guide: Guide,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    include_sensitive: bool = False,
    min_group: int | None = None,
    by_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> AsyncIterator[Answer]:
    """Every answer to the guide that may be exported, page by page."""
    public = min_group is not None
    shown = {s.id for s in exported_steps(guide, include_sensitive, public)}
    known = {s.id for s in guide.questions}
    rare: set[tuple[str, Any]] = set()
    if min_group is not None:
        # Counted over the export's own dates: what five gave in all, one may have given
        # in these (found by review).
        low, high = since or EARLIEST, until or LATEST
        # Quotes come from questions at least k people answered, as in every report.
        quotable = [s.id for s in guide.questions if s.kind is StepKind.ASK and s.id in shown]
        shown -= {c.step for c in await storage.answer_people(guide.id, low, high, quotable)
                  if c.count < min_group}  # fmt: skip
        rare = {(c.step, json.loads(c.value))
                for c in await storage.choice_counts(guide.id, low, high)
                if c.people < min_group}  # fmt: skip
    after: tuple[str, str, str] | None = None
    count = 0
    while True:
        page = await storage.export_rows(guide.id, since, until, after, PAGE, by_run)
        if not page:
            return
        for row in page:
            # A public release carries only the guide's current questions: a written step
            # an earlier version had is not known to be quotable.
            if row.step not in shown and (public or row.step in known):
                continue
            value = json.loads(row.value)
            if rare and isinstance(value, list):
                value = [option for option in value if (row.step, option) not in rare]
                if not value:
                    continue
            elif rare and (row.step, value) in rare:
                continue
            count += 1
            yield Answer(
                datetime.fromisoformat(row.answered_at),
                row.run_id,
                row.step,
                row.guide_version,
                row.participant,
                row.kind,
                value,
                row.language,
            )
        last = page[-1]
        after = ((last.run_id, last.step, last.answered_at) if by_run
                 else (last.answered_at, last.run_id, last.step))  # fmt: skip
        if progress is not None:
            progress(count)


def exported_steps(guide: Guide, include_sensitive: bool, public: bool) -> list[Step]:
    """The questions an export carries, the same for its rows, a wide CSV's columns and a
    FLOIP package's schema: `sensitive` ones only when asked for, and in a public release
    (a minimum group) written answers only to `quotable` questions."""
    return [s for s in guide.questions
            if (include_sensitive or not s.sensitive)
            and not (public and s.kind is StepKind.ASK and not s.quotable)]  # fmt: skip


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet shows as it is, never runs.

    A cell beginning with = + - @, a tab, a carriage return or a NUL is read as a
    formula by Excel, LibreOffice and Google Sheets (=HYPERLINK(...) sends data away,
    +cmd|... runs a program), so it gets a ' in front, as OWASP advises: the
    spreadsheet hides the quote and shows the text. Numbers stay numbers: -3 from a
    number question is minus three to a spreadsheet, not a formula. Invisible
    characters that older versions stored are dropped first, so none hides the start.
    """
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    text = strip_invisible(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def write_csv(rows: AsyncIterator[Answer], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(LONG_FIELDS)
    count = 0
    async for a in rows:
        writer.writerow(map(_cell, [a.run, a.participant, a.step, a.kind, a.value,
                                    a.answered_at.isoformat(), a.guide_version, a.language]))  # fmt: skip
        count += 1
    return count


async def write_wide_csv(
    rows: AsyncIterator[Answer], guide: Guide, out: TextIO, include_sensitive: bool = False,
    public: bool = False,
) -> int:  # fmt: skip
    """One row per run, a column per question exported; `rows` must come grouped by run."""
    steps = [s.id for s in exported_steps(guide, include_sensitive, public)]
    writer = csv.writer(out)
    writer.writerow(map(_cell, ["run", "participant", "guide_version", "language",
                                "first_answered_at", *steps]))  # fmt: skip
    current: dict[str, Any] | None = None
    count = 0

    def flush(run: dict[str, Any]) -> None:
        writer.writerow(map(_cell, [run["run"], run["participant"], run["version"],
                                    run["language"], run["started"],
                                    *(run["answers"].get(s) for s in steps)]))  # fmt: skip

    async for a in rows:
        if current is None or current["run"] != a.run:
            if current is not None:
                flush(current)
                count += 1
            current = {"run": a.run, "participant": a.participant, "version": a.guide_version,
                       "language": a.language, "started": a.answered_at.isoformat(),
                       "answers": {}}  # fmt: skip
        current["answers"][a.step] = a.value
        current["started"] = min(current["started"], a.answered_at.isoformat())
    if current is not None:
        flush(current)
        count += 1
    return count


async def write_jsonl(rows: AsyncIterator[Answer], out: TextIO) -> int:
    count = 0
    async for a in rows:
        record = {"run": a.run, "participant": a.participant, "step": a.step, "kind": a.kind,
                  "answer": a.value, "answered_at": a.answered_at.isoformat(),
                  "guide_version": a.guide_version, "language": a.language}  # fmt: skip
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


def floip_descriptor(
    guide: Guide, data_file: str, now: datetime, language: str, include_sensitive: bool = False,
    public: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The `datapackage.json` of a Flow Results package (FLOIP, version 1.0.0)."""
    questions: dict[str, Any] = {}
    for step in exported_steps(guide, include_sensitive, public):
        options: dict[str, Any] = {}
        if step.kind in (StepKind.CHOOSE, StepKind.CHOOSE_MANY):
            options["choices"] = [o.id for o in step.option_list()]
        elif step.kind is StepKind.SCALE:
            options["range"] = list(step.scale_range())
        elif step.kind is StepKind.NUMBER and step.range is not None:
            options["range"] = list(step.range)
        questions[step.id] = {
            "type": FLOIP_TYPES[step.kind],
            "label": localize(step.text, language, guide.default_language),
            "type_options": options,
        }
    stamp = now.astimezone(UTC).isoformat()
    return {
        "profile": "flow-results-package",
        "flow_results_specification_version": "1.0.0",
        "name": f"{guide.id}-v{guide.version}",
        "id": str(uuid.uuid4()),
        "title": localize(guide.title, language, guide.default_language),
        "created": stamp,
        "modified": stamp,
        "resources": [
            {
                "name": f"{guide.id}-responses",
                "path": data_file,
                "mediatype": "application/json",
                "encoding": "utf-8",
                "format": "json",
                "dialect": {"header": False},  # rows only: the fields are in the schema
                "schema": {
                    "fields": [{"name": name, "type": kind} for name, kind in FLOIP_FIELDS],
                    "questions": questions,
                },
            }
        ],
    }


async def write_floip(
    rows: AsyncIterator[Answer],
    guide: Guide,
    folder: Path,
    now: datetime,
    language: str = "en",
    include_sensitive: bool = False,
    public: bool = False,
) -> int:
    """A Flow Results package in `folder`: datapackage.json and its data file."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    data_file = f"{guide.id}-responses.json"
    descriptor = floip_descriptor(guide, data_file, now, language, include_sensitive, public)
    # A command-line export has nothing else to do meanwhile: plain blocking writes.
    descriptor_text = json.dumps(descriptor, indent=2, ensure_ascii=False)
    (folder / "datapackage.json").write_text(descriptor_text)
    with (folder / data_file).open("w", encoding="utf-8") as out:
        return await write_floip_rows(rows, out)


async def write_floip_rows(rows: AsyncIterator[Answer], out: TextIO) -> int:
    """A Flow Results package's data file (a JSON array of rows), written as rows come:
    `write_floip` puts it in a folder, the console streams it into a zip."""
    count = 0
    out.write("[")
    async for a in rows:
        row = [a.answered_at.astimezone(UTC).isoformat(), f"{a.run}:{a.step}", a.participant,
               a.run, a.step, a.value, {"guide_version": a.guide_version,
                                         "language": a.language}]  # fmt: skip
        out.write(("," if count else "") + "\n" + json.dumps(row, ensure_ascii=False))
        count += 1
    out.write("\n]\n")
    return count
