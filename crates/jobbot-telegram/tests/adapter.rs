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
