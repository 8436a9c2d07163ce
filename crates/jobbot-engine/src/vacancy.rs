//! The hand-over from monitoring to the CRM: a vacancy that matched output channels.

use jobbot_core::contacts::Candidate;
use jobbot_core::ids::{ChatId, Username};
use jobbot_core::store::UnixMillis;
use jobbot_core::telegram::Sender;

/// A source message that matched at least one output channel. Monitoring sends one per
/// processed message (never for an edit or a message seen before); the CRM workflow decides,
/// for each matched channel with CRM and auto-responses on, whether to write to its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacancy {
    pub source: ChatId,
    pub source_title: String,
    pub source_username: Option<Username>,
    pub message_id: i32,
    /// `https://t.me/<username>/<id>` or `https://t.me/c/<id>/<id>`.
    pub link: String,
    pub text: String,
    /// Who posted it, when Telegram says (a user in a group; none for a channel post).
    pub sender: Option<Sender>,
    /// The output channels it matched (config ids).
    pub channels: Vec<String>,
    /// CRM candidates, best first (`jobbot_core::contacts::rank_crm_candidates`).
    pub candidates: Vec<Candidate>,
    pub posted_at: UnixMillis,
}
