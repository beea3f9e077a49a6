"""What a results page (the console's and the public report) needs besides the figures:
the view its query string asks for (`read_view`), and the words and charts for figures
(`ResultsView`), given to templates as `show`.

A view is dates and step ids only, nothing that names a person. Dates are whole days in
the console's time zone; `to` is included. Anything that can't be read falls back to
the last four weeks, and the page says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup

from bot.reports import charts
from bot.reports.breakdown import Breakdown, Count, Row

DEFAULT_DAYS = 28  # the last four weeks, today included
LONGEST = timedelta(days=3660)  # ten years: a longer range is a typing slip


@dataclass(frozen=True)
class View:
    start: date  # the first day shown
    end: date  # the last day shown (included)
    since: datetime  # start's midnight, in the console's time zone
    until: datetime  # the midnight after `end`
    question: str | None = None  # broken down...
    by: str | None = None  # ...by this choice question
    unread: bool = False  # the dates asked for couldn't be read: the default is shown

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def query(self) -> dict[str, str]:
        """The query string that gives this view again: its permalink."""
        found = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        if self.question and self.by:
            found |= {"q": self.question, "by": self.by}
        return found


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if value else None
    except ValueError:
        return None


def read_view(query: Mapping[str, str], now: datetime, timezone: str) -> View:
    """The view a query string asks for: `from`, `to` (YYYY-MM-DD), `q` and `by`."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    start, end = _day(query.get("from")), _day(query.get("to"))
    asked = bool(query.get("from") or query.get("to"))
    end = end or today
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    unread = asked and (
        (bool(query.get("from")) and _day(query.get("from")) is None)
        or (bool(query.get("to")) and _day(query.get("to")) is None)
        or start > end or end - start > LONGEST
    )  # fmt: skip
    if unread:
        end, start = today, today - timedelta(days=DEFAULT_DAYS - 1)
    question = (query.get("q") or "").strip() or None
    by = (query.get("by") or "").strip() or None
    return View(
        start, end,
        datetime.combine(start, time(), zone), datetime.combine(end + timedelta(days=1), time(), zone),
        question if by else None, by if question else None, unread,
    )  # fmt: skip


class ResultsView:
    """Figures in words and charts, in the reader's language (`t`)."""

    def __init__(self, t: Callable[..., str], min_group: int) -> None:
        self.t = t
        self.min_group = min_group

    def people(self, value: int | None) -> str:
        return self.t("fewer_than", min=self.min_group) if value is None else str(value)

    def count(self, count: Count) -> str:
        return self.people(count.value)

    def change(self, count: Count) -> str:
        """The change from the period before ("+3", "−2"), or "" when it can't be shown."""
        if count.value is None or count.before is None:
            return ""
        delta = count.value - count.before
        return f"{'+' if delta >= 0 else '−'}{abs(delta)}"

    def label(self, row: Row) -> str:
        """A row's words: its options or points, or a number's range, whose open ends
        read "under ..." and "... or more" (bot/reports/min_group.py, rule 4)."""
        span = row.span
        if span is None:
            return row.label
        if span.low is None:
            return self.t("range_under", high=_number(span.high))
        if span.high is None:
            return self.t("range_from", low=_number(span.low))
        high = span.high - 1 if span.whole else span.high  # whole numbers: 40–49
        return self.t("range_between", low=_number(span.low), high=_number(high))

    def chart(self, shown: Breakdown, kind: str, title: str) -> Markup:
        """Bars for a choice question, columns (a distribution) for a scale or number."""
        items = []
        for row in shown.rows:
            change = self.change(row.count)
            text = self.count(row.count) + (f" ({change})" if change else "")
            items.append(charts.Bar(self.label(row), row.count.value, text))
        title = self.t("results_chart", question=title)
        if kind in ("scale", "number"):
            return charts.columns(items, title=title)
        return charts.bars(items, title=title)

    def reached(self, rows: list[Row], title: str) -> Markup:
        items = [charts.Bar(r.label, r.count.value, self.count(r.count)) for r in rows]
        return charts.bars(items, title=title)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
