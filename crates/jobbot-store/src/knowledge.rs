//! The core's [`KnowledgeIndex`] port: SQLite FTS5 (migration `0050_knowledge.sql`), PostgreSQL
//! full-text search (its `0050_knowledge.sql`: a `tsvector` of the terms with a GIN index), and
//! the same semantics in memory. SQLite and memory rank with BM25 over the chunks' search terms
//! (FTS5's `bm25()`, and its formula in memory); PostgreSQL with `ts_rank` (term frequency
//! scaled by the chunk's length; it has no corpus-wide IDF). Best first, ties in file order.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use jobbot_core::ai::knowledge::{KnowledgeChunk, KnowledgeHit, KnowledgeIndex, KnowledgeSource};
use jobbot_core::store::{StoreError, UnixMillis};
use sqlx::{Postgres, QueryBuilder};

use crate::rows::{StoredRow, column, failed, read_row};
use crate::{MemoryStore, PostgresStore, SqliteStore};

fn read_source(row: &impl StoredRow) -> Result<KnowledgeSource, String> {
    Ok(KnowledgeSource {
        source: column(row, "source")?,
        digest: column(row, "digest")?,
        chunks: count_column(row, "chunks")?,
        indexed_at: UnixMillis(column(row, "indexed_at")?),
    })
}

fn read_hit(row: &impl StoredRow) -> Result<KnowledgeHit, String> {
    Ok(KnowledgeHit {
        source: column(row, "source")?,
        position: count_column(row, "position")?,
        text: column(row, "text")?,
    })
}

fn count_column(row: &impl StoredRow, name: &str) -> Result<u32, String> {
    let value: i64 = column(row, name)?;
    u32::try_from(value).map_err(|_| format!("column {name}: {value} is out of range"))
}

/// Reads knowledge rows (they have no `id` to name them by).
fn read_all<T, R: StoredRow>(
    operation: &'static str,
    rows: &[R],
    read: impl Fn(&R) -> Result<T, String>,
) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|row| read_row(operation, "a knowledge row", row, &read))
        .collect()
}

/// An FTS5 query matching any of `terms`, each quoted so no term is read as query syntax
/// (`OR`, `NEAR`, `*`, `-`, a column filter).
fn fts_query(terms: &[String]) -> String {
    terms
        .iter()
        .map(|term| format!("\"{}\"", term.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[async_trait]
impl KnowledgeIndex for SqliteStore {
    async fn replace_knowledge(
        &self,
        channel_id: &str,
        source: &str,
        digest: &str,
        chunks: &[KnowledgeChunk],
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "index a knowledge file";
        let mut transaction = self.pool.begin().await.map_err(failed(operation))?;
        sqlx::query("DELETE FROM knowledge_chunks WHERE channel_id = ? AND source = ?")
            .bind(channel_id)
            .bind(source)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        for chunk in chunks {
            sqlx::query(
                "INSERT INTO knowledge_chunks (channel_id, source, position, text, terms) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(channel_id)
            .bind(source)
            .bind(i64::from(chunk.position))
            .bind(&chunk.text)
            .bind(&chunk.terms)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        }
        sqlx::query(
            "INSERT INTO knowledge_sources (channel_id, source, digest, chunks, indexed_at) \
             VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (channel_id, source) DO UPDATE SET \
             digest = excluded.digest, chunks = excluded.chunks, indexed_at = excluded.indexed_at",
        )
        .bind(channel_id)
        .bind(source)
        .bind(digest)
        .bind(chunks.len() as i64)
        .bind(at.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))
    }

    async fn remove_knowledge(&self, channel_id: &str, source: &str) -> Result<bool, StoreError> {
        let operation = "forget a knowledge file";
        let mut transaction = self.pool.begin().await.map_err(failed(operation))?;
        sqlx::query("DELETE FROM knowledge_chunks WHERE channel_id = ? AND source = ?")
            .bind(channel_id)
            .bind(source)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        let removed =
            sqlx::query("DELETE FROM knowledge_sources WHERE channel_id = ? AND source = ?")
                .bind(channel_id)
                .bind(source)
                .execute(&mut *transaction)
                .await
                .map_err(failed(operation))?
                .rows_affected();
        transaction.commit().await.map_err(failed(operation))?;
        Ok(removed > 0)
    }

    async fn knowledge_sources(
        &self,
        channel_id: &str,
    ) -> Result<Vec<KnowledgeSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, digest, chunks, indexed_at FROM knowledge_sources \
             WHERE channel_id = ? ORDER BY source",
        )
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list knowledge files"))?;
        read_all("list knowledge files", &rows, read_source)
    }

    async fn search_knowledge(
        &self,
        channel_id: &str,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>, StoreError> {
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT c.source, c.position, c.text \
             FROM knowledge_fts JOIN knowledge_chunks AS c ON c.id = knowledge_fts.rowid \
             WHERE knowledge_fts MATCH ? AND c.channel_id = ? \
             ORDER BY bm25(knowledge_fts), c.source, c.position LIMIT ?",
        )
        .bind(fts_query(terms))
        .bind(channel_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(failed("search the knowledge files"))?;
        read_all("search the knowledge files", &rows, read_hit)
    }
}

#[async_trait]
impl KnowledgeIndex for PostgresStore {
    async fn replace_knowledge(
        &self,
        channel_id: &str,
        source: &str,
        digest: &str,
        chunks: &[KnowledgeChunk],
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let operation = "index a knowledge file";
        let mut transaction = self.pool.begin().await.map_err(failed(operation))?;
        sqlx::query("DELETE FROM knowledge_chunks WHERE channel_id = $1 AND source = $2")
            .bind(channel_id)
            .bind(source)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        for chunk in chunks {
            sqlx::query(
                "INSERT INTO knowledge_chunks (channel_id, source, position, text, terms) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(channel_id)
            .bind(source)
            .bind(i64::from(chunk.position))
            .bind(&chunk.text)
            .bind(&chunk.terms)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        }
        sqlx::query(
            "INSERT INTO knowledge_sources (channel_id, source, digest, chunks, indexed_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (channel_id, source) DO UPDATE SET \
             digest = excluded.digest, chunks = excluded.chunks, indexed_at = excluded.indexed_at",
        )
        .bind(channel_id)
        .bind(source)
        .bind(digest)
        .bind(chunks.len() as i64)
        .bind(at.0)
        .execute(&mut *transaction)
        .await
        .map_err(failed(operation))?;
        transaction.commit().await.map_err(failed(operation))
    }

    async fn remove_knowledge(&self, channel_id: &str, source: &str) -> Result<bool, StoreError> {
        let operation = "forget a knowledge file";
        let mut transaction = self.pool.begin().await.map_err(failed(operation))?;
        sqlx::query("DELETE FROM knowledge_chunks WHERE channel_id = $1 AND source = $2")
            .bind(channel_id)
            .bind(source)
            .execute(&mut *transaction)
            .await
            .map_err(failed(operation))?;
        let removed =
            sqlx::query("DELETE FROM knowledge_sources WHERE channel_id = $1 AND source = $2")
                .bind(channel_id)
                .bind(source)
                .execute(&mut *transaction)
                .await
                .map_err(failed(operation))?
                .rows_affected();
        transaction.commit().await.map_err(failed(operation))?;
        Ok(removed > 0)
    }

    async fn knowledge_sources(
        &self,
        channel_id: &str,
    ) -> Result<Vec<KnowledgeSource>, StoreError> {
        let rows = sqlx::query(
            "SELECT source, digest, chunks, indexed_at FROM knowledge_sources \
             WHERE channel_id = $1 ORDER BY source",
        )
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await
        .map_err(failed("list knowledge files"))?;
        read_all("list knowledge files", &rows, read_source)
    }

    async fn search_knowledge(
        &self,
        channel_id: &str,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>, StoreError> {
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // Any of the terms: each becomes a query of its own with `plainto_tsquery`, which reads
        // no operators (so no term is query syntax) and never fails, and they are OR-ed (`||`).
        let mut select =
            QueryBuilder::<Postgres>::new("WITH query AS (SELECT (plainto_tsquery('simple', ");
        let mut first = true;
        for term in terms {
            if !first {
                select.push(") || plainto_tsquery('simple', ");
            }
            first = false;
            select.push_bind(term.as_str());
        }
        select
            .push(
                ")) AS q) \
                 SELECT c.source, c.position, c.text FROM knowledge_chunks AS c, query \
                 WHERE c.channel_id = ",
            )
            .push_bind(channel_id)
            .push(
                " AND c.terms_vector @@ query.q \
                 ORDER BY ts_rank(c.terms_vector, query.q, 1) DESC, c.source, c.position \
                 LIMIT ",
            )
            .push_bind(i64::from(limit));
        let rows = select
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(failed("search the knowledge files"))?;
        read_all("search the knowledge files", &rows, read_hit)
    }
}

/// The knowledge tables of [`MemoryStore`].
#[derive(Debug, Default)]
pub(crate) struct KnowledgeTables {
    files: BTreeMap<(String, String), (KnowledgeSource, Vec<KnowledgeChunk>)>,
}

impl KnowledgeTables {
    /// FTS5's BM25 (k1 = 1.2, b = 0.75, IDF over every indexed chunk, floored at 1e-6), so the
    /// memory store ranks as SQLite does.
    fn search(&self, channel_id: &str, terms: &[String], limit: u32) -> Vec<KnowledgeHit> {
        const K1: f64 = 1.2;
        const B: f64 = 0.75;
        let all: Vec<(&str, &KnowledgeChunk)> = self
            .files
            .iter()
            .flat_map(|((channel, _), (_, chunks))| {
                chunks.iter().map(move |chunk| (channel.as_str(), chunk))
            })
            .collect();
        if all.is_empty() {
            return Vec::new();
        }
        let tokens = |chunk: &KnowledgeChunk| chunk.terms.split_whitespace().count() as f64;
        let total = all.len() as f64;
        let average = all.iter().map(|(_, chunk)| tokens(chunk)).sum::<f64>() / total;
        let mut with_term: HashMap<&str, f64> = HashMap::new();
        for term in terms {
            let count = all
                .iter()
                .filter(|(_, chunk)| chunk.terms.split_whitespace().any(|t| t == term))
                .count();
            with_term.insert(term.as_str(), count as f64);
        }
        let mut scored: Vec<(f64, &KnowledgeSource, &KnowledgeChunk)> = Vec::new();
        for ((channel, _), (source, chunks)) in &self.files {
            if channel != channel_id {
                continue;
            }
            for chunk in chunks {
                let length = tokens(chunk);
                let mut score = 0.0;
                let mut matched = false;
                for term in terms {
                    let frequency =
                        chunk.terms.split_whitespace().filter(|t| t == term).count() as f64;
                    if frequency == 0.0 {
                        continue;
                    }
                    matched = true;
                    let containing = with_term[term.as_str()];
                    let idf = ((total - containing + 0.5) / (containing + 0.5))
                        .ln()
                        .max(1e-6);
                    score += idf * frequency * (K1 + 1.0)
                        / (frequency + K1 * (1.0 - B + B * length / average));
                }
                if matched {
                    scored.push((score, source, chunk));
                }
            }
        }
        scored.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| a.1.source.cmp(&b.1.source))
                .then_with(|| a.2.position.cmp(&b.2.position))
        });
        scored
            .into_iter()
            .take(limit as usize)
            .map(|(_, source, chunk)| KnowledgeHit {
                source: source.source.clone(),
                position: chunk.position,
                text: chunk.text.clone(),
            })
            .collect()
    }
}

#[async_trait]
impl KnowledgeIndex for MemoryStore {
    async fn replace_knowledge(
        &self,
        channel_id: &str,
        source: &str,
        digest: &str,
        chunks: &[KnowledgeChunk],
        at: UnixMillis,
    ) -> Result<(), StoreError> {
        let record = KnowledgeSource {
            source: source.to_owned(),
            digest: digest.to_owned(),
            chunks: chunks.len() as u32,
            indexed_at: at,
        };
        self.knowledge().files.insert(
            (channel_id.to_owned(), source.to_owned()),
            (record, chunks.to_vec()),
        );
        Ok(())
    }

    async fn remove_knowledge(&self, channel_id: &str, source: &str) -> Result<bool, StoreError> {
        Ok(self
            .knowledge()
            .files
            .remove(&(channel_id.to_owned(), source.to_owned()))
            .is_some())
    }

    async fn knowledge_sources(
        &self,
        channel_id: &str,
    ) -> Result<Vec<KnowledgeSource>, StoreError> {
        Ok(self
            .knowledge()
            .files
            .iter()
            .filter(|((channel, _), _)| channel == channel_id)
            .map(|(_, (source, _))| source.clone())
            .collect())
    }

    async fn search_knowledge(
        &self,
        channel_id: &str,
        terms: &[String],
        limit: u32,
    ) -> Result<Vec<KnowledgeHit>, StoreError> {
        Ok(self.knowledge().search(channel_id, terms, limit))
    }
}
