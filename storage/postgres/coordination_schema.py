"""What the pieces that coordinate several instances keep in PostgreSQL.

`COORDINATION_SCHEMA` is one step of the PostgreSQL backend's migrations (run with
the deployment's schema first on the search path, so nothing here names a schema).
Conversation locks and named leases need no tables: they are advisory locks. The
shared send limits (storage/postgres/limits.py) need:

- `send_windows`: per channel, the times of its latest sends (at most the overall
  limit's count), so "at most N in any one second" holds for every instance together;
- `send_chats`: per channel and chat, when the chat's next send is due by its own
  rate (a token bucket kept as one time: the "generic cell rate algorithm"). The
  chat is a keyed hash, never the address: a copied database names nobody. A row
  whose time has passed says nothing and is deleted now and then;
- `reserve_send(...)`: takes a send slot for a chat, or says how long to wait,
  in one round trip. Written in PL/pgSQL because the two checks must be one
  decision (a wait takes no slot of either kind) and each of its statements reads
  afresh once the channel's row is locked, which one SQL statement cannot do: its
  snapshot is taken before the lock is granted, so it would miss the chat's row
  written by the holder it waited for.

Both tables are UNLOGGED: they are a few seconds' worth of soft state, rewritten at
every send, and writing them to the write-ahead log made each reservation wait for a
flush to disk (measured: 0.75 ms a reservation, 0.35-0.43 ms without). A database
that crashes forgets them, which costs at most one burst beyond the limits (the
platform answers it with retry_after, which delivery honours); a clean restart
keeps them. A standby does not have them, and needs them only once promoted.

Times are seconds since the epoch, as the caller's clock says (never the database's:
the caller's is the one its tests and its own waits run on).
"""

from __future__ import annotations

COORDINATION_SCHEMA = """
CREATE UNLOGGED TABLE IF NOT EXISTS send_windows (
    channel TEXT PRIMARY KEY,
    sent DOUBLE PRECISION[] NOT NULL DEFAULT '{}'
);

CREATE UNLOGGED TABLE IF NOT EXISTS send_chats (
    channel TEXT NOT NULL,
    chat BYTEA NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel, chat)
);

CREATE OR REPLACE FUNCTION reserve_send(
    wanted_channel TEXT,
    wanted_chat BYTEA,
    now_at DOUBLE PRECISION,
    per_second INTEGER,
    burst DOUBLE PRECISION,
    spacing DOUBLE PRECISION
) RETURNS DOUBLE PRECISION[]
LANGUAGE plpgsql VOLATILE AS $$
-- {seconds to wait, of which the channel's overall limit}: {0, 0} when a slot was taken.
-- burst: how far ahead of now a chat's next send may already be scheduled, (capacity
-- - 1) * spacing; spacing: seconds between sends to one chat at its average rate.
DECLARE
    recent DOUBLE PRECISION[];
    chat_next DOUBLE PRECISION;
    overall_wait DOUBLE PRECISION := 0;
    chat_wait DOUBLE PRECISION := 0;
BEGIN
    -- The channel's row is the lock every reservation on the channel takes first, so
    -- the chat's row read below is never older than the last reservation's.
    SELECT w.sent INTO recent FROM send_windows AS w WHERE w.channel = wanted_channel
        FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO send_windows (channel) VALUES (wanted_channel) ON CONFLICT DO NOTHING;
        SELECT w.sent INTO recent FROM send_windows AS w WHERE w.channel = wanted_channel
            FOR UPDATE;
    END IF;
    recent := ARRAY(SELECT t FROM unnest(recent) AS t WHERE t > now_at - 1 ORDER BY t);
    IF cardinality(recent) >= per_second THEN
        overall_wait := recent[cardinality(recent) - per_second + 1] + 1 - now_at;
    END IF;
    SELECT c.next_at INTO chat_next FROM send_chats AS c
        WHERE c.channel = wanted_channel AND c.chat = wanted_chat;
    IF chat_next - now_at > burst THEN
        chat_wait := chat_next - burst - now_at;
    END IF;
    IF overall_wait > 0 OR chat_wait > 0 THEN
        RETURN ARRAY[GREATEST(overall_wait, chat_wait), overall_wait];
    END IF;
    -- Keep the latest sends only, as many as the limit: older ones can't matter.
    UPDATE send_windows SET sent = ARRAY(
        SELECT t FROM unnest(array_append(recent, now_at)) AS t ORDER BY t DESC
        LIMIT per_second
    ) WHERE channel = wanted_channel;
    INSERT INTO send_chats (channel, chat, next_at)
        VALUES (wanted_channel, wanted_chat, GREATEST(chat_next, now_at) + spacing)
        ON CONFLICT (channel, chat) DO UPDATE SET next_at = EXCLUDED.next_at;
    RETURN ARRAY[0, 0]::DOUBLE PRECISION[];
END
$$;
"""

# Migration 5: the send limits reserved for many chats in one call (limits.py gathers
# the reservations asked for at about the same time). One call takes the channel's
# row lock and rewrites its window once for all of them: `reserve_send` did so for
# every message, and at 1,000 a second that one row was the bot's ceiling (measured:
# ~1,150 calls a second at most, 728 µs of server CPU each).
RESERVE_MANY = """
CREATE OR REPLACE FUNCTION reserve_sends(
    wanted_channel TEXT,
    chats BYTEA[],
    now_at DOUBLE PRECISION,
    per_second INTEGER,
    bursts DOUBLE PRECISION[],
    spacings DOUBLE PRECISION[]
) RETURNS DOUBLE PRECISION[]
LANGUAGE plpgsql VOLATILE AS $$
-- For the chats asked for, in order: the seconds each waits (0: a slot was taken now),
-- then for each, the channel's overall limit's part of that wait. As `reserve_send`
-- for each chat in turn, except that a chat asked for twice at once is answered for
-- its first ask alone: the later ones wait a spacing (and ask again).
DECLARE
    recent DOUBLE PRECISION[];
    room INTEGER;
    taken BOOLEAN[];
    chat_waits DOUBLE PRECISION[];
    granted INTEGER;
    oldest INTEGER;
    full_wait DOUBLE PRECISION := 0;
BEGIN
    SELECT w.sent INTO recent FROM send_windows AS w WHERE w.channel = wanted_channel
        FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO send_windows (channel) VALUES (wanted_channel) ON CONFLICT DO NOTHING;
        SELECT w.sent INTO recent FROM send_windows AS w WHERE w.channel = wanted_channel
            FOR UPDATE;
    END IF;
    recent := ARRAY(SELECT t FROM unnest(recent) AS t WHERE t > now_at - 1 ORDER BY t);
    room := GREATEST(per_second - cardinality(recent), 0);
    WITH asked AS (
        SELECT a.n, a.chat, a.spacing, c.next_at,
            CASE WHEN c.next_at - now_at > a.burst THEN c.next_at - a.burst - now_at
                 ELSE 0 END AS chat_wait,
            row_number() OVER (PARTITION BY a.chat ORDER BY a.n) AS nth
        FROM unnest(chats, bursts, spacings) WITH ORDINALITY AS a (chat, burst, spacing, n)
        LEFT JOIN send_chats AS c ON c.channel = wanted_channel AND c.chat = a.chat
    ), placed AS (
        SELECT asked.*, CASE WHEN nth = 1 AND chat_wait = 0 THEN
            count(*) FILTER (WHERE nth = 1 AND chat_wait = 0) OVER (ORDER BY n) END AS place
        FROM asked
    ), written AS (
        INSERT INTO send_chats (channel, chat, next_at)
        SELECT wanted_channel, chat, GREATEST(next_at, now_at) + spacing FROM placed
        WHERE place <= room
        ON CONFLICT (channel, chat) DO UPDATE SET next_at = EXCLUDED.next_at
    )
    SELECT array_agg(COALESCE(place <= room, false) ORDER BY n),
        array_agg(CASE WHEN nth > 1 THEN spacing ELSE chat_wait END ORDER BY n),
        count(*) FILTER (WHERE place <= room)
        INTO taken, chat_waits, granted FROM placed;
    -- The window once these are sent: full, it frees a slot when its oldest send that
    -- still counts is a second old.
    oldest := cardinality(recent) + granted - per_second + 1;
    IF oldest >= 1 THEN
        full_wait := CASE WHEN oldest <= cardinality(recent) THEN recent[oldest] + 1 - now_at
                          ELSE 1 END;
    END IF;
    IF granted > 0 THEN
        UPDATE send_windows SET sent = ARRAY(
            SELECT t FROM unnest(recent || array_fill(now_at, ARRAY[granted])) AS t
            ORDER BY t DESC LIMIT per_second
        ) WHERE channel = wanted_channel;
    END IF;
    RETURN ARRAY(SELECT CASE WHEN g THEN 0 ELSE GREATEST(w, full_wait) END
                 FROM unnest(taken, chat_waits) WITH ORDINALITY AS x (g, w, n) ORDER BY n)
        || ARRAY(SELECT CASE WHEN g THEN 0 ELSE full_wait END
                 FROM unnest(taken, chat_waits) WITH ORDINALITY AS x (g, w, n) ORDER BY n);
END
$$;
"""
