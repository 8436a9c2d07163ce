//! `jobbot inspect`: what routing would do with one message, and why. Reads the text from stdin
//! and prints JSON: the channels it matches (with the keywords that decided each), the contacts
//! found in it, whom the CRM would write to, and for every channel it does not match the reason
//! (an exclude keyword found, include keywords missing, the channel disabled, or the source not
//! listed). This is the answer to "why didn't this vacancy match?".
//!
//! It works without a configuration: then only the contacts and the CRM target are shown.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use jobbot_core::config::{self, Config, SourceRef};
use jobbot_core::contacts::{
    CandidateTarget, crm_target, extract_contacts_with_context, rank_crm_candidates,
};
use jobbot_core::filters::{FilterEngine, Verdict};
use serde_json::{Value, json};

/// Reads the message from stdin and prints the report. `explicit_config` is `--config`; without
/// it, `default_config` is used when that file exists.
pub fn run(
    default_config: &Path,
    explicit_config: Option<PathBuf>,
    source: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let source = source
        .map(|written| {
            SourceRef::parse(written)
                .ok_or_else(|| anyhow::anyhow!("--source {written:?} {}", SourceRef::INVALID))
        })
        .transpose()?;
    let config = match explicit_config {
        Some(file) => Some(load_config(&file)?),
        // No configuration yet is a normal state for this command: contacts still make sense.
        None if default_config.exists() => Some(load_config(default_config)?),
        None => None,
    };
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("could not read the message text from stdin")?;
    let report = inspect(&text, config.as_ref(), source.as_ref())?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// The report on one message, as printed. Pure: no I/O, so tests can call it directly.
///
/// Channels are taken the way routing takes them: only enabled channels are evaluated, and with
/// a `source` only the channels whose `input_sources` list it (in any written form, since both
/// sides are [`SourceRef`]s).
pub fn inspect(
    text: &str,
    config: Option<&Config>,
    source: Option<&SourceRef>,
) -> anyhow::Result<Value> {
    let mut matched_channels = Vec::new();
    let mut explain = Vec::new();
    if let Some(config) = config {
        let mut routed = Vec::new();
        for channel in &config.channels {
            let not_taken_because = if !channel.enabled {
                Some("channel_disabled")
            } else if source.is_some_and(|source| !channel.sources.contains(source)) {
                Some("source_not_listed")
            } else {
                None
            };
            match not_taken_because {
                Some(reason) => explain.push(json!({
                    "id": channel.id,
                    "name": channel.name,
                    "reason": reason,
                })),
                None => routed.push(channel),
            }
        }
        let keyed: Vec<(usize, &config::Filters)> = routed
            .iter()
            .enumerate()
            .map(|(position, channel)| (position, &channel.filters))
            .collect();
        let engine = FilterEngine::compile(&keyed)
            .context("could not compile the channels' keyword filters")?;
        for verdict in engine.explain(text) {
            let channel = routed[verdict.index];
            match verdict.verdict {
                Verdict::Matched { matched_includes } => matched_channels.push(json!({
                    "id": channel.id,
                    "name": channel.name,
                    "keywords": matched_includes,
                })),
                Verdict::Excluded { excludes_found } => explain.push(json!({
                    "id": channel.id,
                    "name": channel.name,
                    "reason": "exclude_keyword_found",
                    "excludes_found": excludes_found,
                })),
                Verdict::IncludesMissing {
                    matched_includes,
                    missing_includes,
                    require_all_includes,
                } => explain.push(json!({
                    "id": channel.id,
                    "name": channel.name,
                    "reason": "include_keywords_missing",
                    "require_all_includes": require_all_includes,
                    "matched_includes": matched_includes,
                    "missing_includes": missing_includes,
                })),
            }
        }
    }

    let contacts = extract_contacts_with_context(text);
    // The source channel's own username in its signature is not the recruiter.
    let source_username = match source {
        Some(SourceRef::Username(username)) => Some(username),
        _ => None,
    };
    let candidates = rank_crm_candidates(&contacts, source_username, None);
    let target = crm_target(&candidates).map(|candidate| describe_target(&candidate.target));
    let candidates: Vec<Value> = candidates
        .iter()
        .map(|candidate| {
            json!({
                "target": describe_target(&candidate.target),
                "score": candidate.score,
                "reasons": candidate
                    .reasons
                    .iter()
                    .map(|reason| format!("{reason:?}"))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();

    Ok(json!({
        "source": source.map(ToString::to_string),
        "configured": config.is_some(),
        "matched_channels": matched_channels,
        "explain": explain,
        "contacts": {
            "telegram": contacts
                .contacts
                .telegram
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            "emails": contacts.contacts.emails,
            "phones": contacts.contacts.phones,
        },
        "crm_target": target,
        "crm_candidates": candidates,
    }))
}

fn load_config(file: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read {}", file.display()))?;
    config::load(&text)
        .map(|loaded| loaded.config)
        .map_err(|problems| {
            anyhow::anyhow!(
                "{} is not a valid configuration ({} problem(s)):\n{problems}",
                file.display(),
                problems.0.len()
            )
        })
}

fn describe_target(target: &CandidateTarget) -> String {
    match target {
        CandidateTarget::Username(username) => username.to_string(),
        CandidateTarget::Sender {
            username: Some(username),
            ..
        } => username.to_string(),
        CandidateTarget::Sender { id, username: None } => format!("user {id}"),
    }
}
