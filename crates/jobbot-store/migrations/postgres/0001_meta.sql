-- jobbot's operational store on PostgreSQL: the same tables, columns and meaning as the SQLite
-- schema (`../sqlite/`), so one row reader serves both (`src/rows.rs`). Each migration here has
-- the number of the SQLite migration it matches, and holds that feature's tables in their
-- current form (PostgreSQL starts where SQLite's later rebuilds ended). A change to the SQLite
-- schema gets its PostgreSQL migration with the same number.
--
-- Times are Unix milliseconds (BIGINT), chat ids Bot API dialog ids (BIGINT), and JSON columns
-- are TEXT holding the serde form of the core types, written and read only through those types
-- (jsonb would reorder keys and buys queries jobbot does not make).
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (key, value) VALUES ('application', 'jobbot');
