"""What storage raises when it is failing (a full or read-only disk, a locked or damaged
file), as against a bug in one message: whoever meets it says "try again later" (a
webhook answers 503, a scheduled prompt's occurrence is taken up again).

Composed from each backend's own errors, kept next to the backend, so that nothing
outside storage names a database driver. A backend on another database adds its
driver's errors here.
"""

from __future__ import annotations

from storage.sqlite.errors import SQLITE_FAILURES

STORAGE_FAILURES: tuple[type[Exception], ...] = (OSError, *SQLITE_FAILURES)
