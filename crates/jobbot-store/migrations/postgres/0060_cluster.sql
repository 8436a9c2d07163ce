-- Several nodes on one database (issue #16, SQLite 0060 has the node and lease tables only: a
-- SQLite node keeps its configuration and sessions in files).

-- The configuration document, one row: its bytes exactly as written (the revision is their
-- hash, as for the file), so every node loads the same snapshot. Writes compare and set on
-- `revision` and notify the channel `jobbot_config` in the same transaction.
CREATE TABLE config_document (
    id         SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    body       BYTEA    NOT NULL,
    revision   TEXT     NOT NULL,
    updated_at BIGINT   NOT NULL
);

-- Telegram sessions, each the sealed (ChaCha20-Poly1305) session file's bytes: the database
-- never holds an auth key in the clear.
CREATE TABLE session_data (
    name       TEXT   NOT NULL PRIMARY KEY,
    body       BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Live nodes: a node renews its row while it runs; a row past `expires_at` is a node gone.
CREATE TABLE cluster_nodes (
    node         TEXT   NOT NULL PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- Session leases: a node uses a session only while it holds its lease. `token` is the fencing
-- token: it grows each time the lease changes hands, and rows are never deleted, so a token is
-- never given out twice for one session.
CREATE TABLE session_leases (
    session     TEXT   NOT NULL PRIMARY KEY,
    holder      TEXT,
    token       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
