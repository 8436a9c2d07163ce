//! A vacancy handed to the CRM by hand.

use jobbot_core::contacts::Candidate;
use jobbot_core::ids::{ChatId, Username};
use jobbot_core::store::UnixMillis;
use jobbot_core::telegram::Sender;

/// A source message that matched output channels, handed to the CRM by hand
/// ([`crate::Crm::submit_vacancy`], for tools and tests). Monitoring does not use it: its
/// hand-over is the auto-response workflows it stores in the same transaction as the processed
/// message (`Store::take_in_vacancy`).
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
