-- The web interface's credentials (SQLite 0030): SHA-256 digests of the secrets only, each row
-- with an absolute expiry.

CREATE TABLE web_sessions (
    digest       BYTEA  NOT NULL PRIMARY KEY CHECK (length(digest) = 32),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);

CREATE TABLE api_tokens (
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    digest       BYTEA  NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

CREATE INDEX api_tokens_expiry ON api_tokens (expires_at);
