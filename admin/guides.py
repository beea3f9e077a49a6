"""`kitchen-table guides check|list|schema`: help guide authors get a guide right."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from bot.flows.guide import guide_json_schema
from bot.flows.text import localize
from bot.library import guide_files, read_guide_file


def check(paths: list[Path], out: TextIO) -> int:
    """Print one line per problem, then any notes; 0 when every guide is valid, else 1."""
    files = guide_files(paths)
    if not files:
        out.write(f"No guide files found in {', '.join(map(str, paths))}\n")
        return 1
    problems = 0
    ids: dict[str, str] = {}
    for path in files:
        loaded = read_guide_file(path)
        for problem in loaded.problems:
            out.write(f"{problem}\n")
            problems += 1
        for note in loaded.notes:  # worth knowing, never a reason to refuse the guide
            out.write(f"{note}\n")
        if loaded.guide is not None:
            if loaded.guide.id in ids:
                out.write(
                    f"{path}:1: the guide id '{loaded.guide.id}' is also used by "
                    f"{ids[loaded.guide.id]}; give each guide its own id\n"
                )
                problems += 1
            ids.setdefault(loaded.guide.id, str(path))
    if problems:
        out.write(f"{problems} problem{'s' if problems != 1 else ''} in {len(files)} file(s).\n")
        return 1
    out.write(f"All {len(files)} guide(s) are ready.\n")
    return 0


def list_guides(paths: list[Path], out: TextIO) -> int:
    for path in guide_files(paths):
        loaded = read_guide_file(path)
        guide = loaded.guide
        if guide is None:
            out.write(f"{path}  (has {len(loaded.problems)} problem(s): run guides check)\n")
            continue
        title = localize(guide.title, guide.default_language, guide.default_language)
        minutes = f"{guide.minutes} min" if guide.minutes else "-"
        out.write(
            f"{guide.id:<20} v{guide.version:<3} {','.join(guide.languages):<8} "
            f"{minutes:>7}  {len(guide.questions):>2} questions  {title}\n"
        )
    return 0


def schema_text() -> str:
    return json.dumps(guide_json_schema(), indent=2, ensure_ascii=False) + "\n"
