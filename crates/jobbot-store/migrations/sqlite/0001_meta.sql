-- The first schema: only what tells a jobbot database apart and proves migrations ran.
-- Tables for processed messages, the outbox, conversations and statistics come with the issues
-- that use them, each in its own migration, so their shape is decided by the code that needs it.
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

INSERT INTO meta (key, value) VALUES ('application', 'jobbot');
