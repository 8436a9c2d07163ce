-- The durable outbox: every outgoing message is stored here before anything is sent, so a
-- restart resumes what was pending and cannot send anything twice.
--
-- JSON columns hold the serde form of the core types (`SenderSelection`, `Recipient`,
-- `MessageContent`); the store writes and reads them only through those types.
CREATE TABLE outbox (
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
    sent_agent      TEXT,
    sent_chat       INTEGER,
    sent_message_id INTEGER,
    sent_at         INTEGER,
    reason          TEXT,
    updated_at      INTEGER NOT NULL,
    -- A sent record exists exactly when the message was sent, and then whole.
    CHECK ((status = 'sent') = (sent_agent IS NOT NULL)),
    CHECK ((sent_agent IS NULL) = (sent_chat IS NULL)
       AND (sent_agent IS NULL) = (sent_message_id IS NULL)
       AND (sent_agent IS NULL) = (sent_at IS NULL))
) STRICT;

-- What a restart and the dispatcher read: pending messages in id (enqueue) order. Partial, so it
-- stays as small as the backlog however long the history grows.
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';

-- The random id each agent was given for a message, written before its first send. A retry on
-- the same account reuses it, so Telegram drops the duplicate; this row surviving a crash is
-- what makes a restart unable to double-send.
CREATE TABLE outbox_attempts (
    outbox_id        INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    agent            TEXT    NOT NULL,
    random_id        INTEGER NOT NULL,
    first_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (outbox_id, agent)
) STRICT, WITHOUT ROWID;
