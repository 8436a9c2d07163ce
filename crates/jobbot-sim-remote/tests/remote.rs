//! The remote back-end against an in-process server, on real time: what the contract suite
//! (run against the `jobbot sim serve` binary from `crates/jobbot/tests/sim_serve.rs`) cannot
//! provoke. Waits are on state, with deadlines.

use std::time::Duration;

use jobbot_core::ids::SessionName;
use jobbot_core::telegram::{AccountConnector, AccountEvent, ConnectOptions, TelegramError};
use jobbot_sim::NewUser;
use jobbot_sim_remote::rpc::AdminRpcClient;
use jobbot_sim_remote::{RemoteConnector, RunningServer, ServerOptions, WorldKind};

fn options(state: &std::path::Path, listen: std::net::SocketAddr) -> ServerOptions {
    ServerOptions {
        listen,
        state_file: state.to_owned(),
        world: WorldKind::Empty,
        seed: 1,
        params: None,
        pace: Duration::from_secs(1),
        posts: 0,
        save_interval: Duration::from_secs(60),
    }
}

/// A server on an empty world with one account, `agent`, and a connector with its admin client.
async fn server_with_an_agent(
    dir: &std::path::Path,
) -> (
    RunningServer,
    RemoteConnector,
    std::sync::Arc<jobbot_sim_remote::client::RpcClient>,
    SessionName,
    jobbot_core::ids::ChatId,
) {
    let server = RunningServer::start(options(
        &dir.join("state.json"),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let connector = RemoteConnector::new(server.address());
    let admin = connector.client().await.unwrap();
    let session = SessionName::parse("agent").unwrap();
    let agent = admin
        .create_account(session.clone(), NewUser::named("Agent"))
        .await
        .unwrap()
        .unwrap();
    (server, connector, admin, session, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_connect_never_keeps_a_session_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (server, connector, admin, session, _) = server_with_an_agent(dir.path()).await;
    let options = ConnectOptions::default();
    // Given up at every point of the call (before sending, while the server opens the account,
    // after it has): whatever was opened is ended, and the next connect gets the session.
    for micros in (0..2_000).step_by(100) {
        let abandoned = tokio::time::timeout(
            Duration::from_micros(micros),
            connector.connect(&session, &options),
        )
        .await;
        drop(abandoned);
        let account = connector
            .connect(&session, &options)
            .await
            .unwrap_or_else(|error| panic!("after a connect abandoned at {micros} µs: {error}"));
        account.get_me().await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while admin.open_connections(session.clone()).await.unwrap() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(admin.duplicate_connections().await.unwrap(), 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_simulator_restarts_accounts_report_the_loss_and_connect_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let server = RunningServer::start(options(&state, "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let address = server.address();
    let connector = RemoteConnector::new(address);
    let admin = connector.client().await.unwrap();
    let session = SessionName::parse("agent").unwrap();
    let agent = admin
        .create_account(session.clone(), NewUser::named("Agent"))
        .await
        .unwrap()
        .unwrap();
    let channel = admin
        .create_channel("Jobs".into(), None, vec![agent])
        .await
        .unwrap()
        .unwrap();
    let account = connector
        .connect(&session, &ConnectOptions::default())
        .await
        .unwrap();
    let mut events = account.take_events().unwrap();
    server.shutdown().await.unwrap();

    assert_eq!(events.recv().await, Some(AccountEvent::ConnectionLost));
    assert_eq!(
        events.recv().await,
        None,
        "the stream of a lost connection ends"
    );
    assert!(matches!(
        account.get_me().await,
        Err(TelegramError::Network { .. })
    ));

    let server = RunningServer::start(options(&state, address))
        .await
        .unwrap();
    let again = connector
        .connect(&session, &ConnectOptions::default())
        .await
        .expect("the connector opens a new connection to the restarted simulator");
    let mut events = again.take_events().unwrap();
    let admin = connector.client().await.unwrap();
    admin
        .channel_post(channel, "after the restart".into())
        .await
        .unwrap()
        .unwrap();
    match events.recv().await {
        Some(AccountEvent::NewMessage(message)) => assert_eq!(message.text, "after the restart"),
        other => panic!("expected the post, got {other:?}"),
    }
    drop((account, again));
    server.shutdown().await.unwrap();
}

/// A file sent through the admin RPC reaches a remote account with its own reference, and that
/// account re-sends it through the port (the reference and caption cross the wire intact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_crosses_the_wire_and_is_resent_by_the_remote_account() {
    use jobbot_core::telegram::{MediaKind, MessageContent, RandomId};
    use jobbot_sim::SimMedia;

    let dir = tempfile::tempdir().unwrap();
    let (server, connector, admin, session, agent) = server_with_an_agent(dir.path()).await;
    let anna = admin
        .create_user(NewUser::named("Anna").username("anna_cv"))
        .await
        .unwrap()
        .unwrap();
    let account = connector
        .connect(&session, &ConnectOptions::default())
        .await
        .unwrap();
    let mut events = account.take_events().unwrap();
    admin
        .direct_media(
            anna,
            agent,
            SimMedia::document("cv.pdf", "application/pdf", 52_000),
            "my CV".into(),
        )
        .await
        .unwrap()
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(AccountEvent::NewMessage(message)) = events.recv().await
                && message.is_private()
            {
                return message;
            }
        }
    })
    .await
    .expect("the file arrives");
    let file = received.file.expect("with its file");
    assert_eq!(
        (file.kind, file.file_name.as_deref()),
        (MediaKind::Document, Some("cv.pdf"))
    );
    let sender = received
        .sender
        .and_then(|sender| sender.peer)
        .expect("her reference");
    account
        .send_direct(
            sender,
            &MessageContent::with_media(file, "got it"),
            RandomId(1),
        )
        .await
        .expect("re-sent by the account that received it");
    let back = admin.received_from(anna, agent).await.unwrap().unwrap();
    assert_eq!(back.len(), 1);
    assert!(back[0].file.is_some());
    assert_eq!(back[0].text, "got it");
    server.shutdown().await.unwrap();
}
