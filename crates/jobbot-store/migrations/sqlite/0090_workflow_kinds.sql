-- Workflows of new kinds (`media_to_contact`: an operator's file relayed to the contact, with a
-- note in the topic when Telegram refuses it). The kind is written only from the typed
-- `jobbot_core::workflow::Workflow::kind`, so the column no longer lists the kinds: a CHECK here
-- would have to be rebuilt for every new kind, and two features adding kinds would each drop the
-- other's. SQLite cannot drop a CHECK in place: the table is rebuilt, rows and ids kept.
CREATE TABLE workflows_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL CHECK (kind <> ''),
    state      TEXT    NOT NULL,
    finished   INTEGER NOT NULL CHECK (finished IN (0, 1)),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- 0061: the node executing it (several nodes on one database).
    claimed_by TEXT
) STRICT;

INSERT INTO workflows_new (id, key, kind, state, finished, created_at, updated_at, claimed_by)
    SELECT id, key, kind, state, finished, created_at, updated_at, claimed_by FROM workflows;

DROP TABLE workflows;
ALTER TABLE workflows_new RENAME TO workflows;

CREATE INDEX workflows_active ON workflows (id) WHERE finished = 0;
