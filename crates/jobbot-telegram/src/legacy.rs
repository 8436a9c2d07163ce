//! Taking over the original system's sessions: a Telethon or Pyrogram session (read by
//! `jobbot_store::legacy_files`) becomes a jobbot session with the same auth key, home DC and
//! address, the entities as the peer cache (with the account's own access hashes) and the update
//! position, so the account goes on without a new login.
//!
//! The original file is moved aside as `{name}.session.telethon` (kept as the backup, never opened
//! by jobbot again; the suffix is the same for a Pyrogram file, which the backup's content tells
//! apart), not copied: one key, one live session file.

use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};

use grammers_session::SessionData;
use grammers_session::types::{ChannelState, DcOption, PeerAuth, PeerInfo, UpdatesState};
use jobbot_core::ids::{ChatId, SessionName, Username};
use jobbot_core::legacy_session::{LegacyEntity, LegacySession};
use jobbot_core::peer_cache::{CachedPeer, UsernameCache};
use jobbot_core::telegram::{Peer, PeerKind, PeerRef};

use crate::session_store::{SessionKey, SessionStore, SessionStoreError, SessionSummary};

/// Bot API ids of channels and supergroups are `-(1_000_000_000_000 + id)`.
const CHANNEL_ID_OFFSET: i64 = 1_000_000_000_000;

/// The suffix of the original file kept after an import.
pub const BACKUP_SUFFIX: &str = ".telethon";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("session {session} already exists and is logged in; remove {path} first to replace it")]
    Exists { session: SessionName, path: PathBuf },
    #[error("the imported session's address {address:?} is not an IP address")]
    Address { address: String },
    #[error("could not move {from} to {to}: {source}")]
    Backup {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] SessionStoreError),
}

/// Where the original of `name` is kept after an automatic import.
pub fn backup_path(dir: &Path, name: &SessionName) -> PathBuf {
    dir.join(format!("{}{BACKUP_SUFFIX}", name.file_name()))
}

/// The session `legacy` describes, as grammers keeps it.
pub fn session_data(legacy: &LegacySession) -> Result<SessionData, ImportError> {
    let mut data = SessionData {
        home_dc: legacy.dc_id,
        ..SessionData::default()
    };
    let address: IpAddr = legacy
        .server_address
        .parse()
        .map_err(|_| ImportError::Address {
            address: legacy.server_address.clone(),
        })?;
    let known = data.dc_options.get(&legacy.dc_id).cloned();
    let mut option = known.unwrap_or(DcOption {
        id: legacy.dc_id,
        ipv4: SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, legacy.port),
        ipv6: SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, legacy.port, 0, 0),
        auth_key: None,
    });
    match address {
        IpAddr::V4(ip) => {
            option.ipv4 = SocketAddrV4::new(ip, legacy.port);
            option.ipv6 = SocketAddrV6::new(ip.to_ipv6_mapped(), legacy.port, 0, 0);
        }
        IpAddr::V6(ip) => option.ipv6 = SocketAddrV6::new(ip, legacy.port, 0, 0),
    }
    option.auth_key = Some(legacy.auth_key.0);
    data.dc_options.insert(legacy.dc_id, option);
    data.peer_infos = legacy
        .entities
        .iter()
        .map(peer_info)
        .map(|info| (info.id(), info))
        .collect();
    // The account itself, where the file says who it is (Pyrogram): kept as grammers keeps its
    // own user, so `jobbot session show` names it before the first connection.
    if let Some(me) = legacy.user_id {
        let auth = legacy
            .entities
            .iter()
            .find(|entity| entity.id == me)
            .map(|entity| PeerAuth::from_hash(entity.access_hash));
        let info = PeerInfo::User {
            id: me,
            auth,
            bot: None,
            is_self: Some(true),
        };
        data.peer_infos.insert(info.id(), info);
    }
    if let Some(state) = legacy.update_state {
        data.updates_state = UpdatesState {
            pts: state.pts,
            qts: state.qts,
            date: state.date,
            seq: state.seq,
            channels: legacy
                .channel_states
                .iter()
                .map(|&(id, pts)| ChannelState { id, pts })
                .collect(),
        };
    }
    Ok(data)
}

/// The entities' usernames as the session's username cache, dated when Telethon last saw each
/// (an undated one is too old to use, but still names its peer for the fallbacks): a migrated
/// account does not resolve again the usernames the original resolved lately.
pub fn username_cache(legacy: &LegacySession) -> UsernameCache {
    UsernameCache::from_entries(legacy.entities.iter().filter_map(|entity| {
        let username = Username::parse(entity.username.as_deref()?).ok()?;
        let (id, kind) = if entity.id > 0 {
            (ChatId::user(entity.id)?, PeerKind::User)
        } else if entity.id < -CHANNEL_ID_OFFSET {
            (
                ChatId::channel(-entity.id - CHANNEL_ID_OFFSET)?,
                PeerKind::Channel,
            )
        } else {
            return None;
        };
        let peer = Peer {
            peer: PeerRef {
                id,
                access_hash: entity.access_hash,
            },
            kind,
            username: Some(username.clone()),
            name: entity.name.clone().unwrap_or_default(),
            last_name: None,
        };
        let resolved_at = entity.seen_at.unwrap_or(0);
        Some((username, CachedPeer { peer, resolved_at }))
    }))
}

/// A Telethon entity (a "marked" id and the account's access hash) as a cached peer.
fn peer_info(entity: &LegacyEntity) -> PeerInfo {
    let auth = Some(PeerAuth::from_hash(entity.access_hash));
    if entity.id > 0 {
        PeerInfo::User {
            id: entity.id,
            auth,
            bot: None,
            is_self: None,
        }
    } else if entity.id < -CHANNEL_ID_OFFSET {
        PeerInfo::Channel {
            id: -entity.id - CHANNEL_ID_OFFSET,
            auth,
            kind: None,
        }
    } else {
        PeerInfo::Chat { id: -entity.id }
    }
}

/// `jobbot session import FILE --name NAME`: writes `legacy` as the session `name`. Refuses to
/// replace a session that is logged in (it would throw a working key away).
pub async fn import(
    dir: &Path,
    name: &SessionName,
    key: Option<SessionKey>,
    legacy: &LegacySession,
) -> Result<SessionSummary, ImportError> {
    let data = session_data(legacy)?;
    {
        let existing = SessionStore::open(dir, name, key.clone())?;
        if existing.is_logged_in() {
            return Err(ImportError::Exists {
                session: name.clone(),
                path: existing.path().to_owned(),
            });
        }
        existing.close().await?;
    }
    let store =
        SessionStore::create_logged_in(dir, name, key, data, username_cache(legacy)).await?;
    let summary = store.summary()?;
    store.close().await?;
    Ok(summary)
}

/// The automatic import on first use: `{name}.session` is a Telethon file (already read into
/// `legacy`). It is moved to [`backup_path`], then the jobbot session is written in its place.
/// A crash between the two leaves the backup alone; [`import_from_backup`] finishes the job.
pub async fn import_in_place(
    dir: &Path,
    name: &SessionName,
    key: Option<SessionKey>,
    legacy: &LegacySession,
) -> Result<SessionSummary, ImportError> {
    let data = session_data(legacy)?;
    let original = dir.join(name.file_name());
    let backup = backup_path(dir, name);
    std::fs::rename(&original, &backup).map_err(|source| ImportError::Backup {
        from: original,
        to: backup,
        source,
    })?;
    write_imported(dir, name, key, data, username_cache(legacy)).await
}

/// Finishes an automatic import that stopped after moving the original aside: `{name}.session`
/// is absent and `legacy` was read from the backup, which stays.
pub async fn import_from_backup(
    dir: &Path,
    name: &SessionName,
    key: Option<SessionKey>,
    legacy: &LegacySession,
) -> Result<SessionSummary, ImportError> {
    write_imported(
        dir,
        name,
        key,
        session_data(legacy)?,
        username_cache(legacy),
    )
    .await
}

async fn write_imported(
    dir: &Path,
    name: &SessionName,
    key: Option<SessionKey>,
    data: SessionData,
    usernames: UsernameCache,
) -> Result<SessionSummary, ImportError> {
    let store = SessionStore::create_logged_in(dir, name, key, data, usernames).await?;
    let summary = store.summary()?;
    store.close().await?;
    Ok(summary)
}

/// `jobbot session show NAME`.
pub fn describe(
    dir: &Path,
    name: &SessionName,
    key: Option<SessionKey>,
) -> Result<SessionSummary, SessionStoreError> {
    let store = SessionStore::open(dir, name, key)?;
    store.summary()
}
