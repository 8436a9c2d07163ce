//! `ai_config.knowledge_files` from disk into the store's [`KnowledgeIndex`], and the facts a
//! contact's message finds there. Files are read relative to the data directory (validation
//! refuses absolute paths and `..`); an unchanged file (same digest) is not indexed again.

use std::path::Path;

use jobbot_core::ai::knowledge::{KnowledgeIndex, MAX_FACTS, chunks_of, digest, query_terms};
use jobbot_core::store::{StoreError, UnixMillis};

/// The largest knowledge file read (a knowledge file is text written by hand).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What one synchronisation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnowledgeSync {
    pub indexed: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    /// Files that could not be read; what was indexed from them before stays.
    pub problems: Vec<KnowledgeFileProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnowledgeFileProblem {
    #[error("knowledge file {path}: not found")]
    Missing { path: String },
    #[error("knowledge file {path}: larger than {} MiB", MAX_FILE_BYTES / 1024 / 1024)]
    TooLarge { path: String },
    #[error("knowledge file {path}: not UTF-8 text")]
    NotText { path: String },
    #[error("knowledge file {path}: could not be read ({kind})")]
    Unreadable { path: String, kind: String },
}

/// Brings a channel's index in line with its `knowledge_files`: new or changed files are
/// (re)indexed, files no longer listed are forgotten.
pub async fn sync_knowledge(
    index: &dyn KnowledgeIndex,
    data_dir: &Path,
    channel_id: &str,
    files: &[String],
    now: UnixMillis,
) -> Result<KnowledgeSync, StoreError> {
    let mut report = KnowledgeSync::default();
    let known = index.knowledge_sources(channel_id).await?;
    for file in files {
        let text = match read_text(&data_dir.join(file), file).await {
            Ok(text) => text,
            Err(problem) => {
                tracing::warn!(target: "ai", %channel_id, %problem, "knowledge file skipped");
                report.problems.push(problem);
                continue;
            }
        };
        let file_digest = digest(&text);
        if known
            .iter()
            .any(|source| source.source == *file && source.digest == file_digest)
        {
            report.unchanged.push(file.clone());
            continue;
        }
        index
            .replace_knowledge(channel_id, file, &file_digest, &chunks_of(&text), now)
            .await?;
        report.indexed.push(file.clone());
    }
    for source in known {
        if !files.contains(&source.source)
            && index.remove_knowledge(channel_id, &source.source).await?
        {
            report.removed.push(source.source);
        }
    }
    Ok(report)
}

/// The chunks of the channel's knowledge most relevant to `message`, as prompt facts.
pub async fn facts_for(
    index: &dyn KnowledgeIndex,
    channel_id: &str,
    message: &str,
) -> Result<Vec<String>, StoreError> {
    let terms = query_terms(message);
    Ok(index
        .search_knowledge(channel_id, &terms, MAX_FACTS)
        .await?
        .into_iter()
        .map(|hit| hit.text)
        .collect())
}

async fn read_text(path: &Path, name: &str) -> Result<String, KnowledgeFileProblem> {
    let unreadable = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::NotFound => KnowledgeFileProblem::Missing {
            path: name.to_owned(),
        },
        kind => KnowledgeFileProblem::Unreadable {
            path: name.to_owned(),
            kind: kind.to_string(),
        },
    };
    let metadata = tokio::fs::metadata(path).await.map_err(unreadable)?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(KnowledgeFileProblem::TooLarge {
            path: name.to_owned(),
        });
    }
    let bytes = tokio::fs::read(path).await.map_err(unreadable)?;
    String::from_utf8(bytes).map_err(|_| KnowledgeFileProblem::NotText {
        path: name.to_owned(),
    })
}
