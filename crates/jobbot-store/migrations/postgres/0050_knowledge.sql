-- The knowledge files of each channel, cut into chunks and indexed for full-text search
-- (SQLite 0050). `terms` holds the chunk's search terms as the core computes them (lower case,
-- Snowball stems, no stop words), so the `simple` text-search configuration only splits them:
-- stemming twice would change them.

CREATE TABLE knowledge_sources (
    channel_id TEXT   NOT NULL,
    source     TEXT   NOT NULL,
    digest     TEXT   NOT NULL,
    chunks     BIGINT NOT NULL,
    indexed_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, source)
);

CREATE TABLE knowledge_chunks (
    id         BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id TEXT     NOT NULL,
    source     TEXT     NOT NULL,
    position   BIGINT   NOT NULL,
    text       TEXT     NOT NULL,
    terms      TEXT     NOT NULL,
    -- Kept in step with `terms` by PostgreSQL itself.
    terms_vector TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple', terms)) STORED,
    UNIQUE (channel_id, source, position)
);

CREATE INDEX knowledge_chunks_search ON knowledge_chunks USING GIN (terms_vector);
