//! Every connection the world ever had, per session, so a test can prove that no session was
//! ever used from two connections at once (what Telegram punishes with `AUTH_KEY_DUPLICATED`,
//! core.telegram.org/api/errors 406), even across processes and restarts of the simulator.

use jobbot_core::ids::{ChatId, SessionName};
use serde::{Deserialize, Serialize};

use crate::world::ConnectionId;

/// One connection of one session, as the world saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionEntry {
    pub id: u64,
    pub session: SessionName,
    pub user: ChatId,
    /// Who connected, when the connector was told (`jobbot sim serve` names the client process
    /// and its address).
    #[serde(default)]
    pub client: Option<String>,
    /// Simulated Unix milliseconds.
    pub opened_at_ms: i64,
    #[serde(default)]
    pub closed_at_ms: Option<i64>,
    /// The other connections of the same session that were open when this one opened. Not empty
    /// means the session was connected twice at once.
    #[serde(default)]
    pub concurrent_with: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ConnectionHistory {
    entries: Vec<ConnectionEntry>,
    /// Connections opened while their session had another one open.
    duplicates: u64,
}

impl ConnectionHistory {
    pub(crate) fn opened(
        &mut self,
        id: ConnectionId,
        session: &SessionName,
        user: ChatId,
        others: Vec<ConnectionId>,
        now_ms: i64,
    ) {
        if !others.is_empty() {
            self.duplicates += 1;
        }
        self.entries.push(ConnectionEntry {
            id,
            session: session.clone(),
            user,
            client: None,
            opened_at_ms: now_ms,
            closed_at_ms: None,
            concurrent_with: others,
        });
    }

    pub(crate) fn set_client(&mut self, id: ConnectionId, client: &str) {
        if let Some(entry) = self.entries.iter_mut().rev().find(|entry| entry.id == id) {
            entry.client = Some(client.to_owned());
        }
    }

    pub(crate) fn closed(&mut self, id: ConnectionId, now_ms: i64) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .rev()
            .find(|entry| entry.id == id && entry.closed_at_ms.is_none())
        {
            entry.closed_at_ms = Some(now_ms);
        }
    }

    /// A restart of the simulator closes every connection.
    pub(crate) fn close_all(&mut self, now_ms: i64) {
        for entry in &mut self.entries {
            entry.closed_at_ms.get_or_insert(now_ms);
        }
    }

    pub(crate) fn entries(&self) -> &[ConnectionEntry] {
        &self.entries
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates
    }
}
