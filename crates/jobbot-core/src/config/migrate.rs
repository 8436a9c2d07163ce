//! Migration of the old single-agent format (seed, "Backward Compatibility"):
//! `agent_phone` + `agent_session_name` become the first entry of `agents` when `agents` is empty.
//!
//! The original system documented this migration and then dropped it (commit `433c82a`), so old
//! CRM channels came up with zero agents. Here loading always migrates in memory, and
//! `jobbot config migrate` writes the result. Nothing the user wrote is dropped unless it is an
//! exact duplicate of an agent already listed; legacy keys that cannot be migrated stay in the
//! document (and validation says why).

use super::ConfigProblem;
use super::model::{AgentDocument, ChannelDocument, ConfigDocument};
use crate::ids::PhoneNumber;

/// Applies the migration and returns one line per channel it changed.
pub(super) fn migrate(document: &mut ConfigDocument) -> Vec<ConfigProblem> {
    document
        .output_channels
        .iter_mut()
        .enumerate()
        .filter_map(|(index, channel)| {
            migrate_channel(channel)
                .map(|note| ConfigProblem::new(format!("output_channels[{index}]"), note))
        })
        .collect()
}

fn migrate_channel(channel: &mut ChannelDocument) -> Option<String> {
    let phone = non_empty(&channel.agent_phone);
    let session = non_empty(&channel.agent_session_name);
    let (phone, session) = match (phone, session) {
        (None, None) => return None,
        (Some(phone), Some(session)) => (phone, session),
        // Half a legacy agent cannot become an agent. With no agents listed, validation reports
        // it as an error (the channel would silently have no agent, the original's bug).
        _ if channel.agents.is_empty() => return None,
        _ => return Some(KEPT_NOTE.into()),
    };
    if channel.agents.is_empty() {
        channel.agents.push(AgentDocument {
            phone,
            session_name: session,
            proxy: None,
            pacing: None,
            extra: Default::default(),
        });
        clear_legacy_keys(channel);
        return Some(
            "moved agent_phone/agent_session_name into agents[0] (old single-agent format)".into(),
        );
    }
    match channel
        .agents
        .iter()
        .position(|agent| agent.session_name == session && same_phone(&agent.phone, &phone))
    {
        Some(position) => {
            clear_legacy_keys(channel);
            Some(format!(
                "dropped agent_phone/agent_session_name: they repeat agents[{position}]"
            ))
        }
        None => Some(KEPT_NOTE.into()),
    }
}

const KEPT_NOTE: &str = "kept agent_phone/agent_session_name as they are: they differ from every entry of \
     agents; add them as an agent or delete them";

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn clear_legacy_keys(channel: &mut ChannelDocument) {
    channel.agent_phone = None;
    channel.agent_session_name = None;
}

fn same_phone(a: &str, b: &str) -> bool {
    match (PhoneNumber::parse(a), PhoneNumber::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.trim() == b.trim(),
    }
}
