-- Each conversation's AI (#17): the state machine's state, the history the model sees, the
-- pending suggestion and the last turn's decision as one JSON record (`jobbot_core::ai::AiRecord`),
-- written with a version check so concurrent writers never overwrite each other. The counters
-- are also columns, written with the record, so the statistics sum them per channel in SQL.
CREATE TABLE ai_conversations (
    conversation_id   INTEGER PRIMARY KEY,
    channel_id        TEXT    NOT NULL,
    version           INTEGER NOT NULL,
    record            TEXT    NOT NULL,
    suggestions       INTEGER NOT NULL,
    replies_sent      INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

CREATE INDEX ai_conversations_by_channel ON ai_conversations (channel_id);
