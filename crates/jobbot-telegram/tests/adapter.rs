//! The connector's offline behaviour: ownership of sessions is decided before any network, and a
//! connection attempt goes where the session says (loopback here, refused).

use std::net::{Ipv4Addr, SocketAddrV4, SocketAddrV6};
use std::path::Path;

use grammers_session::Session;
use grammers_session::types::DcOption;
use jobbot_core::ids::SessionName;
use jobbot_core::telegram::{AccountConnector, AuthorizationStatus, ConnectError, ConnectOptions};
use jobbot_telegram::{GrammersConfig, GrammersConnector, SessionStore};

fn connector(sessions_dir: &Path) -> GrammersConnector {
    GrammersConnector::new(GrammersConfig {
        sessions_dir: sessions_dir.to_owned(),
        api_id: 1,
        api_hash: "0123456789abcdef0123456789abcdef".into(),
        session_key: None,
        vault: None,
        servers: Default::default(),
    })
}

fn name(text: &str) -> SessionName {
    SessionName::parse(text).unwrap()
}

/// A session that logged in once and whose home DC (2) points at a closed loopback port.
async fn logged_in_session_on_closed_port(sessions_dir: &Path, session: &SessionName) {
    let store = SessionStore::open(sessions_dir, session, None).unwrap();
    let closed_port = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
    store
        .set_dc_option(&DcOption {
            id: 2,
            ipv4: closed_port,
            ipv6: SocketAddrV6::new(Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 1, 0, 0),
            auth_key: None,
        })
        .await
        .unwrap();
    store.set_home_dc_id(2).await.unwrap();
    store.mark_logged_in().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_held_session_is_refused_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let session = name("agent_1");
    // The session points nowhere reachable: a refusal that dialled would be a Network error.
    logged_in_session_on_closed_port(dir.path(), &session).await;
    let owner = SessionStore::open(dir.path(), &session, None).unwrap();
    let connector = connector(dir.path());
    let options = ConnectOptions::default();

    let busy = ConnectError::SessionBusy {
        session: session.clone(),
    };
    assert_eq!(
        connector.connect(&session, &options).await.err(),
        Some(busy.clone())
    );
    assert_eq!(
        connector
            .check_authorization(&session, &options)
            .await
            .err(),
        Some(busy.clone())
    );
    assert_eq!(
        connector.begin_login(&session, &options).await.err(),
        Some(busy)
    );

    drop(owner);
    // Free again: now it does dial, and the closed port answers.
    assert!(matches!(
        connector.connect(&session, &options).await.err(),
        Some(ConnectError::Network { .. })
    ));
}

#[tokio::test]
async fn a_login_in_progress_holds_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let session = name("agent_1");
    let connector = connector(dir.path());
    let options = ConnectOptions::default();
    let login = connector.begin_login(&session, &options).await.unwrap();
    assert_eq!(
        connector.connect(&session, &options).await.err(),
        Some(ConnectError::SessionBusy {
            session: session.clone()
        })
    );
    drop(login);
}

#[tokio::test]
async fn a_fresh_session_is_not_logged_in_and_stays_free() {
    let dir = tempfile::tempdir().unwrap();
    let session = name("agent_1");
    let connector = connector(dir.path());
    let options = ConnectOptions::default();
    assert_eq!(
        connector.connect(&session, &options).await.err(),
        Some(ConnectError::NotLoggedIn {
            session: session.clone()
        })
    );
    assert_eq!(
        connector
            .check_authorization(&session, &options)
            .await
            .unwrap(),
        AuthorizationStatus::NotLoggedIn
    );
    // No file was written for a session that never did anything, and the lock was released.
    assert!(!dir.path().join("agent_1.session").exists());
    SessionStore::open(dir.path(), &session, None).unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error_and_releases_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let session = name("agent_1");
    logged_in_session_on_closed_port(dir.path(), &session).await;
    let connector = connector(dir.path());
    let options = ConnectOptions::default();

    let error = connector
        .check_authorization(&session, &options)
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Network { .. }), "{error:?}");

    let reopened = SessionStore::open(dir.path(), &session, None).unwrap();
    assert!(
        reopened.is_logged_in(),
        "a failed connection must not forget the login"
    );
}

// ----- Sessions of the original system (Telethon) -----

fn telethon_sample() -> jobbot_core::legacy_session::LegacySession {
    use jobbot_core::legacy_session::{AuthKey, LegacyEntity, LegacySession, LegacyUpdateState};
    let mut key = [0u8; 256];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = (index * 31 + 11) as u8;
    }
    LegacySession {
        dc_id: 2,
        server_address: "149.154.167.51".into(),
        port: 443,
        auth_key: AuthKey(key),
        entities: vec![
            LegacyEntity {
                id: -1_001_234_567_890,
                access_hash: 4_242,
                username: Some("jobs_".into()),
                name: Some("Jobs".into()),
                seen_at: Some(1_700_000_000),
            },
            LegacyEntity {
                id: -4_321,
                access_hash: 0,
                username: None,
                name: Some("old group".into()),
                seen_at: None,
            },
            LegacyEntity {
                id: 5_000_001,
                access_hash: -77,
                username: Some("anna_hr".into()),
                name: Some("Anna".into()),
                seen_at: None,
            },
        ],
        update_state: Some(LegacyUpdateState {
            pts: 120,
            qts: 3,
            date: 1_700_000_000,
            seq: 4,
        }),
        channel_states: vec![(1_234_567_890, 55)],
        user_id: None,
    }
}

/// The original system's session file (Telethon, SQLite schema 7), built here the way Telethon
/// writes it, becomes a jobbot session on first use: same auth key (by its MTProto id), DC and
/// address, its entities as the peer cache with the account's access hashes, its update
/// position; the original is kept beside it as the backup, and nothing shown names the key.
#[tokio::test]
async fn a_telethon_session_imports_with_the_same_auth_key_id() {
    use grammers_session::types::{PeerAuth, PeerId};
    use jobbot_store::telethon::{is_sqlite, read_telethon_session, write_telethon_session};

    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let session = name("agent_1");
    let original = sessions.join(session.file_name());
    let written = telethon_sample();
    write_telethon_session(&original, &written).await.unwrap();

    let legacy = read_telethon_session(&original).await.unwrap();
    let summary = jobbot_telegram::legacy::import_in_place(&sessions, &session, None, &legacy)
        .await
        .unwrap();
    assert_eq!(summary.auth_key_id, Some(written.auth_key.id()));
    // Computed independently (Python's hashlib: the last 8 bytes of SHA-1, little-endian).
    assert_eq!(summary.auth_key_id.unwrap().to_string(), "17d11fbb8182e11a");
    assert_eq!(summary.home_dc, 2);
    assert_eq!(summary.address.as_deref(), Some("149.154.167.51:443"));
    assert!(summary.logged_in);
    assert_eq!(summary.peers, 3);
    assert_eq!(summary.pts, 120);
    let shown = format!("{summary:?}");
    assert!(
        !shown.contains(&hex_of(&written.auth_key.0)[..32]),
        "{shown}"
    );

    // The original is the backup, untouched; the session file is jobbot's own now.
    let backup = jobbot_telegram::legacy::backup_path(&sessions, &session);
    assert!(is_sqlite(&std::fs::read(&backup).unwrap()));
    assert_eq!(read_telethon_session(&backup).await.unwrap(), written);
    assert!(!is_sqlite(&std::fs::read(&original).unwrap()));

    let store = SessionStore::open(&sessions, &session, None).unwrap();
    assert!(store.is_logged_in());
    assert_eq!(store.home_dc_id().unwrap(), 2);
    assert_eq!(
        store.dc_option(2).unwrap().unwrap().auth_key,
        Some(written.auth_key.0)
    );
    let anna = store
        .peer_ref(PeerId::user(5_000_001).unwrap())
        .await
        .unwrap()
        .expect("the entity is in the peer cache");
    assert_eq!(anna.auth, PeerAuth::from_hash(-77));
    let jobs = store
        .peer_ref(PeerId::channel(1_234_567_890).unwrap())
        .await
        .unwrap()
        .expect("the channel is in the peer cache");
    assert_eq!(jobs.auth, PeerAuth::from_hash(4_242));
    let state = store.updates_state().await.unwrap();
    assert_eq!((state.pts, state.qts, state.seq), (120, 3, 4));
    assert_eq!(state.channels.len(), 1);
    // The usernames are the session's username cache, dated when Telethon saw them: `@jobs`
    // is fresh a day after, `@anna_hr` (no date) only names its peer.
    let username = |text: &str| jobbot_core::ids::Username::parse(text).unwrap();
    let channel = jobbot_core::ids::ChatId::channel(1_234_567_890).unwrap();
    let cached = store
        .cached_username(&username("jobs_"), 1_700_000_000 + 3_600)
        .expect("dated: fresh");
    assert_eq!((cached.id(), cached.peer.access_hash), (channel, 4_242));
    let anna = jobbot_core::ids::ChatId::user(5_000_001).unwrap();
    assert_eq!(
        store.cached_username(&username("anna_hr"), 1_700_000_000),
        None
    );
    assert_eq!(store.usernames_of(anna), vec![username("anna_hr")]);
    drop(store);

    // `jobbot session import` never throws a logged-in session away.
    let error = jobbot_telegram::legacy::import(&sessions, &session, None, &legacy)
        .await
        .unwrap_err();
    assert!(
        matches!(error, jobbot_telegram::legacy::ImportError::Exists { .. }),
        "{error}"
    );
    // Into a new name it works, with the same key id.
    let summary = jobbot_telegram::legacy::import(&sessions, &name("agent_2"), None, &legacy)
        .await
        .unwrap();
    assert_eq!(summary.auth_key_id, Some(written.auth_key.id()));
    assert_eq!(
        jobbot_telegram::legacy::describe(&sessions, &name("agent_2"), None).unwrap(),
        summary
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
