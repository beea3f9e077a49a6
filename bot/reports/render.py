"""Reports for people (a gathering's status and summary), rendered from jinja2 templates.

One template per report serves every target: the environment for each target
(Telegram HTML, Slack mrkdwn, plain text) escapes every value on its way out,
and gives the template `b` (bold), `i` (italic) and `bar` in that target's
markup. Words come from the phrasebook, so reports speak every shipped language.
Templates can be overridden from a folder (`KT_TEMPLATES_DIR`).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from bot.flows.phrases import Phrasebook
from bot.markup import slack_escape
from bot.reports import charts

BUILTIN = Path(__file__).parent / "templates"
FORMATS = ("html", "mrkdwn", "text")  # what chats show: Telegram, Slack, a terminal
DOCUMENTS = ("md", "page")  # files: Markdown, and a whole HTML page
BAR_WIDTH = 10

# "&" too: "&copy;" or "&rlm;" typed in a quote showed as "©" or as an invisible mark.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~#&])")
# What starts a list item at a line's start ("- x", "+ x", "1. x", "1) x"): escaped at a
# value's start as CommonMark allows (a backslash before the "-" or the "."), never before
# a digit, where the backslash would show ("2.5 or more" stays as it is).
_MARKDOWN_LEAD = re.compile(r"^(\s*)(?:([-+])|(\d+)([.)]))(?=\s|$)")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def _markdown(text: str) -> str:
    escaped = _MARKDOWN.sub(r"\\\1", text)
    return _MARKDOWN_LEAD.sub(
        lambda m: m[1] + (f"\\{m[2]}" if m[2] else f"{m[3]}\\{m[4]}"), escaped
    )


def _one_line(text: str) -> str:
    """A value on the line the template puts it on: a quote's line breaks became lines of
    a report's own ("- Completion: 100%", a figure the bot never gave; found by review)."""
    return _LINE_BREAKS.sub(" ", text) if "\n" in text or "\r" in text else text


_ESCAPE: dict[str, Callable[[str], str]] = {
    "html": lambda s: html.escape(s, quote=False),
    "mrkdwn": slack_escape,
    "text": lambda s: s,
    "md": _markdown,
    "page": lambda s: html.escape(s, quote=True),
}
_BOLD = {"html": "<b>{}</b>", "mrkdwn": "*{}*", "text": "{}", "md": "**{}**", "page": "<b>{}</b>"}
_ITALIC = {"html": "<i>{}</i>", "mrkdwn": "_{}_", "text": "{}", "md": "_{}_", "page": "<i>{}</i>"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _bar(count: int, total: int) -> str:
    filled = min(BAR_WIDTH, round(BAR_WIDTH * count / total)) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


class Reports:
    def __init__(self, phrases: Phrasebook, override: Path | None = None) -> None:
        self.phrases = phrases
        folders = [str(override)] if override else []
        loader = jinja2.FileSystemLoader([*folders, str(BUILTIN)])
        self._envs = {fmt: self._environment(fmt, loader) for fmt in FORMATS + DOCUMENTS}

    @staticmethod
    def _environment(fmt: str, loader: jinja2.BaseLoader) -> jinja2.Environment:
        escape = _ESCAPE[fmt]

        def finalize(value: Any) -> str:
            # Markup is what `b` and `i` drew (already escaped inside); all else is data.
            return value if isinstance(value, Markup) else escape(_one_line(str(value)))

        def styled(pattern: str) -> Callable[[Any], Markup]:
            return lambda text: Markup(pattern.format(escape(_one_line(str(text)))))

        env = jinja2.Environment(
            loader=loader,
            autoescape=False,
            finalize=finalize,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        # A line of a list, and of a list within it: Markdown needs "- " to keep lines
        # apart (it joins plain lines into one paragraph); chats draw lines as they are.
        item, sub = ("- ", "  - ") if fmt == "md" else ("", "  • ")
        env.globals.update(b=styled(_BOLD[fmt]), i=styled(_ITALIC[fmt]), bar=_bar, number=_number,
                           item=Markup(item), sub=Markup(sub))  # fmt: skip
        return env

    def render(self, name: str, fmt: str, language: str, **data: Any) -> str:
        template = self._envs[fmt].get_template(f"{name}.j2")

        def t(key: str, **params: Any) -> str:
            return self.phrases.text(language, key, **params)

        report = data.get("d", data.get("s"))  # a digest, or a gathering's summary
        smallest = getattr(report, "min_group", 5)

        def n(count: Any) -> str:
            """A count, or "fewer than 5" when it came from too few people to show."""
            return t("digest_fewer", min=smallest) if count.value is None else str(count.value)

        def change(count: Any) -> str:
            if count.value is None or count.before is None:
                return ""
            delta = count.value - count.before
            return f" ({'+' if delta >= 0 else '−'}{abs(delta)})"

        def percent(rate: float | None) -> str:
            return "–" if rate is None else f"{round(100 * rate)}%"

        def label(row: Any) -> str:
            """A breakdown row's words: its options or points, or a number's range, whose
            open ends read "under ..." and "... or more" (bot/reports/min_group.py, rule 4)."""
            span = getattr(row, "span", None)
            if span is None:
                return str(row.label)
            if span.low is None:
                return t("range_under", high=_number(span.high))
            if span.high is None:
                return t("range_from", low=_number(span.low))
            high = span.high - 1 if span.whole else span.high  # whole numbers: 40–49
            return t("range_between", low=_number(span.low), high=_number(high))

        def chart(rows: Any, title: str) -> Markup:
            """A breakdown's rows as horizontal bars (inline SVG, `bot/reports/charts.py`:
            the console's results draw the same); only for the HTML page."""
            bars = [charts.Bar(label(r), r.count.value, n(r.count) + change(r.count)) for r in rows]
            return charts.bars(bars, title=title)

        return template.render(
            t=t, n=n, change=change, percent=percent, day=lambda d: f"{d:%Y-%m-%d}",
            label=label, chart=chart, language=language, **data,
        )  # fmt: skip

    def every_format(self, name: str, language: str, **data: Any) -> dict[str, str]:
        return {fmt: self.render(name, fmt, language, **data) for fmt in FORMATS}
