-- The web interface's credentials, so browser sessions and API tokens survive a restart. Only
-- SHA-256 digests of the secrets are stored (32-byte blobs): the database gives no way in. Each
-- row has an absolute expiry; an expired row is treated as absent and purged now and then.

CREATE TABLE web_sessions (
    digest       BLOB    NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    digest       BLOB    NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_used_at INTEGER
) STRICT;

CREATE INDEX api_tokens_expiry ON api_tokens (expires_at);
