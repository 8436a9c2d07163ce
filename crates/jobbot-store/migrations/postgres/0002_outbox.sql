-- The durable outbox (SQLite 0002 and 0020's typed outcomes): every outgoing message is stored
-- here before anything is sent, so a restart resumes what was pending and cannot send anything
-- twice.
CREATE TABLE outbox (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id      TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN
                        ('notification', 'auto_response', 'relay_to_contact', 'topic_post', 'other')),
    sender          TEXT    NOT NULL,
    recipient       TEXT    NOT NULL,
    content         TEXT    NOT NULL,
    first_contact   BOOLEAN NOT NULL,
    -- UNIQUE lets any number of NULLs through: messages without a key are never deduplicated.
    idempotency_key TEXT    UNIQUE,
    created_at      BIGINT  NOT NULL,
    not_before      BIGINT,
    expires_at      BIGINT  NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sent', 'failed', 'expired')),
    attempts        BIGINT  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_agent      TEXT,
    -- Set by the start of an attempt, cleared by Telegram's refusal: while set, the message is
    -- retried only on this agent, with the random_id in `outbox_attempts`.
    in_doubt_agent  TEXT,
    sent_agent      TEXT,
    sent_chat       BIGINT,
    sent_message_id BIGINT,
    sent_at         BIGINT,
    -- `Holdup` as JSON: what held the message up last while it was pending.
    holdup          TEXT,
    -- `OutboxEnd` as JSON: why it failed or expired.
    end_reason      TEXT,
    updated_at      BIGINT  NOT NULL,
    -- A sent record exists exactly when the message was sent; its message id may be unknown.
    CHECK ((status = 'sent') = (sent_agent IS NOT NULL)),
    CHECK ((sent_agent IS NULL) = (sent_at IS NULL)),
    CHECK ((sent_chat IS NULL) = (sent_message_id IS NULL)),
    CHECK (sent_agent IS NOT NULL OR sent_chat IS NULL),
    CHECK (status = 'pending' OR in_doubt_agent IS NULL),
    CHECK (status IN ('failed', 'expired') OR end_reason IS NULL)
);

-- What a restart and the dispatcher read: pending messages in id (enqueue) order.
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
-- The statistics read ended messages by when they ended, and sends by when they were sent.
CREATE INDEX outbox_updated_at ON outbox (updated_at);
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
-- What the operator checks: messages that ended without delivery, newest first.
CREATE INDEX outbox_ended ON outbox (updated_at, id) WHERE status IN ('failed', 'expired');

-- The random id each agent was given for a message, written before its first send. A retry on
-- the same account reuses it, so Telegram drops the duplicate.
CREATE TABLE outbox_attempts (
    outbox_id        BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    agent            TEXT   NOT NULL,
    random_id        BIGINT NOT NULL,
    first_attempt_at BIGINT NOT NULL,
    PRIMARY KEY (outbox_id, agent)
);
