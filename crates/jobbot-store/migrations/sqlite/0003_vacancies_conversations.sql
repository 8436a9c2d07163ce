-- Processed messages (the vacancy history), repost claims, CRM conversations with what was
-- relayed in them, and the records the status page's statistics read.
--
-- Chat ids are Bot API dialog ids (`ChatId::get`), times are Unix milliseconds, and JSON columns
-- hold the serde form of the core types; the store reads and writes them only through those types.

-- Each message monitoring looked at, once: `(source, message_id)` is unique, so a replayed or
-- edited message is never processed twice.
CREATE TABLE processed_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       INTEGER NOT NULL,
    message_id   INTEGER NOT NULL,
    source_title TEXT    NOT NULL,
    link         TEXT    NOT NULL,
    text         TEXT    NOT NULL,
    text_hash    TEXT    NOT NULL,
    posted_at    INTEGER NOT NULL,
    processed_at INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('relevant', 'not_relevant')),
    -- `Vec<MatchedChannel>` in the order monitoring decided it; `vacancy_channels` indexes it.
    matched      TEXT    NOT NULL,
    -- `VacancyContacts`.
    contacts     TEXT    NOT NULL,
    UNIQUE (source, message_id)
) STRICT;

-- The history page filters by status, newest first.
CREATE INDEX processed_messages_status ON processed_messages (status, id);

-- Which output channels each processed message matched, so the history can be filtered by
-- channel without reading every row's JSON. Written with the row, never changed.
CREATE TABLE vacancy_channels (
    channel_id   TEXT    NOT NULL,
    processed_id INTEGER NOT NULL REFERENCES processed_messages (id) ON DELETE CASCADE,
    PRIMARY KEY (channel_id, processed_id)
) STRICT, WITHOUT ROWID;

-- The last time each output channel was notified of each vacancy text. Only the newest claim
-- matters to the repost window, so a claim replaces an older one instead of adding a row.
CREATE TABLE notification_claims (
    channel_id TEXT    NOT NULL,
    text_hash  TEXT    NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, text_hash)
) STRICT, WITHOUT ROWID;

-- One conversation per contact per CRM group, with one agent for good.
CREATE TABLE conversations (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_id               TEXT    NOT NULL,
    group_id                 INTEGER NOT NULL,
    topic_id                 INTEGER,
    contact                  INTEGER NOT NULL,
    contact_username         TEXT,
    contact_name             TEXT    NOT NULL,
    agent                    TEXT    NOT NULL,
    -- The contact as the agent knows them; the access hash is valid for that agent only.
    contact_peer_id          INTEGER,
    contact_peer_access_hash INTEGER,
    status                   TEXT    NOT NULL DEFAULT 'active'
                                 CHECK (status IN ('active', 'closed')),
    created_at               INTEGER NOT NULL,
    last_message_at          INTEGER NOT NULL,
    UNIQUE (group_id, contact),
    CHECK ((contact_peer_id IS NULL) = (contact_peer_access_hash IS NULL))
) STRICT;

-- A topic belongs to one conversation; an operator's reply is routed by it.
CREATE UNIQUE INDEX conversations_topic ON conversations (group_id, topic_id)
    WHERE topic_id IS NOT NULL;

-- A contact's private message is routed to every active conversation they have with that agent.
CREATE INDEX conversations_agent_contact ON conversations (agent, contact) WHERE status = 'active';

-- Messages relayed (or posted) for a conversation, both ends by id.
CREATE TABLE relays (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id   INTEGER NOT NULL REFERENCES conversations (id),
    direction         TEXT    NOT NULL
                          CHECK (direction IN ('contact_to_topic', 'topic_to_contact', 'service')),
    source_chat       INTEGER,
    source_message_id INTEGER,
    outbox_id         INTEGER REFERENCES outbox (id),
    at                INTEGER NOT NULL,
    CHECK ((source_chat IS NULL) = (source_message_id IS NULL))
) STRICT;

-- A source message is relayed once per conversation and direction; a replay inserts nothing.
-- Service posts have no source and are never deduplicated (NULLs are distinct, and the index
-- leaves them out anyway).
CREATE UNIQUE INDEX relays_source
    ON relays (conversation_id, direction, source_chat, source_message_id)
    WHERE source_chat IS NOT NULL;

-- Messages jobbot posted in CRM groups: its own posts are recognised by id, never by text.
CREATE TABLE own_posts (
    group_id        INTEGER NOT NULL,
    message_id      INTEGER NOT NULL,
    conversation_id INTEGER REFERENCES conversations (id),
    PRIMARY KEY (group_id, message_id)
) STRICT, WITHOUT ROWID;

-- The last auto-response each contact got from each channel (the cross-channel cooldown reads
-- the newest over all channels; the primary key serves that lookup).
CREATE TABLE auto_responses (
    contact    INTEGER NOT NULL,
    channel_id TEXT    NOT NULL,
    last_at    INTEGER NOT NULL,
    PRIMARY KEY (contact, channel_id)
) STRICT, WITHOUT ROWID;

-- Flood waits, PeerFlood, deaths: what the usage charts show beside the send counts.
CREATE TABLE agent_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    agent  TEXT    NOT NULL,
    kind   TEXT    NOT NULL,
    detail TEXT    NOT NULL,
    at     INTEGER NOT NULL
) STRICT;

CREATE INDEX agent_events_at ON agent_events (at, id);

-- The statistics read ended messages by when they ended, and sends by when they were sent.
CREATE INDEX outbox_updated_at ON outbox (updated_at);
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
