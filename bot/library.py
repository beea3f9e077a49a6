"""The guides the bot offers, read from the guides folder, plus any pinned older versions."""

from __future__ import annotations

from pathlib import Path

from bot.flows.loader import LoadedGuide, Problem, parse_guide


def read_guide_file(path: Path) -> LoadedGuide:
    """Read and check one guide file; a file that can't be read is a problem, not a crash."""
    try:
        source = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = "it is not UTF-8 text" if isinstance(error, UnicodeDecodeError) else error.strerror
        return LoadedGuide(
            "", str(path), None, [Problem(str(path), None, None, f"can't read: {reason}")]
        )
    return parse_guide(source, str(path))


def guide_files(paths: list[Path]) -> list[Path]:
    """Expand folders into the YAML files they hold, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            found.append(path)
    return found


class GuideLibrary:
    """Valid guides by id (the current version) and by hash (every version seen)."""

    def __init__(self) -> None:
        self._current: dict[str, LoadedGuide] = {}
        self._by_hash: dict[str, LoadedGuide] = {}
        self.problems: list[Problem] = []

    @classmethod
    def from_paths(cls, paths: list[Path]) -> GuideLibrary:
        library = cls()
        for path in guide_files(paths):
            library.add(read_guide_file(path))
        return library

    def add(self, loaded: LoadedGuide, *, current: bool = True) -> None:
        if loaded.guide is None:
            self.problems.extend(loaded.problems)
            return
        self._by_hash[loaded.hash] = loaded
        if current:
            self._current[loaded.guide.id] = loaded

    def get(self, guide_id: str) -> LoadedGuide | None:
        return self._current.get(guide_id)

    def by_hash(self, guide_hash: str) -> LoadedGuide | None:
        return self._by_hash.get(guide_hash)

    def all(self) -> list[LoadedGuide]:
        return sorted(self._current.values(), key=lambda loaded: loaded.file)
