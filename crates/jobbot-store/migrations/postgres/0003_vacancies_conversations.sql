-- Processed messages (the vacancy history), repost claims, CRM conversations with what was
-- relayed in them, and the records the status page's statistics read (SQLite 0003).

-- Each message monitoring looked at, once.
CREATE TABLE processed_messages (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       BIGINT NOT NULL,
    message_id   BIGINT NOT NULL,
    source_title TEXT   NOT NULL,
    link         TEXT   NOT NULL,
    text         TEXT   NOT NULL,
    text_hash    TEXT   NOT NULL,
    posted_at    BIGINT NOT NULL,
    processed_at BIGINT NOT NULL,
    status       TEXT   NOT NULL CHECK (status IN ('relevant', 'not_relevant')),
    -- `Vec<MatchedChannel>`; `vacancy_channels` indexes it.
    matched      TEXT   NOT NULL,
    -- `VacancyContacts`.
    contacts     TEXT   NOT NULL,
    UNIQUE (source, message_id)
);

CREATE INDEX processed_messages_status ON processed_messages (status, id);

CREATE TABLE vacancy_channels (
    channel_id   TEXT   NOT NULL,
    processed_id BIGINT NOT NULL REFERENCES processed_messages (id) ON DELETE CASCADE,
    PRIMARY KEY (channel_id, processed_id)
);

-- The last time each output channel was notified of each vacancy text.
CREATE TABLE notification_claims (
    channel_id TEXT   NOT NULL,
    text_hash  TEXT   NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, text_hash)
);

-- One conversation per contact per CRM group, with one agent for good.
CREATE TABLE conversations (
    id                       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id               TEXT   NOT NULL,
    group_id                 BIGINT NOT NULL,
    topic_id                 BIGINT,
    contact                  BIGINT NOT NULL,
    contact_username         TEXT,
    contact_name             TEXT   NOT NULL,
    agent                    TEXT   NOT NULL,
    -- The contact as the agent knows them; the access hash is valid for that agent only.
    contact_peer_id          BIGINT,
    contact_peer_access_hash BIGINT,
    status                   TEXT   NOT NULL DEFAULT 'active'
                                 CHECK (status IN ('active', 'closed')),
    created_at               BIGINT NOT NULL,
    last_message_at          BIGINT NOT NULL,
    UNIQUE (group_id, contact),
    CHECK ((contact_peer_id IS NULL) = (contact_peer_access_hash IS NULL))
);

CREATE UNIQUE INDEX conversations_topic ON conversations (group_id, topic_id)
    WHERE topic_id IS NOT NULL;
CREATE INDEX conversations_agent_contact ON conversations (agent, contact) WHERE status = 'active';

-- Messages relayed (or posted) for a conversation, both ends by id.
CREATE TABLE relays (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id   BIGINT NOT NULL REFERENCES conversations (id),
    direction         TEXT   NOT NULL
                          CHECK (direction IN ('contact_to_topic', 'topic_to_contact', 'service')),
    source_chat       BIGINT,
    source_message_id BIGINT,
    outbox_id         BIGINT REFERENCES outbox (id),
    at                BIGINT NOT NULL,
    CHECK ((source_chat IS NULL) = (source_message_id IS NULL))
);

-- A source message is relayed once per conversation and direction; service posts never dedupe.
CREATE UNIQUE INDEX relays_source
    ON relays (conversation_id, direction, source_chat, source_message_id)
    WHERE source_chat IS NOT NULL;
-- One relay record per outbox message (SQLite 0020).
CREATE UNIQUE INDEX relays_outbox ON relays (outbox_id) WHERE outbox_id IS NOT NULL;

-- Messages jobbot posted in CRM groups: its own posts are recognised by id, never by text.
CREATE TABLE own_posts (
    group_id        BIGINT NOT NULL,
    message_id      BIGINT NOT NULL,
    conversation_id BIGINT REFERENCES conversations (id),
    PRIMARY KEY (group_id, message_id)
);

-- The last auto-response each contact got from each channel.
CREATE TABLE auto_responses (
    contact    BIGINT NOT NULL,
    channel_id TEXT   NOT NULL,
    last_at    BIGINT NOT NULL,
    PRIMARY KEY (contact, channel_id)
);

-- Flood waits, PeerFlood, deaths: what the usage charts show beside the send counts.
CREATE TABLE agent_events (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent  TEXT   NOT NULL,
    kind   TEXT   NOT NULL,
    detail TEXT   NOT NULL,
    at     BIGINT NOT NULL
);

CREATE INDEX agent_events_at ON agent_events (at, id);
