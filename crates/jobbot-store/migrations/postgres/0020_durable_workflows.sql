-- Durable, typed workflows (SQLite 0020; the outbox's typed outcomes are in 0002 here): stored
-- topic-creation attempts, stored workflows, persisted agent pauses.

-- The random_id each account was given to create a conversation's topic (`replacing` is 0 for
-- the first topic), written before the call.
CREATE TABLE topic_attempts (
    conversation_id BIGINT NOT NULL REFERENCES conversations (id),
    replacing       BIGINT NOT NULL,
    creator         TEXT   NOT NULL,
    random_id       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, replacing, creator)
);

-- Each stored workflow's typed state (`jobbot_core::workflow::Workflow` as JSON). A key starts
-- one workflow ever.
CREATE TABLE workflows (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL CHECK (kind IN ('auto_response', 'relay_to_topic')),
    state      TEXT    NOT NULL,
    finished   BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE INDEX workflows_active ON workflows (id) WHERE NOT finished;

-- An operator's pause lasts until the operator resumes the agent.
CREATE TABLE agent_pauses (
    agent     TEXT   NOT NULL PRIMARY KEY,
    paused_at BIGINT NOT NULL
);
