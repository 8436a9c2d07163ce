-- Durable, typed workflows (issue 13): typed outbox outcomes, stored workflows, persisted agent
-- pauses, stored topic-creation attempts.

-- ----- The outbox, rebuilt with typed outcomes -----
--
-- What changes:
-- - `reason` (free text) gives way to typed JSON: `holdup` (`Holdup`, why a pending message
--   waits) and `end_reason` (`OutboxEnd`, why it failed or expired). The old text is kept in
--   `legacy_reason` for the rows written before, and never read by jobbot.
-- - `in_doubt_agent`: the agent whose last attempt may have been delivered. The old schema
--   encoded that as a text prefix that a later note could overwrite.
-- - a sent message may have no message id: Telegram answers `RANDOM_ID_DUPLICATE` when a send
--   with the same random_id is already on its way, without naming the message.
--
-- SQLite cannot change a table's CHECK constraints, so the table is rebuilt. Migrations run in a
-- transaction with foreign keys on, where dropping `outbox` would cascade into
-- `outbox_attempts`: the child rows are set aside first and put back after the rename.

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id      TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN
                        ('notification', 'auto_response', 'relay_to_contact', 'topic_post', 'other')),
    sender          TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    first_contact   INTEGER NOT NULL CHECK (first_contact IN (0, 1)),
    -- UNIQUE lets any number of NULLs through: messages without a key are never deduplicated.
    idempotency_key TEXT    UNIQUE,
    created_at      INTEGER NOT NULL,
    not_before      INTEGER,
    expires_at      INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'failed', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_agent      TEXT,
    -- Set by the start of an attempt, cleared by Telegram's refusal: while set, the message is
    -- retried only on this agent, with the random_id in `outbox_attempts`.
    in_doubt_agent  TEXT,
    sent_agent      TEXT,
    sent_chat       INTEGER,
    sent_message_id INTEGER,
    sent_at         INTEGER,
    -- `Holdup` as JSON: what held the message up last while it was pending.
    holdup          TEXT,
    -- `OutboxEnd` as JSON: why it failed or expired.
    end_reason      TEXT,
    -- The free-text reason of rows written before this migration; never read by jobbot.
    legacy_reason   TEXT,
    updated_at      INTEGER NOT NULL,
    -- A sent record exists exactly when the message was sent; its message id may be unknown.
    CHECK ((status = 'sent') = (sent_agent IS NOT NULL)),
    CHECK ((sent_agent IS NULL) = (sent_at IS NULL)),
    CHECK ((sent_chat IS NULL) = (sent_message_id IS NULL)),
    CHECK (sent_agent IS NOT NULL OR sent_chat IS NULL),
    CHECK (status = 'pending' OR in_doubt_agent IS NULL),
    CHECK (status IN ('failed', 'expired') OR end_reason IS NULL)
) STRICT;

-- Pending rows whose last attempt was not refused by Telegram were in doubt under the old
-- encoding ("not delivered by <agent>: …" marked a refusal): carry that over, once.
INSERT INTO outbox_new (id, channel_id, kind, sender, recipient, content, first_contact,
        idempotency_key, created_at, not_before, expires_at, status, attempts, last_agent,
        in_doubt_agent, sent_agent, sent_chat, sent_message_id, sent_at, holdup, end_reason,
        legacy_reason, updated_at)
    SELECT id, channel_id, kind, sender, recipient, content, first_contact,
        idempotency_key, created_at, not_before, expires_at, status, attempts, last_agent,
        CASE
            WHEN status = 'pending' AND attempts > 0 AND last_agent IS NOT NULL
                 AND (reason IS NULL
                      OR substr(reason, 1, length('not delivered by ' || last_agent || ':'))
                         != 'not delivered by ' || last_agent || ':')
            THEN last_agent
        END,
        sent_agent, sent_chat, sent_message_id, sent_at, NULL, NULL, reason, updated_at
    FROM outbox;

CREATE TEMP TABLE saved_outbox_attempts AS SELECT * FROM outbox_attempts;
CREATE TEMP TABLE saved_relays AS SELECT * FROM relays;
DELETE FROM relays;
DELETE FROM outbox_attempts;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
INSERT INTO outbox_attempts SELECT * FROM saved_outbox_attempts;
INSERT INTO relays SELECT * FROM saved_relays;
DROP TABLE saved_outbox_attempts;
DROP TABLE saved_relays;

CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
CREATE INDEX outbox_updated_at ON outbox (updated_at);
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
-- What the operator checks: messages that ended without delivery, newest first.
CREATE INDEX outbox_ended ON outbox (updated_at, id) WHERE status IN ('failed', 'expired');

-- One relay record per outbox message: recording a delivered post again (a workflow resumed
-- after a crash) inserts nothing.
CREATE UNIQUE INDEX relays_outbox ON relays (outbox_id) WHERE outbox_id IS NOT NULL;

-- ----- Topic creation attempts -----
-- The random_id each account was given to create a conversation's topic (the first one, or the
-- one replacing deleted topic `replacing`; 0 for the first), written before the call: a retry
-- after a crash repeats it, and Telegram returns the topic it created instead of a second one.
CREATE TABLE topic_attempts (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id),
    replacing       INTEGER NOT NULL,
    creator         TEXT    NOT NULL,
    random_id       INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, replacing, creator)
) STRICT, WITHOUT ROWID;

-- ----- Workflows -----
-- Each stored workflow's typed state (`jobbot_core::workflow::Workflow` as JSON). A key starts
-- one workflow ever, so a replayed trigger starts nothing.
CREATE TABLE workflows (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL CHECK (kind IN ('auto_response', 'relay_to_topic')),
    state      TEXT    NOT NULL,
    finished   INTEGER NOT NULL CHECK (finished IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- What a restart resumes: unfinished workflows, oldest first.
CREATE INDEX workflows_active ON workflows (id) WHERE finished = 0;

-- ----- Agent pauses -----
-- An operator's pause lasts until the operator resumes the agent: across configuration saves
-- and restarts.
CREATE TABLE agent_pauses (
    agent     TEXT    NOT NULL PRIMARY KEY,
    paused_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
