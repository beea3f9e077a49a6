"""What asyncpg raises when PostgreSQL is failing rather than a statement being wrong, for
`storage.failures` to compose: nothing outside storage names `asyncpg`.

A lost or refused connection, a server shutting down or starting up, a full disk or
too many connections, a deadlock or serialization failure: each passes, so the caller
says "try again later" (a webhook answers 503, Telegram sends the update again). A
constraint violation is not here: it is a bug in one message, not a database away.
"""

from __future__ import annotations

import asyncpg
from asyncpg import exceptions

POSTGRES_FAILURES: tuple[type[Exception], ...] = (
    exceptions.PostgresConnectionError,  # class 08: connection lost, refused, closed
    exceptions.OperatorInterventionError,  # class 57: shutdown, restart, starting up
    exceptions.InsufficientResourcesError,  # class 53: disk full, too many connections
    exceptions.TransactionRollbackError,  # class 40: deadlock, serialization failure
    # "database ... is not currently accepting connections" (55000): refused for now.
    exceptions.ObjectNotInPrerequisiteStateError,
    # The client's side of a lost connection ("connection is closed", a pool closing),
    # and a pooled connection caught between its server's FATAL and the socket's close.
    asyncpg.InterfaceError,
    exceptions.InternalClientError,
)
