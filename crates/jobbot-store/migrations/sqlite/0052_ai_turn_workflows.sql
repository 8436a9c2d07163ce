-- AI turns are stored workflows too (`ai_turn`, #17). SQLite cannot change a CHECK constraint,
-- so the table is rebuilt with the same rows, ids and indexes (nothing references it).
CREATE TABLE workflows_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL CHECK (kind IN ('auto_response', 'relay_to_topic', 'ai_turn')),
    state      TEXT    NOT NULL,
    finished   INTEGER NOT NULL CHECK (finished IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

INSERT INTO workflows_new (id, key, kind, state, finished, created_at, updated_at)
    SELECT id, key, kind, state, finished, created_at, updated_at FROM workflows;
DROP TABLE workflows;
ALTER TABLE workflows_new RENAME TO workflows;

CREATE INDEX workflows_active ON workflows (id) WHERE finished = 0;
