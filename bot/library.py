"""The guides the bot offers, read from the guides folder, plus any pinned older versions."""

from __future__ import annotations

from pathlib import Path

from bot.flows.loader import MAX_GUIDE_BYTES, LoadedGuide, Problem, parse_guide, too_big


def _refused(path: Path, message: str) -> LoadedGuide:
    return LoadedGuide("", str(path), None, [Problem(str(path), None, None, message)])


def read_guide_file(path: Path) -> LoadedGuide:
    """Read and check one guide file; a file that can't be read is a problem, not a crash.

    An oversized file is refused from its size alone, before a byte is read, so a
    50 MB file costs the bot's start nothing; the read itself stops past the limit
    too, for a file that grows meanwhile or reports no size (a pipe).
    """
    try:
        refusal = too_big(path.stat().st_size)
        if refusal is not None:
            return _refused(path, refusal)
        with path.open("rb") as file:
            raw = file.read(MAX_GUIDE_BYTES + 1)
        refusal = too_big(len(raw))
        if refusal is not None:
            return _refused(path, refusal)
        # As read_text would: universal newlines, so the text (and its hash) is unchanged.
        source = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except (OSError, UnicodeDecodeError) as error:
        reason = "it is not UTF-8 text" if isinstance(error, UnicodeDecodeError) else error.strerror
        return _refused(path, f"can't read: {reason}")
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
