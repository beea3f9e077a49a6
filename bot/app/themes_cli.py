"""`kitchen-table themes`: a free-text question's themes, and the coordinator's codebook.

    kitchen-table themes --guide ID --step STEP [--since 7d] [--format text|md|json]
    kitchen-table themes rename --guide ID --step STEP THEME NAME
    kitchen-table themes merge  --guide ID --step STEP KEEP GONE
    kitchen-table themes examples --guide ID --step STEP THEME
    kitchen-table themes split  --guide ID --step STEP THEME ANSWER... [--name NAME]

An edit is made to the themes of the same period (`--since`, a week by default) and
saved in the codebook, which the next digest uses. Everything goes through
`bot/reports/themes/service.py`, as the console does; words come from the phrasebook.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime
from typing import TextIO

from bot.app.usage import UsageError
from bot.flows.duration import parse_since
from bot.flows.phrases import Phrasebook
from bot.library import GuideLibrary
from bot.reports.render import Reports
from bot.reports.themes.codebook import CodebookError
from bot.reports.themes.model import QuestionThemes, Themes
from bot.reports.themes.service import ThemeService, without_answers
from storage.protocol import ReportStore

ABOUT = "what people wrote to a question, grouped into themes; correct the codebook"
FORMATS = {"text": "text", "md": "md"}


def add_parser(themes: argparse.ArgumentParser) -> None:
    """The `themes` command's options and its codebook actions."""

    def where(parser: argparse.ArgumentParser, top: bool) -> None:
        # Given before or after the action; an action's own copy never hides the first.
        hidden = {} if top else {"default": argparse.SUPPRESS}
        parser.add_argument("--guide", metavar="ID", help="the guide's id", **hidden)  # type: ignore[arg-type]
        parser.add_argument("--step", metavar="STEP", help="the free-text question's id",
                            **hidden)  # type: ignore[arg-type]  # fmt: skip
        parser.add_argument("--since", metavar="DATE", help="a date, or a duration back from "
                            "now such as 7d (default 7d)", **({"default": "7d"} if top else hidden))  # type: ignore[arg-type]  # fmt: skip

    where(themes, True)
    themes.add_argument("--format", choices=["text", "md", "json"], default="text")
    themes.add_argument("--lang", default="en", choices=["en", "es"], help="language of the words")
    actions = themes.add_subparsers(dest="themes_command", metavar="ACTION")
    rename = actions.add_parser("rename", help="give a theme a name of your own")
    rename.add_argument("theme", help="the theme's id, as listed")
    rename.add_argument("name", nargs="+", help="its new name")
    merge = actions.add_parser("merge", help="join a theme into another, which keeps its name")
    merge.add_argument("keep", help="the theme that stays")
    merge.add_argument("gone", help="the theme that joins it")
    examples = actions.add_parser("examples", help="a theme's answers, to choose from for split")
    examples.add_argument("theme")
    split = actions.add_parser("split", help="answers chosen from a theme start one of their own")
    split.add_argument("theme")
    split.add_argument("answers", nargs="+", metavar="ANSWER", help="answer ids, from examples")
    split.add_argument("--name", help="what to call the new theme")
    for action in (rename, merge, examples, split):
        where(action, False)


async def run(
    storage: ReportStore, library: GuideLibrary, reports: Reports, args: argparse.Namespace, *,
    now: datetime, min_group: int, out: TextIO,
) -> int:  # fmt: skip
    """Run `kitchen-table themes ...`: 0 done, 2 for something that can't be done (said why)."""
    phrases = reports.phrases
    language = getattr(args, "lang", "en")
    if not args.guide or not args.step:
        raise UsageError("themes: give --guide ID and --step STEP (the free-text question)")
    try:
        since = parse_since(args.since, now)
    except ValueError as error:
        raise UsageError(f"--since: {error}") from None
    service = ThemeService(storage, library, min_group=min_group)
    action = getattr(args, "themes_command", None)
    try:
        if action == "examples":
            for example in await service.examples(args.guide, args.step, args.theme, since, now):
                out.write(f"{example.id}  {example.text}\n")
            return 0
        if action == "rename":
            found = await service.rename(args.guide, args.step, args.theme, " ".join(args.name),
                                         since, now)  # fmt: skip
        elif action == "merge":
            found = await service.merge(args.guide, args.step, args.keep, args.gone, since, now)
        elif action == "split":
            found = await service.split(args.guide, args.step, args.theme, args.answers,
                                        args.name, since, now)  # fmt: skip
        else:
            found = await service.themes(args.guide, args.step, since, now)
    except CodebookError as error:
        raise UsageError(phrases.text(language, error.key, **error.params)) from None
    if action is not None:
        out.write(phrases.text(language, "themes_saved", guide=args.guide, step=args.step) + "\n")
    _show(reports, phrases, service, args, found, language, out)
    return 0


def _show(
    reports: Reports, phrases: Phrasebook, service: ThemeService, args: argparse.Namespace,
    found: Themes, language: str, out: TextIO,
) -> None:  # fmt: skip
    """The themes as text, Markdown or JSON, with their ids (which the edits name)."""
    guide, step = service.question(args.guide, args.step)
    from bot.flows.text import localize

    question = localize(step.text, language, guide.default_language)
    if args.format == "json":
        shown = without_answers(found)
        out.write(json.dumps({
            "guide": args.guide, "step": args.step, "question": question,
            "min_group": found.min_group, "other": found.other, "coded": found.coded,
            "themes": [{key: value for key, value in asdict(t).items()
                        if key not in ("answers", "centre")} | {"label": t.label}
                       for t in shown.themes],
        }, ensure_ascii=False, indent=2) + "\n")  # fmt: skip
        return
    if not found.themes:
        out.write(phrases.text(language, "themes_none", min=found.min_group) + "\n")
    text = reports.render("themes_list", FORMATS[args.format], language,
                          qt=QuestionThemes(args.step, question, found), smallest=found.min_group)  # fmt: skip
    out.write(text.strip("\n") + "\n")
