-- Nodes and session leases (PostgreSQL 0060, which also holds the configuration document and
-- the sessions). A SQLite database serves one node, whose leases are taken the same way.

-- Live nodes: a node renews its row while it runs; a row past `expires_at` is a node gone.
CREATE TABLE cluster_nodes (
    node         TEXT    NOT NULL PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

-- Session leases: `token` is the fencing token; it grows each time the lease changes hands, and
-- rows are never deleted, so a token is never given out twice for one session.
CREATE TABLE session_leases (
    session     TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT,
    token       INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    renewed_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
