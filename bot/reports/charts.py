"""Charts as inline SVG, drawn on the server: bars for a choice question's options, columns
for the distribution of a scale's or a number's ranges.

Counts come in as they may be shown (`bot/reports/min_group.py`): a count of None
("fewer than k") is drawn as a dashed outline of the shortest bar, never as its size,
and its words say so, so colour is never the only signal. Every label is escaped here;
the result is `Markup`, safe in the console's autoescaped templates and in the digest's
page. The SVG is one image for assistive technology (`role="img"` with a label): the
figures themselves go in a table beside it, which the page draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH = 400  # the view box's width; the page scales it to fit (the console's CSS)
ROW = 40  # a horizontal bar's row: its label above, the bar below
LABEL_CHARS = 50  # a label longer than this is cut with "…" (the table has it whole)
COLUMN_HEIGHT = 100  # the tallest column of a distribution
FILL = "#7a2e0e"  # the console's accent, 8:1 on its paper
FEW = "#7a2e0e"  # the outline of a count too small to show


@dataclass(frozen=True)
class Bar:
    """One bar: its label, its count as shown (None: fewer than the minimum group), and
    the words drawn at its end ("12 (+3)", "fewer than 5")."""

    label: str
    value: int | None
    text: str


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1].rstrip() + "…"


def _svg(height: int, title: str, body: list[str]) -> Markup:
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}"'
        f' role="img" aria-label="{escape(title)}" focusable="false">'
    )
    return Markup(head + "".join(body) + "</svg>")


def bars(items: Sequence[Bar], *, title: str) -> Markup:
    """Horizontal bars, one row each, longest for the most people."""
    most = max((b.value or 0 for b in items), default=0) or 1
    span = WIDTH - 120  # room after the longest bar for its words
    body = []
    for n, bar in enumerate(items):
        top = n * ROW
        body.append(f'<text x="0" y="{top + 13}" class="chart-label">'
                    f"{escape(_cut(bar.label, LABEL_CHARS))}</text>")  # fmt: skip
        if bar.value is None:
            width = 8.0
            body.append(f'<rect x="0.5" y="{top + 18.5}" width="{width}" height="15" fill="none"'
                        f' stroke="{FEW}" stroke-dasharray="3 2"></rect>')  # fmt: skip
        else:
            width = round(span * bar.value / most, 1)
            body.append(f'<rect x="0" y="{top + 18}" width="{width}" height="16"'
                        f' fill="{FILL}"></rect>')  # fmt: skip
        body.append(f'<text x="{width + 6}" y="{top + 31}" class="chart-figure">'
                    f"{escape(bar.text)}</text>")  # fmt: skip
    return _svg(max(ROW * len(items), ROW), title, body)


def columns(items: Sequence[Bar], *, title: str) -> Markup:
    """A distribution: one column per range, in order, tallest for the most people; the
    range's words below it and its figure above."""
    count = max(len(items), 1)
    most = max((b.value or 0 for b in items), default=0) or 1
    slot = WIDTH / count
    wide = max(min(slot - 8, 80), 6)
    base = COLUMN_HEIGHT + 22  # room above the tallest column for its figure
    chars = max(int(slot / 7.5), 3)
    body = []
    for n, bar in enumerate(items):
        middle = round(slot * n + slot / 2, 1)
        left = round(middle - wide / 2, 1)
        if bar.value is None:
            height = 8.0
            body.append(f'<rect x="{left + 0.5}" y="{base - height + 0.5}" width="{wide - 1}"'
                        f' height="{height - 1}" fill="none" stroke="{FEW}"'
                        ' stroke-dasharray="3 2"></rect>')  # fmt: skip
        else:
            height = max(round(COLUMN_HEIGHT * bar.value / most, 1), 1 if bar.value else 0)
            body.append(f'<rect x="{left}" y="{base - height}" width="{wide}" height="{height}"'
                        f' fill="{FILL}"></rect>')  # fmt: skip
        body.append(f'<text x="{middle}" y="{base - height - 6}" text-anchor="middle"'
                    f' class="chart-figure">{escape(_cut(bar.text, chars))}</text>')  # fmt: skip
        body.append(f'<text x="{middle}" y="{base + 16}" text-anchor="middle"'
                    f' class="chart-label">{escape(_cut(bar.label, chars))}</text>')  # fmt: skip
    body.insert(0, f'<line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" stroke="#4a4a45"></line>')
    return _svg(base + 24, title, body)
