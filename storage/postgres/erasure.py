"""Erasure on PostgreSQL: what it takes for deleted words to leave the database's files.

A DELETE takes a forgotten person's rows out of every query and every `pg_dump` at
once (`kt_erase`, in the turn's commit). It does not take their bytes off the disk:
a deleted row stays in its table page until the page is rewritten, in the indexes,
in the statistics ANALYZE sampled (`pg_statistic`), and in the write-ahead log until
its segments are used up. Measured (PostgreSQL 15, 10,000 and 100,000 answers): plain
VACUUM leaves the bytes in the page's free space, and an UPDATE before the DELETE
leaves the old version beside the new; only rewriting the tables removes them.

So, soon after anyone is forgotten (and at once with `kitchen-table db maintain`),
one instance at a time:

1. `VACUUM FULL` of every table that holds what people typed, or what was said to
   them: a new file each, written from the rows that remain, the old one unlinked.
   It locks each table while it copies it (measured: about 11 ms per MB; a 100,000
   answer table in 0.2-0.5 s). If an older transaction can still see the deleted
   rows, they are copied too: that is noticed and the step is done again later.
2. `ANALYZE` them, then `VACUUM FULL pg_statistic`: the sampled values go as well.
3. The write-ahead log: switch to a new segment and checkpoint until no segment from
   before is left, then until every recycled segment (renamed, its old bytes still
   in it) has been written over. This needs three grants from a superuser, once
   (README, "Running at scale"); without them the log keeps the words until the
   server has written enough else, and `db maintain` says so.

What this cannot reach is said in the README: WAL archives and replicas' own logs,
backups taken before, and the file system's free blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from storage.postgres.connection import session_locking

# Tables whose rows hold what a person typed or what the bot said to them: answers,
# run states (which carry answers for the guide's texts), the outbox, the pending
# question; the table of people itself (their sealed address); and records, where
# erasure rewrote what named them (the console's audit entries, sessions).
TABLES = ("answers", "runs", "outbox", "participants", "records")
# The record `expire_texts` (storage/postgres/rights.py) leaves when it blanks old text.
BLANKED = ("erasure", "texts-blanked")
# One instance at a time rewrites the tables: an advisory lock on this number.
LOCK = 0x4B54_4552_4153_45  # "KTERASE"
# Safety stop for the WAL loop: a replication slot or wal_keep_size holds segments.
MOST_ROUNDS = 100
STILL_SEEN = "cannot be removed yet"


@dataclass
class Erasure:
    """What a round of erasure did, in lines for the operator."""

    done: bool = False  # the tables were rewritten with nothing deleted left in them
    wal: bool = False  # the write-ahead log was cycled past them
    lines: list[str] = field(default_factory=list)


async def _pending(connection: Any) -> datetime | None:
    """When the latest erasure not yet cleared from the files happened (None: none)."""
    value: datetime | None = await connection.fetchval(
        "SELECT max(t.at) FROM tombstones AS t"
        " WHERE t.at > (SELECT m.cleared_through FROM kt_maintenance AS m)"
    )
    return value


async def _blanked(connection: Any) -> bytes | None:
    """The mark `expire_texts` leaves when it blanks old text (None: none since the last
    round): its old values are in the files too, until a round rewrites them."""
    mark: bytes | None = await connection.fetchval(
        "SELECT value FROM records WHERE kind = $1 AND key = $2", *BLANKED
    )
    return mark


async def clear(connection: Any, at_once: bool = False) -> Erasure:
    """If anyone was forgotten since the last round (or `at_once`), rewrite the tables and
    cycle the log; nothing if another instance is doing it now."""
    result = Erasure()
    session_locking(connection)  # the pool lets go of the lock, whatever happens here
    if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
        result.lines.append("another instance is clearing erased rows now")
        return result
    try:
        await connection.execute(SCHEMA)  # under the lock: one instance makes it
        through = await _pending(connection)
        blanked = await _blanked(connection)
        if through is None and blanked is None and not at_once:
            result.done = True
            result.lines.append(
                "nothing was erased or blanked since the last round: nothing to clear"
            )
            return result
        seen: list[str] = []

        def listen(_: Any, message: Any) -> None:
            if STILL_SEEN in str(getattr(message, "message", message)):
                seen.append(str(message))

        connection.add_log_listener(listen)
        try:
            for table in TABLES:
                await connection.execute(f"VACUUM (FULL, VERBOSE) {table}")
            await connection.execute("ANALYZE " + ", ".join(TABLES))
            await connection.execute("VACUUM FULL pg_catalog.pg_statistic")
        finally:
            connection.remove_log_listener(listen)
        if seen:
            result.lines.append(
                "an older transaction can still see erased rows, so they were kept; "
                "trying again later"
            )
            return result
        result.done = True
        result.lines.append(f"rewrote {', '.join(TABLES)} and the statistics")
        result.wal = await _cycle_wal(connection, result.lines)
        if through is not None:
            await connection.execute(
                "UPDATE kt_maintenance SET cleared_through = greatest(cleared_through, $1)",
                through,
            )
        if blanked is not None:  # unless text was blanked again meanwhile: that waits
            await connection.execute(
                "DELETE FROM records WHERE kind = $1 AND key = $2 AND value = $3",
                *BLANKED,
                blanked,
            )
        return result
    finally:
        await connection.fetchval("SELECT pg_advisory_unlock($1)", LOCK)


async def _cycle_wal(connection: Any, lines: list[str]) -> bool:
    import asyncpg

    try:
        rounds = await connection.fetchval(WAL_LOOP, MOST_ROUNDS)
    except asyncpg.InsufficientPrivilegeError:
        lines.append(
            "the write-ahead log still holds erased words until the server writes past "
            "them: to clear it now, a superuser grants, once: GRANT pg_checkpoint TO "
            "<bot's role>; GRANT EXECUTE ON FUNCTION pg_switch_wal(), pg_ls_waldir() "
            "TO <bot's role>"
        )
        return False
    except asyncpg.RaiseError as error:
        lines.append(f"the write-ahead log could not be cycled: {error}")
        return False
    lines.append(f"cycled the write-ahead log past them ({rounds} segments)")
    return True


# Phase 1: switch and checkpoint until no segment up to the erasure's is left under its
# own name. Phase 2: recycled segments keep their old bytes under future names, so go
# on until each has been written over. Returns how many segments it took.
WAL_LOOP = "SELECT kt_cycle_wal($1)"

# The table that remembers how far erasure has been cleared from the files, and the
# log's loop as a function (one call; its permissions are checked when it runs).
SCHEMA = """
CREATE TABLE IF NOT EXISTS kt_maintenance (cleared_through timestamptz NOT NULL);
INSERT INTO kt_maintenance (cleared_through)
    SELECT '-infinity' WHERE NOT EXISTS (SELECT 1 FROM kt_maintenance);
CREATE OR REPLACE FUNCTION kt_cycle_wal(most integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    last text := pg_walfile_name(pg_current_wal_lsn());
    highest text;
    rounds integer := 0;
BEGIN
    LOOP
        PERFORM pg_switch_wal();
        CHECKPOINT;
        rounds := rounds + 1;
        EXIT WHEN NOT EXISTS (
            SELECT 1 FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' AND name <= last);
        IF rounds > most THEN
            RAISE EXCEPTION 'segments are held (a replication slot, wal_keep_size or archiving)';
        END IF;
    END LOOP;
    SELECT max(name) INTO highest FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$';
    WHILE pg_walfile_name(pg_current_wal_lsn()) <= highest LOOP
        PERFORM pg_switch_wal();
        CHECKPOINT;
        rounds := rounds + 1;
        IF rounds > 2 * most THEN
            RAISE EXCEPTION 'segments are held (a replication slot, wal_keep_size or archiving)';
        END IF;
    END LOOP;
    RETURN rounds;
END
$$;
"""
