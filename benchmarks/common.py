"""Shared by the benchmarks: the machine's description, medians, and RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit or '?'}, "
        f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def publish(title: str, body: str, notes: str = "") -> None:
    """Print a result table and append it, with the machine, to RESULTS.md
    (unless KT_BENCH_DRY is set)."""
    text = f"## {title}\n\n{machine()}\n\n{body}\n" + (f"\n{notes}\n" if notes else "")
    print(text)
    if os.environ.get("KT_BENCH_DRY"):
        return  # a trial run (e.g. while other work shares the machine): print only
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write("\n" + text)
