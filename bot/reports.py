"""Reports for people (a gathering's status and summary), rendered from jinja2 templates.

One template per report serves every target: the environment for each target
(Telegram HTML, Slack mrkdwn, plain text) escapes every value on its way out,
and gives the template `b` (bold), `i` (italic) and `bar` in that target's
markup. Words come from the phrasebook, so reports speak every shipped language.
Templates can be overridden from a folder (`KT_TEMPLATES_DIR`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from bot.channels.slack_format import escape as slack_escape
from bot.flows.phrases import Phrasebook

BUILTIN = Path(__file__).parent / "templates"
FORMATS = ("html", "mrkdwn", "text")
BAR_WIDTH = 10

_ESCAPE: dict[str, Callable[[str], str]] = {
    "html": lambda s: html.escape(s, quote=False),
    "mrkdwn": slack_escape,
    "text": lambda s: s,
}
_BOLD = {"html": "<b>{}</b>", "mrkdwn": "*{}*", "text": "{}"}
_ITALIC = {"html": "<i>{}</i>", "mrkdwn": "_{}_", "text": "{}"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _bar(count: int, total: int) -> str:
    filled = round(BAR_WIDTH * count / total) if total else 0
    return "█" * filled + "░" * (BAR_WIDTH - filled)


class Reports:
    def __init__(self, phrases: Phrasebook, override: Path | None = None) -> None:
        self.phrases = phrases
        folders = [str(override)] if override else []
        loader = jinja2.FileSystemLoader([*folders, str(BUILTIN)])
        self._envs = {fmt: self._environment(fmt, loader) for fmt in FORMATS}

    @staticmethod
    def _environment(fmt: str, loader: jinja2.BaseLoader) -> jinja2.Environment:
        escape = _ESCAPE[fmt]

        def finalize(value: Any) -> str:
            # Markup is what `b` and `i` drew (already escaped inside); all else is data.
            return value if isinstance(value, Markup) else escape(str(value))

        def styled(pattern: str) -> Callable[[Any], Markup]:
            return lambda text: Markup(pattern.format(escape(str(text))))

        env = jinja2.Environment(
            loader=loader,
            autoescape=False,
            finalize=finalize,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        env.globals.update(b=styled(_BOLD[fmt]), i=styled(_ITALIC[fmt]), bar=_bar, number=_number)
        return env

    def render(self, name: str, fmt: str, language: str, **data: Any) -> str:
        template = self._envs[fmt].get_template(f"{name}.j2")
        return template.render(t=lambda key, **p: self.phrases.text(language, key, **p), **data)

    def every_format(self, name: str, language: str, **data: Any) -> dict[str, str]:
        return {fmt: self.render(name, fmt, language, **data) for fmt in FORMATS}
