-- The knowledge files of each channel (`ai_config.knowledge_files`), cut into chunks and indexed
-- for full-text search (#17). `terms` holds the chunk's search terms as the core computes them
-- (`jobbot_core::ai::knowledge::search_terms`: lower case, Snowball stems, no stop words), so
-- Russian word forms meet whatever SQLite's tokenizer knows; FTS5 only matches and ranks them.

-- One row per indexed file: its digest says whether the file changed since.
CREATE TABLE knowledge_sources (
    channel_id TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    chunks     INTEGER NOT NULL,
    indexed_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, source)
) STRICT;

CREATE TABLE knowledge_chunks (
    id         INTEGER PRIMARY KEY,
    channel_id TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    position   INTEGER NOT NULL,
    text       TEXT    NOT NULL,
    terms      TEXT    NOT NULL,
    UNIQUE (channel_id, source, position)
) STRICT;

-- An external-content index over `knowledge_chunks.terms` (rowid = chunk id), kept in step by
-- the triggers below, so a chunk's text is stored once.
CREATE VIRTUAL TABLE knowledge_fts USING fts5(
    terms,
    content = 'knowledge_chunks',
    content_rowid = 'id',
    tokenize = 'unicode61'
);

CREATE TRIGGER knowledge_chunks_indexed AFTER INSERT ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (rowid, terms) VALUES (new.id, new.terms);
END;

CREATE TRIGGER knowledge_chunks_unindexed AFTER DELETE ON knowledge_chunks BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, terms) VALUES ('delete', old.id, old.terms);
END;
