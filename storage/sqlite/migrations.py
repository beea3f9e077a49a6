"""Versioned schema migrations for SQLite, applied in order and recorded in user_version.

A new file gets them all when it is first opened; a file whose schema is behind is
brought up to date only by `kitchen-table db upgrade` (`SQLiteStorage.upgrade`), after
the operator has made a backup: opening it refuses, saying so (`SchemaBehind`).

Each script is statements separated by semicolons (and none inside a statement).
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: participants, runs, answers, consents, the outbox, guide snapshots, inbound keys.
    """
    CREATE TABLE participants (
        id TEXT PRIMARY KEY,            -- HMAC pseudonym, never a platform id
        channel TEXT NOT NULL,
        address BLOB NOT NULL,          -- Fernet-sealed address to reply to
        language TEXT,
        current_run TEXT,
        unreachable INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        participant TEXT NOT NULL,
        guide_id TEXT NOT NULL,
        guide_version INTEGER NOT NULL,
        guide_hash TEXT NOT NULL,
        status TEXT NOT NULL,
        state TEXT NOT NULL,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX runs_by_participant ON runs (participant, guide_id, status);
    CREATE TABLE answers (
        run_id TEXT NOT NULL,
        step TEXT NOT NULL,
        participant TEXT NOT NULL,
        guide_id TEXT NOT NULL,
        guide_version INTEGER NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        answered_at TEXT NOT NULL,
        PRIMARY KEY (run_id, step)
    );
    CREATE INDEX answers_by_guide ON answers (guide_id, answered_at);
    CREATE TABLE consents (
        participant TEXT NOT NULL,
        guide_id TEXT NOT NULL,
        guide_version INTEGER NOT NULL,
        given INTEGER NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX consents_by_participant ON consents (participant);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        participant TEXT NOT NULL,
        address BLOB NOT NULL,
        payload TEXT NOT NULL,
        not_before TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX outbox_due ON outbox (channel, not_before, id);
    CREATE TABLE guide_sources (
        hash TEXT PRIMARY KEY,
        guide_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        source TEXT NOT NULL
    );
    CREATE TABLE inbound (
        key TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );
    """,
    # 2: find a person's earlier messages quickly, to keep their messages in order.
    """
    CREATE INDEX outbox_by_participant ON outbox (participant, id);
    """,
    # 3: small records the bot keeps for a platform, such as a Slack workspace's
    # installation (its token, sealed by the caller) or a one-time OAuth state.
    """
    CREATE TABLE records (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        expires_at TEXT,
        PRIMARY KEY (kind, key)
    );
    """,
    # 4: facilitated gatherings, and which gathering a run was joined through.
    """
    CREATE TABLE gatherings (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        guide_id TEXT NOT NULL,
        title TEXT NOT NULL,
        facilitator TEXT NOT NULL,
        channel TEXT NOT NULL,
        address BLOB NOT NULL,
        private_address BLOB NOT NULL,
        paced INTEGER NOT NULL,
        part INTEGER NOT NULL,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        closed_at TEXT,
        place TEXT NOT NULL
    );
    CREATE INDEX gatherings_by_facilitator ON gatherings (facilitator, created_at);
    CREATE INDEX gatherings_by_place ON gatherings (place, created_at);
    ALTER TABLE runs ADD COLUMN gathering TEXT;
    CREATE INDEX runs_by_gathering ON runs (gathering);
    """,
    # 5: cohorts, schedules and the prompts they sent, and people's own time settings.
    """
    CREATE TABLE cohorts (
        name TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE members (
        cohort TEXT NOT NULL,
        participant TEXT NOT NULL,
        joined_at TEXT NOT NULL,
        PRIMARY KEY (cohort, participant)
    );
    CREATE INDEX members_by_participant ON members (participant);
    CREATE TABLE preferences (
        participant TEXT PRIMARY KEY,
        tz TEXT,
        paused_until TEXT
    );
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        guide_id TEXT NOT NULL,
        cohort TEXT NOT NULL,
        cron TEXT NOT NULL,
        tz TEXT NOT NULL,
        paused INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        checked_until TEXT NOT NULL
    );
    CREATE TABLE occurrences (
        schedule TEXT NOT NULL,
        tz TEXT NOT NULL,
        due_at TEXT NOT NULL,
        status TEXT NOT NULL,
        claimed_at TEXT NOT NULL,
        PRIMARY KEY (schedule, tz, due_at)
    );
    CREATE TABLE deliveries (
        key TEXT PRIMARY KEY,
        schedule TEXT NOT NULL,
        participant TEXT NOT NULL,
        run_id TEXT NOT NULL,
        delivered_at TEXT NOT NULL,
        reminders INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX deliveries_by_time ON deliveries (delivered_at);
    """,
    # 6: erasure leaves only this: that a pseudonym was forgotten, and when.
    """
    CREATE TABLE tombstones (
        participant TEXT PRIMARY KEY,
        at TEXT NOT NULL
    );
    CREATE INDEX deliveries_by_participant ON deliveries (participant);
    """,
    # 7: people and seen keys kept in key order, one B-tree each instead of a table and
    # its index: a chunk of a cohort (people in id order) rewrites a tenth of the
    # people's pages, not nearly all of them.
    """
    CREATE TABLE participants_by_id (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        address BLOB NOT NULL,
        language TEXT,
        current_run TEXT,
        unreachable INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    INSERT INTO participants_by_id (id, channel, address, language, current_run, unreachable)
        SELECT id, channel, address, language, current_run, unreachable FROM participants;
    DROP TABLE participants;
    ALTER TABLE participants_by_id RENAME TO participants;
    CREATE TABLE inbound_by_key (
        key TEXT PRIMARY KEY,
        at TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO inbound_by_key (key, at) SELECT key, at FROM inbound;
    DROP TABLE inbound;
    ALTER TABLE inbound_by_key RENAME TO inbound;
    """,
    # 8: invitation codes tried that were no good, in the last hour or so: counted here,
    # not in one process's memory, so that several instances share one limit.
    """
    CREATE TABLE wrong_codes (
        participant TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX wrong_codes_by_participant ON wrong_codes (participant, at);
    CREATE INDEX wrong_codes_by_time ON wrong_codes (at);
    """,
    # 9: a bot-level question (a confirmation, an offer) awaiting someone's typed answer.
    """
    ALTER TABLE participants ADD COLUMN pending TEXT;
    """,
]
