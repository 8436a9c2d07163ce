-- What the scheduler learned about each agent account's limits (SQLite 0010): the JSON of
-- `jobbot_core::scheduling::LearnedLimits`, one row per account, replaced on change.

CREATE TABLE learned_limits (
    agent      TEXT   NOT NULL PRIMARY KEY,
    learned    TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
