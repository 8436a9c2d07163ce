-- Each conversation's AI (SQLite 0051): one JSON record per conversation with a version for
-- compare-and-set writes, and its counters as columns for the statistics.
CREATE TABLE ai_conversations (
    conversation_id   BIGINT PRIMARY KEY,
    channel_id        TEXT   NOT NULL,
    version           BIGINT NOT NULL,
    record            TEXT   NOT NULL,
    suggestions       BIGINT NOT NULL,
    replies_sent      BIGINT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    errors            BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE INDEX ai_conversations_by_channel ON ai_conversations (channel_id);
