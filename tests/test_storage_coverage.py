"""Every method of every storage protocol is exercised by the per-backend suite.

Runs after the suite (tests/storage_suite.py puts it last) and reads what the
`store` fixture's recording noted: a method that no test of the suite called would
go untested on the next backend, so a method added to a protocol must come with a
test in tests/test_storage*.py that uses `store`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage_suite import (
    CALLED,
    METHODS,
    SERVED,
    SUITE_BACKENDS,
    postgres_unreachable,
    suite_files,
)

HERE = Path(__file__).resolve().parent


def whole_suite_ran(session: pytest.Session) -> str | None:
    """Why the count would mean nothing in this session (part of the suite chosen), or None."""
    options = session.config.option
    if options.keyword or options.markexpr:
        return "tests were chosen by -k or -m"
    if any("::" in str(arg) for arg in session.config.args):
        return "single tests were chosen"
    collected = {item.path for item in session.items}
    missing = [p.name for p in suite_files(HERE) if p not in collected]
    if missing:
        return f"not collected: {', '.join(missing)}"
    return None


@pytest.mark.parametrize("backend", SUITE_BACKENDS)
async def test_the_suite_calls_every_method_of_every_storage_protocol(
    request: pytest.FixtureRequest, backend: str
) -> None:
    reason = whole_suite_ran(request.session)
    if reason is not None:
        pytest.skip(f"run with the whole storage suite (tests/test_storage*.py): {reason}")
    if backend == "postgres" and (away := await postgres_unreachable()) is not None:
        pytest.skip(f"the suite's PostgreSQL tests did not run: {away}")
    wanted = len(
        [
            item
            for item in request.session.items
            if "store" in getattr(item, "fixturenames", ())
            and getattr(item, "callspec", None) is not None
            and item.callspec.params.get("store") == backend  # type: ignore[attr-defined]
        ]
    )
    assert SERVED[backend] == wanted, "some suite tests did not run"
    assert sorted(METHODS - CALLED[backend]) == []


def test_the_recording_knows_every_concern() -> None:
    # Spot checks that the enumeration reads the protocols, not a list kept by hand.
    assert {"claim_due", "records_of", "mine", "answer_text_pages", "open", "close"} <= METHODS
    assert {"upgrade", "schema_state"} <= METHODS
    assert not any(name.startswith("_") for name in METHODS)
