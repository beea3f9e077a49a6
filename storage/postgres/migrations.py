"""Versioned schema migrations for PostgreSQL, applied in order and recorded in
`schema_version` (one row per version applied, with when).

An empty schema gets them all when it is first opened; one whose schema is behind is
brought up to date only by `kitchen-table db upgrade` (`PostgresStorage.upgrade`),
after the operator has made a backup: opening it refuses, saying so (`SchemaBehind`).
Each step runs in the one transaction of its upgrade, under an advisory lock, so
several instances starting at once on an empty database create it once.

Each step is a script of statements sent as one (PL/pgSQL bodies may hold semicolons).
Nothing names a schema: the deployment's (or a test's) is first on the search path.

The tables mirror SQLite's (storage/sqlite/migrations.py) with PostgreSQL's types:
times are `timestamptz`, flags `boolean`, bytes `bytea`; text that is sorted or
compared is `COLLATE "C"`, byte order as SQLite's, whatever the database's locale.
The outbox has a lease (`claimed_until`, `claimed_by`): several instances claim from
it (`conversations.py`). Answers and consents have a column that keeps the order they
were written in, which SQLite's rowid gives it.

A commit is written by one call of `kt_commit` (one round trip), its rows handed over
as composite types; `kt_commit_many` writes many in one call, each as `kt_commit`
would. See storage/postgres/commits.py.
"""

from __future__ import annotations

T = 'TEXT COLLATE "C"'

TABLES = f"""
CREATE TABLE participants (
    id {T} PRIMARY KEY,             -- HMAC pseudonym, never a platform id
    channel {T} NOT NULL,
    address BYTEA NOT NULL,         -- Fernet-sealed address to reply to
    language {T},
    current_run {T},
    unreachable BOOLEAN NOT NULL DEFAULT false,
    pending {T}
);
CREATE TABLE runs (
    id {T} PRIMARY KEY,
    participant {T} NOT NULL,
    guide_id {T} NOT NULL,
    guide_version INTEGER NOT NULL,
    guide_hash {T} NOT NULL,
    status {T} NOT NULL,
    state {T} NOT NULL,             -- JSON as the caller wrote it, kept byte for byte
    started_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    gathering {T}
);
CREATE INDEX runs_by_participant ON runs (participant, guide_id, status);
CREATE INDEX runs_by_gathering ON runs (gathering);
CREATE TABLE answers (
    n BIGINT GENERATED ALWAYS AS IDENTITY,
    run_id {T} NOT NULL,
    step {T} NOT NULL,
    participant {T} NOT NULL,
    guide_id {T} NOT NULL,
    guide_version INTEGER NOT NULL,
    kind {T} NOT NULL,
    value {T} NOT NULL,
    answered_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE INDEX answers_by_guide ON answers (guide_id, answered_at);
-- /forget and /mydata find someone's answers without reading every answer.
CREATE INDEX answers_by_participant ON answers (participant);
CREATE TABLE consents (
    n BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    participant {T} NOT NULL,
    guide_id {T} NOT NULL,
    guide_version INTEGER NOT NULL,
    given BOOLEAN NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX consents_by_participant ON consents (participant);
CREATE TABLE outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel {T} NOT NULL,
    participant {T} NOT NULL,
    address BYTEA NOT NULL,
    payload {T} NOT NULL,
    not_before TIMESTAMPTZ NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_until TIMESTAMPTZ,      -- leased to `claimed_by` until then
    claimed_by {T}
);
CREATE INDEX outbox_due ON outbox (channel, not_before, id);
CREATE INDEX outbox_by_participant ON outbox (participant, id);
CREATE TABLE guide_sources (
    hash {T} PRIMARY KEY,
    guide_id {T} NOT NULL,
    version INTEGER NOT NULL,
    source {T} NOT NULL
);
CREATE TABLE inbound (
    key {T} PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL
);
CREATE TABLE records (
    kind {T} NOT NULL,
    key {T} NOT NULL,
    value BYTEA NOT NULL,
    expires_at TIMESTAMPTZ,
    PRIMARY KEY (kind, key)
);
CREATE TABLE gatherings (
    id {T} PRIMARY KEY,
    code {T} NOT NULL UNIQUE,
    guide_id {T} NOT NULL,
    title {T} NOT NULL,
    facilitator {T} NOT NULL,
    channel {T} NOT NULL,
    address BYTEA NOT NULL,
    private_address BYTEA NOT NULL,
    paced BOOLEAN NOT NULL,
    part INTEGER NOT NULL,
    status {T} NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ,
    place {T} NOT NULL
);
CREATE INDEX gatherings_by_facilitator ON gatherings (facilitator, created_at);
CREATE INDEX gatherings_by_place ON gatherings (place, created_at);
CREATE TABLE cohorts (
    name {T} PRIMARY KEY,
    code {T} NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE members (
    cohort {T} NOT NULL,
    participant {T} NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (cohort, participant)
);
CREATE INDEX members_by_participant ON members (participant);
CREATE TABLE preferences (
    participant {T} PRIMARY KEY,
    tz {T},
    paused_until TIMESTAMPTZ
);
CREATE TABLE schedules (
    id {T} PRIMARY KEY,
    guide_id {T} NOT NULL,
    cohort {T} NOT NULL,
    cron {T} NOT NULL,
    tz {T} NOT NULL,
    paused BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    checked_until TIMESTAMPTZ NOT NULL
);
CREATE TABLE occurrences (
    schedule {T} NOT NULL,
    tz {T} NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    status {T} NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (schedule, tz, due_at)
);
CREATE TABLE deliveries (
    key {T} PRIMARY KEY,
    schedule {T} NOT NULL,
    participant {T} NOT NULL,
    run_id {T} NOT NULL,
    delivered_at TIMESTAMPTZ NOT NULL,
    reminders INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX deliveries_by_time ON deliveries (delivered_at);
CREATE INDEX deliveries_by_participant ON deliveries (participant);
CREATE TABLE tombstones (
    participant {T} PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL
);
CREATE TABLE wrong_codes (
    participant {T} NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX wrong_codes_by_participant ON wrong_codes (participant, at);
CREATE INDEX wrong_codes_by_time ON wrong_codes (at);
"""

# The rows of a commit as the client hands them over (storage/postgres/commits.py
# builds these tuples field by field, in this order).
TYPES = """
CREATE TYPE kt_participant AS (
    id TEXT, channel TEXT, address BYTEA, language TEXT, current_run TEXT,
    unreachable BOOLEAN, pending TEXT
);
CREATE TYPE kt_run AS (
    id TEXT, participant TEXT, guide_id TEXT, guide_version INTEGER, guide_hash TEXT,
    status TEXT, state TEXT, started_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, gathering TEXT
);
CREATE TYPE kt_answer AS (
    run_id TEXT, step TEXT, participant TEXT, guide_id TEXT, guide_version INTEGER,
    kind TEXT, value TEXT, answered_at TIMESTAMPTZ
);
CREATE TYPE kt_consent AS (
    participant TEXT, guide_id TEXT, guide_version INTEGER, given BOOLEAN, at TIMESTAMPTZ
);
CREATE TYPE kt_message AS (
    channel TEXT, participant TEXT, address BYTEA, payload TEXT, not_before TIMESTAMPTZ,
    attempts INTEGER
);
CREATE TYPE kt_gathering AS (
    id TEXT, code TEXT, guide_id TEXT, title TEXT, facilitator TEXT, channel TEXT,
    address BYTEA, private_address BYTEA, paced BOOLEAN, part INTEGER, status TEXT,
    created_at TIMESTAMPTZ, expires_at TIMESTAMPTZ, closed_at TIMESTAMPTZ, place TEXT
);
CREATE TYPE kt_schedule AS (
    id TEXT, guide_id TEXT, cohort TEXT, cron TEXT, tz TEXT, paused BOOLEAN,
    created_at TIMESTAMPTZ, checked_until TIMESTAMPTZ
);
CREATE TYPE kt_delivery AS (
    key TEXT, schedule TEXT, participant TEXT, run_id TEXT, delivered_at TIMESTAMPTZ,
    reminders INTEGER
);
CREATE TYPE kt_record AS (kind TEXT, key TEXT, value BYTEA, expires_at TIMESTAMPTZ);
CREATE TYPE kt_commit AS (
    inbound_key TEXT,
    refuse_gone BOOLEAN,
    forget_who TEXT, forget_at TIMESTAMPTZ,
    schedule kt_schedule,
    source_hash TEXT, source_guide TEXT, source_version INTEGER, source_text TEXT,
    participant kt_participant,
    runs kt_run[],
    withdrawn_runs TEXT[], withdrawn_steps TEXT[],
    answers kt_answer[],
    consents kt_consent[],
    delete_run TEXT,
    gathering kt_gathering,
    part_id TEXT, part INTEGER,
    closed_id TEXT, closed_at TIMESTAMPTZ,
    joined_cohorts TEXT[], joined_people TEXT[],
    left_cohorts TEXT[], left_people TEXT[],
    pref_participant TEXT, pref_tz TEXT, pref_paused TIMESTAMPTZ,
    delivery kt_delivery,
    reminded TEXT,
    outbox kt_message[],
    take_kind TEXT, take_key TEXT, take_now TIMESTAMPTZ,
    records kt_record[],
    wrong_participant TEXT, wrong_at TIMESTAMPTZ, wrong_forget_before TIMESTAMPTZ,
    delete_unused TEXT
);
"""

FUNCTIONS = """
CREATE FUNCTION kt_erase(who TEXT, erased_at TIMESTAMPTZ) RETURNS void LANGUAGE plpgsql AS $$
-- Everything that refers to a participant, leaving a tombstone (as SQLite's `erase`).
BEGIN
    DELETE FROM answers WHERE participant = who;
    DELETE FROM answers WHERE run_id IN (SELECT id FROM runs WHERE participant = who);
    DELETE FROM runs WHERE participant = who;
    DELETE FROM consents WHERE participant = who;
    DELETE FROM outbox WHERE participant = who;
    DELETE FROM members WHERE participant = who;
    DELETE FROM preferences WHERE participant = who;
    DELETE FROM deliveries WHERE participant = who;
    DELETE FROM records WHERE key = who;  -- roles
    DELETE FROM wrong_codes WHERE participant = who;
    DELETE FROM participants WHERE id = who;
    -- Keys of prompts and reminders name the pseudonym: they go too.
    DELETE FROM inbound WHERE strpos(key, who) > 0;
    -- Their gatherings stay (others answered in them) but no longer name them.
    UPDATE gatherings SET facilitator = 'forgotten', place = 'forgotten'
        WHERE facilitator = who OR place = who;
    INSERT INTO tombstones (participant, at) VALUES (who, erased_at)
        ON CONFLICT (participant) DO UPDATE SET at = excluded.at;
END
$$;

CREATE FUNCTION kt_commit(c kt_commit) RETURNS boolean LANGUAGE plpgsql AS $$
-- Write one commit as SQLite's `apply` does, statement for statement; false, with
-- nothing written, if it can't happen: its inbound or delivery key was taken, the
-- record it uses up is gone, or (`refuse_gone`: a prompt read before) its person has
-- since become unreachable or been forgotten. Every such check comes before the
-- first write, so a refused commit needs no savepoint to leave nothing behind.
DECLARE
    r kt_run;
    a kt_answer;
    m kt_record;
    i INTEGER;
BEGIN
    IF c.refuse_gone AND (c.participant).id IS NOT NULL AND (
        EXISTS (SELECT 1 FROM participants AS p
                WHERE p.id = (c.participant).id AND p.unreachable)
        OR (cardinality(c.runs) > 0 AND EXISTS (
            SELECT 1 FROM tombstones AS t WHERE t.participant = (c.participant).id
            AND t.at >= (c.runs[1]).started_at))
    ) THEN
        RETURN false;
    END IF;
    IF (c.delivery).key IS NOT NULL
        AND EXISTS (SELECT 1 FROM deliveries AS d WHERE d.key = (c.delivery).key) THEN
        RETURN false;
    END IF;
    IF c.take_kind IS NOT NULL THEN
        -- Locked until this commit ends: nobody else can use it up meanwhile.
        PERFORM 1 FROM records AS x WHERE x.kind = c.take_kind AND x.key = c.take_key
            AND (x.expires_at IS NULL OR x.expires_at > c.take_now) FOR UPDATE;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    IF c.inbound_key IS NOT NULL THEN
        INSERT INTO inbound (key, at) VALUES (c.inbound_key, now()) ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    IF c.forget_who IS NOT NULL THEN
        PERFORM kt_erase(c.forget_who, c.forget_at);
    END IF;
    IF (c.schedule).id IS NOT NULL THEN
        INSERT INTO schedules (id, guide_id, cohort, cron, tz, paused, created_at, checked_until)
            VALUES ((c.schedule).id, (c.schedule).guide_id, (c.schedule).cohort,
                    (c.schedule).cron, (c.schedule).tz, (c.schedule).paused,
                    (c.schedule).created_at, (c.schedule).checked_until)
            ON CONFLICT (id) DO UPDATE SET guide_id = excluded.guide_id,
                cohort = excluded.cohort, cron = excluded.cron, tz = excluded.tz,
                paused = excluded.paused, created_at = excluded.created_at,
                checked_until = excluded.checked_until;
    END IF;
    IF c.source_hash IS NOT NULL THEN
        INSERT INTO guide_sources (hash, guide_id, version, source)
            VALUES (c.source_hash, c.source_guide, c.source_version, c.source_text)
            ON CONFLICT DO NOTHING;
    END IF;
    IF (c.participant).id IS NOT NULL THEN
        INSERT INTO participants (id, channel, address, language, current_run, unreachable,
                                  pending)
            VALUES ((c.participant).id, (c.participant).channel, (c.participant).address,
                    (c.participant).language, (c.participant).current_run,
                    (c.participant).unreachable, (c.participant).pending)
            ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                language = excluded.language, current_run = excluded.current_run,
                unreachable = excluded.unreachable, pending = excluded.pending;
    END IF;
    FOREACH r IN ARRAY c.runs LOOP
        INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status, state,
                          started_at, updated_at, gathering)
            VALUES (r.id, r.participant, r.guide_id, r.guide_version, r.guide_hash, r.status,
                    r.state, r.started_at, r.updated_at, r.gathering)
            ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state,
                updated_at = excluded.updated_at;
    END LOOP;
    IF cardinality(c.withdrawn_runs) > 0 THEN
        DELETE FROM answers AS x USING unnest(c.withdrawn_runs, c.withdrawn_steps) AS w (run_id, step)
            WHERE x.run_id = w.run_id AND x.step = w.step;
    END IF;
    -- One at a time: a commit may give the same step twice, and the last one wins.
    FOREACH a IN ARRAY c.answers LOOP
        INSERT INTO answers (run_id, step, participant, guide_id, guide_version, kind, value,
                             answered_at)
            VALUES (a.run_id, a.step, a.participant, a.guide_id, a.guide_version, a.kind,
                    a.value, a.answered_at)
            ON CONFLICT (run_id, step) DO UPDATE SET value = excluded.value,
                answered_at = excluded.answered_at;
    END LOOP;
    IF cardinality(c.consents) > 0 THEN
        INSERT INTO consents (participant, guide_id, guide_version, given, at)
            SELECT x.participant, x.guide_id, x.guide_version, x.given, x.at
            FROM unnest(c.consents) WITH ORDINALITY AS x ORDER BY x.ordinality;
    END IF;
    IF c.delete_run IS NOT NULL THEN
        DELETE FROM answers WHERE run_id = c.delete_run;
        DELETE FROM runs WHERE id = c.delete_run;
    END IF;
    IF (c.gathering).id IS NOT NULL THEN
        INSERT INTO gatherings (id, code, guide_id, title, facilitator, channel, address,
                                private_address, paced, part, status, created_at, expires_at,
                                closed_at, place)
            SELECT (c.gathering).*;
    END IF;
    -- Targeted changes, never a whole row from an earlier read: a close can't be undone
    -- by a stale /next, nor an erasure by either.
    IF c.part_id IS NOT NULL THEN
        UPDATE gatherings SET part = greatest(part, c.part)
            WHERE id = c.part_id AND status = 'open';
    END IF;
    IF c.closed_id IS NOT NULL THEN
        UPDATE gatherings SET status = 'closed', closed_at = c.closed_at
            WHERE id = c.closed_id AND status = 'open';
    END IF;
    IF cardinality(c.joined_people) > 0 THEN
        INSERT INTO members (cohort, participant, joined_at)
            SELECT j.cohort, j.participant, now()
            FROM unnest(c.joined_cohorts, c.joined_people) AS j (cohort, participant)
            ON CONFLICT DO NOTHING;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(c.left_people), 0) LOOP
        IF c.left_cohorts[i] IS NULL THEN
            DELETE FROM members WHERE participant = c.left_people[i];
        ELSE
            DELETE FROM members WHERE cohort = c.left_cohorts[i]
                AND participant = c.left_people[i];
        END IF;
    END LOOP;
    IF c.pref_participant IS NOT NULL THEN
        INSERT INTO preferences (participant, tz, paused_until)
            VALUES (c.pref_participant, c.pref_tz, c.pref_paused)
            ON CONFLICT (participant) DO UPDATE SET tz = excluded.tz,
                paused_until = excluded.paused_until;
    END IF;
    IF (c.delivery).key IS NOT NULL THEN
        INSERT INTO deliveries (key, schedule, participant, run_id, delivered_at, reminders)
            SELECT (c.delivery).*;
    END IF;
    IF c.reminded IS NOT NULL THEN
        UPDATE deliveries SET reminders = reminders + 1 WHERE key = c.reminded;
    END IF;
    IF cardinality(c.outbox) > 0 THEN
        INSERT INTO outbox (channel, participant, address, payload, not_before, attempts)
            SELECT o.channel, o.participant, o.address, o.payload, o.not_before, o.attempts
            FROM unnest(c.outbox) WITH ORDINALITY AS o ORDER BY o.ordinality;
    END IF;
    IF c.take_kind IS NOT NULL THEN
        DELETE FROM records WHERE kind = c.take_kind AND key = c.take_key;
    END IF;
    FOREACH m IN ARRAY c.records LOOP
        INSERT INTO records (kind, key, value, expires_at)
            VALUES (m.kind, m.key, m.value, m.expires_at)
            ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value,
                expires_at = excluded.expires_at;
    END LOOP;
    IF c.wrong_participant IS NOT NULL THEN
        DELETE FROM wrong_codes WHERE at < c.wrong_forget_before;
        INSERT INTO wrong_codes (participant, at) VALUES (c.wrong_participant, c.wrong_at);
    END IF;
    IF c.delete_unused IS NOT NULL THEN  -- last: it looks at what is kept
        DELETE FROM participants AS p WHERE p.id = c.delete_unused
            AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.participant = p.id)
            AND NOT EXISTS (SELECT 1 FROM members WHERE members.participant = p.id);
        DELETE FROM preferences AS f WHERE f.participant = c.delete_unused
            AND NOT EXISTS (SELECT 1 FROM participants AS p WHERE p.id = f.participant);
    END IF;
    RETURN true;
END
$$;

CREATE FUNCTION kt_commit_many(cs kt_commit[]) RETURNS boolean[] LANGUAGE plpgsql AS $$
-- Many commits in the caller's one transaction, in order, each as `kt_commit` writes it.
DECLARE
    c kt_commit;
    written boolean[] := '{}';
BEGIN
    FOREACH c IN ARRAY cs LOOP
        written := written || kt_commit(c);
    END LOOP;
    RETURN written;
END
$$;
"""

BASE = TABLES + TYPES + FUNCTIONS

# Plain commits (an answer: its inbound key, the person, the run, the answer, what is
# owed next) that touch no row another of them touches, written table by table: one
# statement for them all instead of a few each (measured: 30 µs of the server's CPU a
# commit, against 55 one by one in `kt_commit`). A commit whose inbound key was seen
# writes nothing, as `kt_commit`; the client checks that the rest holds
# (storage/postgres/commits.py, `plain_together`).
PLAIN = """
CREATE FUNCTION kt_commit_plain(cs kt_commit[]) RETURNS boolean[] LANGUAGE plpgsql AS $$
DECLARE
    written boolean[];
BEGIN
    WITH given AS (
        SELECT c.* FROM unnest(cs) WITH ORDINALITY AS c
            (inbound_key, refuse_gone, forget_who, forget_at, schedule, source_hash,
             source_guide, source_version, source_text, participant, runs, withdrawn_runs,
             withdrawn_steps, answers, consents, delete_run, gathering, part_id, part,
             closed_id, closed_at, joined_cohorts, joined_people, left_cohorts, left_people,
             pref_participant, pref_tz, pref_paused, delivery, reminded, outbox, take_kind,
             take_key, take_now, records, wrong_participant, wrong_at, wrong_forget_before,
             delete_unused, n)
    ), seen AS (
        INSERT INTO inbound (key, at)
            SELECT g.inbound_key, now() FROM given AS g WHERE g.inbound_key IS NOT NULL
            ON CONFLICT DO NOTHING RETURNING key
    ), fresh AS (
        SELECT g.* FROM given AS g
        WHERE g.inbound_key IS NULL OR g.inbound_key IN (SELECT key FROM seen)
    ), sources AS (
        INSERT INTO guide_sources (hash, guide_id, version, source)
            SELECT f.source_hash, f.source_guide, f.source_version, f.source_text
            FROM fresh AS f WHERE f.source_hash IS NOT NULL ORDER BY f.n
            ON CONFLICT DO NOTHING
    ), people AS (
        INSERT INTO participants (id, channel, address, language, current_run, unreachable,
                                  pending)
            SELECT (f.participant).id, (f.participant).channel, (f.participant).address,
                   (f.participant).language, (f.participant).current_run,
                   (f.participant).unreachable, (f.participant).pending
            FROM fresh AS f WHERE (f.participant).id IS NOT NULL
            ON CONFLICT (id) DO UPDATE SET address = excluded.address,
                language = excluded.language, current_run = excluded.current_run,
                unreachable = excluded.unreachable, pending = excluded.pending
    ), their_runs AS (
        INSERT INTO runs (id, participant, guide_id, guide_version, guide_hash, status, state,
                          started_at, updated_at, gathering)
            SELECT r.id, r.participant, r.guide_id, r.guide_version, r.guide_hash, r.status,
                   r.state, r.started_at, r.updated_at, r.gathering
            FROM fresh AS f CROSS JOIN LATERAL unnest(f.runs) AS r
            ON CONFLICT (id) DO UPDATE SET status = excluded.status, state = excluded.state,
                updated_at = excluded.updated_at
    ), their_answers AS (
        INSERT INTO answers (run_id, step, participant, guide_id, guide_version, kind, value,
                             answered_at)
            SELECT a.run_id, a.step, a.participant, a.guide_id, a.guide_version, a.kind,
                   a.value, a.answered_at
            FROM fresh AS f CROSS JOIN LATERAL unnest(f.answers) WITH ORDINALITY AS a
            ORDER BY f.n, a.ordinality
            ON CONFLICT (run_id, step) DO UPDATE SET value = excluded.value,
                answered_at = excluded.answered_at
    ), their_consents AS (
        INSERT INTO consents (participant, guide_id, guide_version, given, at)
            SELECT x.participant, x.guide_id, x.guide_version, x.given, x.at
            FROM fresh AS f CROSS JOIN LATERAL unnest(f.consents) WITH ORDINALITY AS x
            ORDER BY f.n, x.ordinality
    ), owed AS (
        INSERT INTO outbox (channel, participant, address, payload, not_before, attempts)
            SELECT o.channel, o.participant, o.address, o.payload, o.not_before, o.attempts
            FROM fresh AS f CROSS JOIN LATERAL unnest(f.outbox) WITH ORDINALITY AS o
            ORDER BY f.n, o.ordinality
    )
    SELECT array_agg(g.inbound_key IS NULL OR g.inbound_key IN (SELECT key FROM seen)
                     ORDER BY g.n)
        INTO written FROM given AS g;
    RETURN written;
END
$$;
"""


def migrations() -> list[str]:
    """Every step, the first first: version n is the first n steps applied."""
    # The tables that coordinate several instances (send limits) are another concern's,
    # kept beside the pieces that use them.
    from storage.postgres.coordination_schema import COORDINATION_SCHEMA, RESERVE_MANY

    return [
        # 1: every table SQLite has at its version 9, and writing a commit in one call.
        BASE,
        # 2: the send limits several instances share.
        COORDINATION_SCHEMA,
        # 3: plain commits that reach the database together, written table by table.
        PLAIN,
        # 4: erasure also closes the person's open gatherings and blanks the addresses
        # kept in them (their private chat, and the room when the room was theirs).
        ERASE_GATHERINGS,
        # 5: send limits reserved for many chats in one call.
        RESERVE_MANY,
        # 6: what a turn queues is claimed by the instance that commits it.
        CLAIMED_AT_COMMIT,
        # 7: erasure also takes the person's pseudonym out of records that name them.
        ERASE_NAMING_RECORDS,
        # 8: a turn's commit writes nothing if the person it read was erased since.
        STILL_KEPT,
        # 9: erasure also withdraws messages owed to others that name the person (a
        # report that quotes them).
        ERASE_QUOTING_MESSAGES,
    ]


ERASE_GATHERINGS = """
CREATE OR REPLACE FUNCTION kt_erase(who TEXT, erased_at TIMESTAMPTZ) RETURNS void LANGUAGE plpgsql AS $$
-- Everything that refers to a participant, leaving a tombstone (as SQLite's `erase`).
BEGIN
    DELETE FROM answers WHERE participant = who;
    DELETE FROM answers WHERE run_id IN (SELECT id FROM runs WHERE participant = who);
    DELETE FROM runs WHERE participant = who;
    DELETE FROM consents WHERE participant = who;
    DELETE FROM outbox WHERE participant = who;
    DELETE FROM members WHERE participant = who;
    DELETE FROM preferences WHERE participant = who;
    DELETE FROM deliveries WHERE participant = who;
    DELETE FROM records WHERE key = who;  -- roles
    DELETE FROM wrong_codes WHERE participant = who;
    DELETE FROM participants WHERE id = who;
    -- Keys of prompts and reminders name the pseudonym: they go too.
    DELETE FROM inbound WHERE strpos(key, who) > 0;
    -- Their gatherings stay (others answered in them) but no longer name them.
    -- Their open gatherings close (nobody can run them now), and the addresses that
    -- reached them (their private chat; the room, if the room was theirs) go too.
    UPDATE gatherings SET status = 'closed', closed_at = erased_at
        WHERE facilitator = who AND status = 'open';
    UPDATE gatherings SET private_address = '\\x'::bytea WHERE facilitator = who;
    UPDATE gatherings SET address = '\\x'::bytea WHERE place = who;
    UPDATE gatherings SET facilitator = 'forgotten', place = 'forgotten'
        WHERE facilitator = who OR place = who;
    INSERT INTO tombstones (participant, at) VALUES (who, erased_at)
        ON CONFLICT (participant) DO UPDATE SET at = excluded.at;
END
$$;
"""


# As ERASE_GATHERINGS, and records that name the person keep what happened, not who
# (as SQLite's `erase`).
ERASE_NAMING_RECORDS = """
CREATE OR REPLACE FUNCTION kt_erase(who TEXT, erased_at TIMESTAMPTZ) RETURNS void LANGUAGE plpgsql AS $$
-- Everything that refers to a participant, leaving a tombstone (as SQLite's `erase`).
BEGIN
    DELETE FROM answers WHERE participant = who;
    DELETE FROM answers WHERE run_id IN (SELECT id FROM runs WHERE participant = who);
    DELETE FROM runs WHERE participant = who;
    DELETE FROM consents WHERE participant = who;
    DELETE FROM outbox WHERE participant = who;
    DELETE FROM members WHERE participant = who;
    DELETE FROM preferences WHERE participant = who;
    DELETE FROM deliveries WHERE participant = who;
    DELETE FROM records WHERE key = who;  -- roles
    -- Other records that name them (the console's audit entries, sessions, sign-in
    -- links) keep what happened, no longer who.
    UPDATE records SET value = convert_to(replace(convert_from(value, 'UTF8'), who, 'forgotten'), 'UTF8')
        WHERE position(convert_to(who, 'UTF8') IN value) > 0;
    DELETE FROM wrong_codes WHERE participant = who;
    DELETE FROM participants WHERE id = who;
    -- Keys of prompts and reminders name the pseudonym: they go too.
    DELETE FROM inbound WHERE strpos(key, who) > 0;
    -- Their gatherings stay (others answered in them) but no longer name them.
    -- Their open gatherings close (nobody can run them now), and the addresses that
    -- reached them (their private chat; the room, if the room was theirs) go too.
    UPDATE gatherings SET status = 'closed', closed_at = erased_at
        WHERE facilitator = who AND status = 'open';
    UPDATE gatherings SET private_address = '\\x'::bytea WHERE facilitator = who;
    UPDATE gatherings SET address = '\\x'::bytea WHERE place = who;
    UPDATE gatherings SET facilitator = 'forgotten', place = 'forgotten'
        WHERE facilitator = who OR place = who;
    INSERT INTO tombstones (participant, at) VALUES (who, erased_at)
        ON CONFLICT (participant) DO UPDATE SET at = excluded.at;
END
$$;
"""


# A turn's replies are claimed, in the transaction that queues them, by the instance
# that took the turn (storage/postgres/commits.py): that instance sends them, as one
# process would, and no other instance's claim takes them first and opens their
# address again (measured: two instances on one database cost 1.11x two on a database
# each; 1.04x with this). A commit asks for it by calling `kt_claiming` first in its
# transaction: the outbox's lease columns then default to what it set there, for the
# rows `kt_commit` and `kt_commit_plain` insert in that transaction alone (the
# settings are the transaction's: `set_config(..., true)`), and to nothing elsewhere.
CLAIMED_AT_COMMIT = """
ALTER TABLE outbox
    ALTER COLUMN claimed_by SET DEFAULT nullif(current_setting('kt.claimant', true), ''),
    ALTER COLUMN claimed_until SET DEFAULT
        nullif(current_setting('kt.claimed_until', true), '')::timestamptz;

CREATE FUNCTION kt_claiming(claimant TEXT, until TIMESTAMPTZ) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('kt.claimant', claimant, true),
           set_config('kt.claimed_until', until::text, true);
$$;
"""


def _edited(script: str, *changes: tuple[str, str]) -> str:
    """An earlier step's script with these parts changed, each found exactly once (so
    a step made from another can't silently stop saying what it means to)."""
    for before, after in changes:
        if script.count(before) != 1:
            raise ValueError(f"not found once in the step it edits: {before!r}")
        script = script.replace(before, after)
    return script


# A turn reads the person, then commits. An operator's `kitchen-table forget` (another
# process, under no conversation lock) may erase them in between: the commit then
# writes nothing rather than bring back what was erased. A commit locks the person's
# row (FOR KEY SHARE) before it writes anything, and an erasure locks it (FOR UPDATE)
# before it deletes anything, so one waits for the other whole: a commit first is
# erased with the rest; an erasure first leaves the commit nothing to write.
# `kt_commit` becomes the check in front of the old function; `kt_commit_plain` is
# migration 3's with the same check, and one more column in its list; `kt_erase` is
# migration 7's with the lock first.
# Erasure locks the person's row before it deletes anything (see STILL_KEPT).
ERASE_LOCKING = _edited(
    ERASE_NAMING_RECORDS,
    ("BEGIN\n", "BEGIN\n    PERFORM 1 FROM participants WHERE id = who FOR UPDATE;\n"),
)

STILL_KEPT = (
    """
ALTER TYPE kt_commit ADD ATTRIBUTE still_kept TEXT;
ALTER FUNCTION kt_commit(kt_commit) RENAME TO kt_commit_written;
CREATE FUNCTION kt_commit(c kt_commit) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF c.still_kept IS NOT NULL THEN
        PERFORM 1 FROM participants AS p WHERE p.id = c.still_kept FOR KEY SHARE;
        IF NOT FOUND THEN
            RETURN false;
        END IF;
    END IF;
    RETURN kt_commit_written(c);
END
$$;
"""
    + _edited(
        PLAIN,
        ("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"),
        ("delete_unused, n)", "delete_unused, still_kept, n)"),
        (
            """    ), seen AS (
        INSERT INTO inbound (key, at)
            SELECT g.inbound_key, now() FROM given AS g WHERE g.inbound_key IS NOT NULL""",
            """    ), kept AS (
        SELECT p.id FROM participants AS p
        WHERE p.id IN (SELECT g.still_kept FROM given AS g) FOR KEY SHARE
    ), alive AS (
        SELECT g.* FROM given AS g
        WHERE g.still_kept IS NULL OR g.still_kept IN (SELECT id FROM kept)
    ), seen AS (
        INSERT INTO inbound (key, at)
            SELECT g.inbound_key, now() FROM alive AS g WHERE g.inbound_key IS NOT NULL""",
        ),
        (
            """        SELECT g.* FROM given AS g
        WHERE g.inbound_key IS NULL OR g.inbound_key IN (SELECT key FROM seen)""",
            """        SELECT g.* FROM alive AS g
        WHERE g.inbound_key IS NULL OR g.inbound_key IN (SELECT key FROM seen)""",
        ),
        (
            """    SELECT array_agg(g.inbound_key IS NULL OR g.inbound_key IN (SELECT key FROM seen)
                     ORDER BY g.n)""",
            """    SELECT array_agg(g.n IN (SELECT f.n FROM fresh AS f) ORDER BY g.n)""",
        ),
    )
    + ERASE_LOCKING
)

# As migration 8's erasure, and messages owed to others whose payload names the person
# go too: a report that quotes someone lists them (bot/reports/quotes.py), and is
# withdrawn rather than keep their words (as SQLite's `erase`).
ERASE_QUOTING_MESSAGES = _edited(
    ERASE_LOCKING,
    (
        "    DELETE FROM outbox WHERE participant = who;\n",
        "    DELETE FROM outbox WHERE participant = who OR strpos(payload, who) > 0;\n",
    ),
)
