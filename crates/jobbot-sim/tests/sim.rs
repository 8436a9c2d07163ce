//! The simulator's integration tests: the port contract suite on paused tokio time, then rules
//! the contract cannot state for every back-end (exact budgets, counters, determinism).

use jobbot_sim::SimParams;
use jobbot_sim::contract::{self, CheckOutcome};
use jobbot_sim::fixture::SimFixture;

/// One test per contract check, each on a fresh world and paused time.
macro_rules! sim_contract_checks {
    ($($check:ident),+ $(,)?) => {
        mod contract_suite {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $check() {
                    let fixture = SimFixture::new(SimParams::default());
                    match contract::$check(&fixture).await {
                        Ok(CheckOutcome::Passed) => {}
                        Ok(CheckOutcome::Skipped(why)) => panic!("skipped against the simulator: {why}"),
                        Err(failure) => panic!("{failure}"),
                    }
                }
            )+
        }
    };
}

jobbot_sim::contract_checks!(sim_contract_checks);

// ----- Rules with the simulator's exact numbers -----

use std::sync::Arc;

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{
    AccountConnector, AccountEvent, AuthorizationStatus, ConnectError, ConnectOptions, DeadReason,
    JoinTarget, LoginBackend, LoginError, MessageContent, PeerRef, RandomId, TelegramAccount,
    TelegramError,
};
use jobbot_sim::{NewUser, SimConnector, SimWorld};
use tokio::time::{Duration, Instant, sleep};

async fn connect(world: &SimWorld, session: &str) -> Arc<dyn TelegramAccount> {
    SimConnector::new(world.clone())
        .connect(
            &SessionName::parse(session).unwrap(),
            &ConnectOptions::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("connect {session}: {error}"))
}

async fn resolve(account: &dyn TelegramAccount, username: &str) -> PeerRef {
    account
        .resolve_username(&Username::parse(username).unwrap())
        .await
        .expect("resolve")
        .peer
}

fn text(body: &str) -> MessageContent {
    MessageContent::plain(body)
}

/// A world with one account and `strangers` people who accept messages, named `person_00000`….
fn world_with_strangers(params: SimParams, strangers: usize) -> (SimWorld, ChatId) {
    let world = SimWorld::new(params);
    let account = world.create_account("agent", NewUser::named("Agent").username("agent_hr"));
    for index in 0..strangers {
        world.create_user(NewUser::named("Person").username(&format!("person_{index:05}")));
    }
    (world, account)
}

#[tokio::test(start_paused = true)]
async fn sends_beyond_the_burst_wait_thirty_seconds_then_twice_as_long() {
    let (world, account_id) = world_with_strangers(SimParams::default(), 1);
    let account = connect(&world, "agent").await;
    let peer = resolve(&*account, "person_00000").await;
    let mut random_ids = 0..;
    let mut send = async || {
        account
            .send_direct(peer, &text("hi"), RandomId(random_ids.next().unwrap()))
            .await
    };
    for _ in 0..5 {
        send().await.expect("within the burst of 5");
    }
    assert_eq!(send().await, Err(TelegramError::FloodWait { seconds: 30 }));
    sleep(Duration::from_secs(30)).await;
    for _ in 0..5 {
        send().await.expect("the bucket refilled during the wait");
    }
    assert_eq!(
        send().await,
        Err(TelegramError::FloodWait { seconds: 60 }),
        "a repeat within the hour doubles"
    );
    let counters = world.counters(account_id);
    assert_eq!((counters.messages_sent, counters.send_flood_waits), (10, 2));
    assert_eq!(
        world
            .received_from(world.find_username("person_00000").unwrap(), account_id)
            .len(),
        10
    );
}

#[tokio::test(start_paused = true)]
async fn sending_at_the_sustained_rate_never_floods() {
    let (world, account_id) = world_with_strangers(SimParams::default(), 1);
    let account = connect(&world, "agent").await;
    let peer = resolve(&*account, "person_00000").await;
    for index in 0..300 {
        sleep(Duration::from_secs(3)).await;
        account
            .send_direct(peer, &text("steady"), RandomId(index))
            .await
            .expect("20 per minute is allowed");
    }
    assert_eq!(world.counters(account_id).flood_waits(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_cold_dm_budget_is_exact_and_the_limit_lifts_after_peer_flood_hours() {
    let params = SimParams {
        cold_dm_daily_budget: 3,
        peer_flood_hours: 24,
        ..SimParams::default()
    };
    let (world, account_id) = world_with_strangers(params, 6);
    let contact = world.create_user(NewUser::named("Friend").username("friend_with_number"));
    world.add_contact(contact, account_id);
    let account = connect(&world, "agent").await;
    let mut outcomes = Vec::new();
    for index in 0..5 {
        sleep(Duration::from_secs(60)).await;
        let peer = resolve(&*account, &format!("person_{index:05}")).await;
        outcomes.push(
            account
                .send_direct(peer, &text("hello"), RandomId(index))
                .await
                .map(|_| ()),
        );
    }
    let expected = [
        Ok(()),
        Ok(()),
        Ok(()),
        Err(TelegramError::PeerFlood),
        Err(TelegramError::PeerFlood),
    ];
    assert_eq!(outcomes, expected);
    assert!(world.is_peer_flooded(account_id));
    // Someone who saved the account's number may still be written to (telegram.org/faq_spam).
    let friend = resolve(&*account, "friend_with_number").await;
    account
        .send_direct(friend, &text("hi friend"), RandomId(100))
        .await
        .expect("contacts are exempt");
    sleep(Duration::from_secs(24 * 3_600)).await;
    assert!(!world.is_peer_flooded(account_id));
    let next = resolve(&*account, "person_00005").await;
    account
        .send_direct(next, &text("a day later"), RandomId(101))
        .await
        .expect("the limit lifted");
    let counters = world.counters(account_id);
    assert_eq!((counters.cold_chats_started, counters.peer_floods), (4, 2));
}

#[tokio::test(start_paused = true)]
async fn one_account_can_have_a_smaller_cold_dm_budget_than_the_world() {
    let (world, account_id) = world_with_strangers(SimParams::default(), 3);
    world.set_cold_dm_budget(account_id, 1);
    let account = connect(&world, "agent").await;
    let mut outcomes = Vec::new();
    for index in 0..2 {
        sleep(Duration::from_secs(60)).await;
        let peer = resolve(&*account, &format!("person_{index:05}")).await;
        outcomes.push(
            account
                .send_direct(peer, &text("hello"), RandomId(index))
                .await
                .map(|_| ()),
        );
    }
    assert_eq!(outcomes, [Ok(()), Err(TelegramError::PeerFlood)]);
}

#[tokio::test(start_paused = true)]
async fn a_resend_is_deduplicated_in_both_boxes_and_ids_differ_per_box() {
    let (world, account_id) = world_with_strangers(SimParams::default(), 1);
    let person = world.find_username("person_00000").unwrap();
    world.send_direct(person, person, "a note to self");
    let account = connect(&world, "agent").await;
    let peer = resolve(&*account, "person_00000").await;
    let first = account
        .send_direct(peer, &text("once"), RandomId(7))
        .await
        .unwrap();
    let again = account
        .send_direct(peer, &text("once"), RandomId(7))
        .await
        .unwrap();
    assert_eq!(first, again);
    let received = world.received_from(person, account_id);
    assert_eq!(received.len(), 1, "exactly one message arrived");
    // Telegram numbers private messages per user: the recipient's box already held one message.
    assert_eq!((first.message_id, received[0].message_id), (1, 2));
    assert_eq!(world.counters(account_id).deduplicated_sends, 1);
}

#[tokio::test(start_paused = true)]
async fn resolving_a_cached_username_costs_nothing() {
    let (world, account_id) = world_with_strangers(SimParams::default(), 1);
    let account = connect(&world, "agent").await;
    for _ in 0..50 {
        resolve(&*account, "person_00000").await;
    }
    let counters = world.counters(account_id);
    assert_eq!((counters.resolves, counters.resolve_flood_waits), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_sixth_quick_resolve_waits_ten_minutes() {
    let (world, _) = world_with_strangers(SimParams::default(), 10);
    let account = connect(&world, "agent").await;
    let mut outcomes = Vec::new();
    for index in 0..7 {
        let username = Username::parse(&format!("person_{index:05}")).unwrap();
        outcomes.push(account.resolve_username(&username).await.map(|_| ()).err());
    }
    let wait = Some(TelegramError::FloodWait { seconds: 600 });
    assert_eq!(outcomes[..5], [None, None, None, None, None]);
    assert_eq!(outcomes[5], wait);
    assert!(matches!(outcomes[6], Some(TelegramError::FloodWait { seconds }) if seconds <= 600));
}

/// Joins are limited per account like any method (`SimParams::join_channel`): the sixth quick
/// join of a new chat waits, while joining a chat the account is already in costs nothing.
#[tokio::test(start_paused = true)]
async fn the_sixth_quick_join_waits_and_a_rejoin_costs_nothing() {
    let world = SimWorld::new(SimParams::default());
    let account_id = world.create_account("agent", NewUser::named("Agent").phone("+79990000001"));
    let account = connect(&world, "agent").await;
    let invites: Vec<String> = (0..7)
        .map(|index| {
            let group = world.create_group(&format!("Group {index}"), None, false, &[]);
            world.create_invite(group)
        })
        .collect();
    let first = JoinTarget::InviteHash(invites[0].clone());
    account.join_chat(&first).await.expect("a first join");
    for _ in 0..10 {
        account
            .join_chat(&first)
            .await
            .expect("already a member: no call spent");
    }
    let mut outcomes = Vec::new();
    for invite in &invites[1..] {
        outcomes.push(
            account
                .join_chat(&JoinTarget::InviteHash(invite.clone()))
                .await
                .map(|_| ())
                .err(),
        );
    }
    assert_eq!(outcomes[..4], [None, None, None, None]);
    assert_eq!(outcomes[4], Some(TelegramError::FloodWait { seconds: 300 }));
    let counters = world.counters(account_id);
    assert_eq!(counters.other_flood_waits, 2);
    assert_eq!(counters.flood_violations, 1);
}

#[tokio::test(start_paused = true)]
async fn dead_accounts_and_sessions_report_their_reason() {
    let world = SimWorld::new(SimParams::default());
    let revoked = world.create_account("revoked", NewUser::named("R").username("revoked_hr"));
    world.log_in_session("revoked_other", revoked);
    let frozen = world.create_account("frozen", NewUser::named("F"));
    let deleted = world.create_account(
        "deleted",
        NewUser::named("D")
            .username("deleted_hr")
            .phone("+79990000201"),
    );
    let sessions = ["revoked", "revoked_other", "frozen", "deleted"];
    let mut accounts = Vec::new();
    for session in sessions {
        accounts.push(connect(&world, session).await);
    }
    world.revoke(&SessionName::parse("revoked").unwrap());
    world.freeze(frozen);
    world.deactivate(deleted);
    let dead = |reason| Err(TelegramError::AccountDead { reason });
    assert_eq!(accounts[0].get_me().await, dead(DeadReason::Revoked));
    assert!(
        accounts[1].get_me().await.is_ok(),
        "revoking one session leaves the account's others alive"
    );
    assert_eq!(accounts[2].get_me().await, dead(DeadReason::Frozen));
    assert_eq!(accounts[3].get_me().await, dead(DeadReason::Deactivated));
    assert_eq!(
        world.find_username("deleted_hr"),
        None,
        "a deleted account's username is released"
    );
    drop(accounts);
    let connector = SimConnector::new(world.clone());
    let check = async |session: &str| {
        connector
            .check_authorization(
                &SessionName::parse(session).unwrap(),
                &ConnectOptions::default(),
            )
            .await
    };
    assert_eq!(
        check("revoked").await,
        Ok(AuthorizationStatus::Dead(DeadReason::Revoked))
    );
    assert_eq!(
        check("frozen").await,
        Ok(AuthorizationStatus::Dead(DeadReason::Frozen))
    );
    assert!(matches!(
        check("revoked_other").await,
        Ok(AuthorizationStatus::Authorized(_))
    ));
    // The number of a deleted account is free: logging in with it needs a sign-up.
    let phone = PhoneNumber::parse("+79990000201").unwrap();
    let mut login = connector
        .begin_login(
            &SessionName::parse("new_one").unwrap(),
            &ConnectOptions::default(),
        )
        .await
        .unwrap();
    login.request_code(&phone).await.unwrap();
    let code = world.last_login_code(&phone).unwrap();
    assert_eq!(
        login.submit_code(&code).await,
        Err(LoginError::SignUpRequired)
    );
}

#[tokio::test(start_paused = true)]
async fn events_beyond_an_unread_buffer_are_dropped_and_counted() {
    let world = SimWorld::new(SimParams {
        event_buffer: 2,
        ..SimParams::default()
    });
    let account_id = world.create_account("agent", NewUser::named("Agent"));
    let channel = world.create_channel("Jobs", Some("jobs_feed"), &[account_id]);
    let account = connect(&world, "agent").await;
    for index in 0..5 {
        world.channel_post(channel, &format!("post {index}"));
    }
    let counters = world.counters(account_id);
    assert_eq!((counters.events_delivered, counters.events_dropped), (2, 3));
    let mut events = account.take_events().unwrap();
    let AccountEvent::NewMessage(first) = events.recv().await.unwrap() else {
        panic!("not a message")
    };
    assert_eq!(first.text, "post 0");
    assert_eq!(
        world.chat_messages(channel).len(),
        5,
        "the chat itself has every post"
    );
}

#[tokio::test(start_paused = true)]
async fn connecting_a_dead_session_is_refused_with_its_reason() {
    let world = SimWorld::new(SimParams::default());
    let account = world.create_account("agent", NewUser::named("Agent"));
    world.ban(account);
    let result = SimConnector::new(world.clone())
        .connect(
            &SessionName::parse("agent").unwrap(),
            &ConnectOptions::default(),
        )
        .await
        .map(|_| ());
    assert_eq!(
        result,
        Err(ConnectError::Dead {
            session: SessionName::parse("agent").unwrap(),
            reason: DeadReason::Banned
        })
    );
}

#[test]
fn params_serialise_for_benchmark_reports() {
    let params = SimParams::default();
    let json = serde_json::to_string(&params).unwrap();
    assert_eq!(serde_json::from_str::<SimParams>(&json).unwrap(), params);
    let partial: SimParams = serde_json::from_str(r#"{"seed": 9}"#).unwrap();
    assert_eq!(
        partial,
        SimParams {
            seed: 9,
            ..SimParams::default()
        }
    );
}

// ----- Determinism -----

/// A busy scripted run: two accounts sending concurrently into limits, resolves, a login code,
/// an invite, and when each thing happened. Everything observable goes into the transcript.
async fn scripted_run(seed: u64) -> Vec<String> {
    let params = SimParams {
        seed,
        cold_dm_daily_budget: 4,
        ..SimParams::default()
    };
    let (world, _) = world_with_strangers(params, 12);
    world.create_account("agent_b", NewUser::named("B"));
    let channel = world.create_channel("Feed", None, &[]);
    let start = Instant::now();
    let mut transcript = vec![format!("invite {}", world.create_invite(channel))];
    let mut tasks = Vec::new();
    for (session, offset) in [("agent", 0), ("agent_b", 6)] {
        let world = world.clone();
        tasks.push(tokio::spawn(async move {
            let account = connect(&world, session).await;
            let mut lines = Vec::new();
            for step in 0..6 {
                let username = Username::parse(&format!("person_{:05}", offset + step)).unwrap();
                let line = match account.resolve_username(&username).await {
                    Ok(peer) => {
                        let sent = account
                            .send_direct(peer.peer, &text("hi"), RandomId(step as i64))
                            .await;
                        format!(
                            "{session} {username} hash {} -> {sent:?}",
                            peer.peer.access_hash
                        )
                    }
                    Err(error) => format!("{session} {username} -> {error:?}"),
                };
                lines.push(format!("{line} at {:?}", Instant::now() - start));
            }
            lines
        }));
    }
    for task in tasks {
        transcript.extend(task.await.unwrap());
    }
    let phone = PhoneNumber::parse("+79990000301").unwrap();
    world.create_user(NewUser::named("Login").phone(phone.as_str()));
    let mut login = SimConnector::new(world.clone())
        .begin_login(
            &SessionName::parse("fresh").unwrap(),
            &ConnectOptions::default(),
        )
        .await
        .unwrap();
    login.request_code(&phone).await.unwrap();
    transcript.push(format!(
        "code {:?} at {:?}",
        world.last_login_code(&phone),
        Instant::now() - start
    ));
    transcript
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_run() {
    let first = scripted_run(42).await;
    let second = scripted_run(42).await;
    assert_eq!(first, second);
    assert!(
        first.iter().any(|line| line.contains("FloodWait")),
        "the run reaches a limit: {first:#?}"
    );
    assert_ne!(first, scripted_run(43).await, "the seed matters");
}

#[tokio::test(start_paused = true)]
async fn an_edited_post_reaches_members_as_an_edit() {
    let world = SimWorld::new(SimParams::default());
    let account_id = world.create_account("agent", NewUser::named("Agent"));
    let channel = world.create_channel("Jobs", Some("jobs_feed"), &[account_id]);
    let account = connect(&world, "agent").await;
    let mut events = account.take_events().unwrap();
    let message_id = world.channel_post(channel, "Rust dev, 3k");
    world.edit_chat_message(channel, message_id, "Rust dev, 4k");
    let AccountEvent::NewMessage(posted) = events.recv().await.unwrap() else {
        panic!("expected the post")
    };
    let AccountEvent::MessageEdited(edited) = events.recv().await.unwrap() else {
        panic!("expected the edit")
    };
    assert_eq!(
        (posted.message_id, posted.text.as_str()),
        (message_id, "Rust dev, 3k")
    );
    assert_eq!(
        (edited.message_id, edited.text.as_str()),
        (message_id, "Rust dev, 4k")
    );
}

// ----- A world that outlives its process -----

#[tokio::test(start_paused = true)]
async fn a_saved_world_loads_with_its_people_messages_limits_and_connections() {
    let (world, account_id) = world_with_strangers(SimParams::default(), 1);
    let person = world.find_username("person_00000").unwrap();
    let channel = world.create_channel("Jobs", Some("jobs_feed"), &[account_id]);
    let account = connect(&world, "agent").await;
    let peer = resolve(&*account, "person_00000").await;
    let sent = account
        .send_direct(peer, &text("hello"), RandomId(7))
        .await
        .unwrap();
    world.channel_post(channel, "a vacancy");
    world.impose_flood_wait(account_id, 600);
    let now_before = world.now_unix();

    // Saved while connected, through text, with a field from the future and one from the past
    // removed: the state file of another version still loads.
    let mut saved = world.save_state();
    saved["world"]["a_field_from_a_later_version"] = serde_json::json!([1, 2]);
    saved["world"]
        .as_object_mut()
        .unwrap()
        .remove("history")
        .unwrap();
    let text_form = serde_json::to_string(&saved).unwrap();
    let loaded = SimWorld::load_state(serde_json::from_str(&text_form).unwrap()).unwrap();
    drop(account);

    assert_eq!(loaded.chat_messages(channel), world.chat_messages(channel));
    assert_eq!(
        loaded.received_from(person, account_id),
        world.received_from(person, account_id)
    );
    assert!(loaded.now_unix() >= now_before);
    assert_eq!(
        loaded.open_connections(&SessionName::parse("agent").unwrap()),
        0
    );
    // The session was held when saved; the loaded world has no holder, so it connects.
    let again = connect(&loaded, "agent").await;
    match again
        .send_direct(peer, &text("during the wait"), RandomId(8))
        .await
    {
        Err(TelegramError::FloodWait { seconds }) => assert!((590..=600).contains(&seconds)),
        other => panic!("the flood wait was lost: {other:?}"),
    }
    sleep(Duration::from_secs(600)).await;
    // The access hash this account got before the restart still works, and the random id still
    // deduplicates: no second message.
    assert_eq!(
        again.send_direct(peer, &text("hello"), RandomId(7)).await,
        Ok(sent)
    );
    assert_eq!(loaded.received_from(person, account_id).len(), 1);
    assert_eq!(loaded.duplicate_connections(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_connection_history_counts_a_session_used_twice_at_once_and_survives_saving() {
    let world = SimWorld::new(SimParams::default());
    world.create_account("agent", NewUser::named("Agent"));
    let session = SessionName::parse("agent").unwrap();
    let first = connect(&world, "agent").await;
    drop(first);
    let owner = connect(&world, "agent").await;
    assert_eq!(
        world.duplicate_connections(),
        0,
        "one after the other is fine"
    );
    let copy = world.duplicate_connect(&session);
    assert_eq!(world.duplicate_connections(), 1);
    let history = world.connection_history();
    assert_eq!(history.len(), 3);
    assert!(history[0].closed_at_ms.is_some() && history[1].closed_at_ms.is_none());
    assert_eq!(history[2].concurrent_with, vec![history[1].id]);
    let loaded = SimWorld::load_state(world.save_state()).unwrap();
    drop((owner, copy));
    assert_eq!(loaded.duplicate_connections(), 1);
    assert!(
        loaded
            .connection_history()
            .iter()
            .all(|entry| entry.closed_at_ms.is_some()),
        "a restart closes every connection"
    );
}

#[tokio::test(start_paused = true)]
async fn the_scripted_activity_posts_from_its_seed_and_replies_and_answers_once() {
    use jobbot_core::ids::SessionName;
    use jobbot_core::telegram::{AccountConnector, ConnectOptions};
    use jobbot_sim::scenario::{DemoWorld, Scripted};
    let run = |seed| async move {
        let mut scripted = Scripted::new(DemoWorld::build(seed), seed, 3);
        // Nobody listens yet: the sources wait for the main account's first connection.
        assert_eq!(scripted.step().vacancies, 0);
        assert_eq!(scripted.due().vacancies, 3);
        let main = jobbot_sim::SimConnector::new(scripted.layout.world.clone())
            .connect(&SessionName::main(), &ConnectOptions::default())
            .await
            .unwrap();
        main.disconnect().await;
        (0..5).for_each(|_| {
            scripted.step();
        });
        assert_eq!(scripted.due().vacancies, 0);
        let layout = &scripted.layout;
        let posts: Vec<String> = layout
            .sources
            .iter()
            .flat_map(|(_, source)| layout.world.chat_messages(*source))
            .map(|message| message.text)
            .collect();
        (scripted, posts)
    };
    let (mut scripted, posts) = run(11).await;
    assert_eq!(posts.len(), 3, "exactly the vacancies asked for");
    assert_eq!(
        run(11).await.1,
        posts,
        "the same seed posts the same vacancies"
    );
    assert_ne!(run(12).await.1, posts);

    let layout = scripted.layout.clone();
    let (_, _, agent) = layout.agents[0];
    let (_, recruiter) = layout.recruiters[0];
    layout
        .world
        .send_direct(agent, recruiter, "Hello about your vacancy");
    let topic = layout
        .world
        .create_topic(layout.crm_group, agent, "Recruiter");
    layout
        .world
        .group_post(
            layout.crm_group,
            agent,
            Some(topic),
            "👤 Recruiter:\n\nYes, still open",
        )
        .unwrap();
    let due = scripted.due();
    let report = scripted.step();
    assert_eq!(
        (report.vacancies, report.replies, report.answers),
        (0, 1, 1)
    );
    assert_eq!(due, report, "what was due is what the step did");
    assert_eq!(
        (scripted.due().replies, scripted.due().answers),
        (0, 0),
        "and then nothing is due"
    );

    // Saved and restored (as a restarted simulator does), it owes nothing more.
    let saved = serde_json::to_value(&scripted).unwrap();
    let world = SimWorld::load_state(layout.world.save_state()).unwrap();
    let mut restored: Scripted = serde_json::from_value(saved).unwrap();
    restored.layout = restored.layout.attach(world.clone());
    assert_eq!(restored.posted, 3);
    let report = restored.step();
    assert_eq!(
        (report.vacancies, report.replies, report.answers),
        (0, 0, 0)
    );
    assert_eq!(world.received_from(agent, recruiter).len(), 1);
    let answers: Vec<_> = world
        .chat_messages(layout.crm_group)
        .into_iter()
        .filter(|message| message.author == Some(layout.operator))
        .collect();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].topic, Some(topic));
}

#[test]
fn accounts_draw_their_own_limits_only_when_the_world_opts_in() {
    use jobbot_sim::{AccountLimitSpread, NewUser, SimWorld};
    let accounts = |params: SimParams| {
        let world = SimWorld::new(params);
        (0..10)
            .map(|index| {
                let account = world.create_account(
                    &format!("agent_{index}"),
                    NewUser::named("Agent").phone(&format!("+1555000{index:04}")),
                );
                world.account_limits(account)
            })
            .collect::<Vec<_>>()
    };
    let default = SimParams::default();
    for limits in accounts(default.clone()) {
        assert_eq!(limits.send_messages, default.send_messages);
        assert_eq!(limits.cold_dm_daily_budget, default.cold_dm_daily_budget);
    }
    let drawn = SimParams {
        account_limits: Some(AccountLimitSpread::default()),
        ..SimParams::default()
    };
    let first = accounts(drawn.clone());
    assert_eq!(first, accounts(drawn.clone()), "the seed fixes the world");
    let rates: std::collections::BTreeSet<u32> =
        first.iter().map(|l| l.send_messages.per_minute).collect();
    assert!(rates.len() > 3, "accounts differ: {first:?}");
    let other_seed = accounts(SimParams { seed: 7, ..drawn });
    assert_ne!(first, other_seed);
}

// ----- Peers a session has seen (`peers`) -----

/// A post to a chat the session's cache lost finds it in the dialogs (once), and a chat the
/// account is not in and never resolved is unknown to it.
#[tokio::test(start_paused = true)]
async fn a_chat_missing_from_the_cache_is_found_in_the_dialogs_once() {
    let world = SimWorld::new(SimParams::default());
    let agent = world.create_account("agent", NewUser::named("Agent"));
    let admin = world.create_user(NewUser::named("Admin"));
    let group = world.create_group("Team", None, false, &[admin]);
    world.add_member(group, agent);
    let elsewhere = world.create_group("Closed", None, false, &[admin]);
    world.forget_session_peers(&SessionName::parse("agent").unwrap());
    let account = connect(&world, "agent").await;
    for random_id in 1..=2 {
        account
            .post_to_chat(group, &text("hello"), RandomId(random_id))
            .await
            .expect("a chat the account is in");
    }
    assert_eq!(world.counters(agent).peer_fallbacks, 1, "looked for once");
    match account
        .post_to_chat(elsewhere, &text("hello"), RandomId(3))
        .await
    {
        Err(TelegramError::ChatForbidden { code }) => {
            assert_eq!(code, "CHAT_NOT_KNOWN_TO_ACCOUNT")
        }
        other => panic!("a chat never seen gave {other:?}"),
    }
}

/// An access hash works only with the session that saw the peer: another session of the same
/// account (a new login) must see the peer itself (core.telegram.org/api/peers).
#[tokio::test(start_paused = true)]
async fn a_peer_seen_by_another_session_of_the_account_is_refused() {
    let (world, agent) = world_with_strangers(SimParams::default(), 1);
    world.log_in_session("agent_again", agent);
    let first = connect(&world, "agent").await;
    let peer = resolve(&*first, "person_00000").await;
    let second = connect(&world, "agent_again").await;
    assert_eq!(
        second.send_direct(peer, &text("hi"), RandomId(1)).await,
        Err(TelegramError::PeerInvalid)
    );
    let own = resolve(&*second, "person_00000").await;
    assert_eq!(
        own, peer,
        "the same account's hash, once this session has seen it"
    );
    second
        .send_direct(own, &text("hi"), RandomId(2))
        .await
        .expect("seen by this session now");
}

/// Resolved usernames are kept with the session: a reconnect repeats no resolve; past the
/// cache's age limit the username is resolved again.
#[tokio::test(start_paused = true)]
async fn resolved_usernames_outlive_the_connection_until_they_age_out() {
    let (world, agent) = world_with_strangers(SimParams::default(), 1);
    let account = connect(&world, "agent").await;
    resolve(&*account, "person_00000").await;
    account.disconnect().await;
    drop(account);
    let account = connect(&world, "agent").await;
    resolve(&*account, "person_00000").await;
    assert_eq!(
        world.counters(agent).resolves,
        1,
        "a reconnect asks nothing"
    );
    sleep(jobbot_core::peer_cache::USERNAME_MAX_AGE + Duration::from_secs(1)).await;
    resolve(&*account, "person_00000").await;
    assert_eq!(world.counters(agent).resolves, 2, "aged out: asked again");
}

/// A private message carries its sender's full reference; a group message's author comes as a
/// `min` user, without one (core.telegram.org/api/min).
#[tokio::test(start_paused = true)]
async fn only_a_private_messages_sender_carries_a_reference() {
    let world = SimWorld::new(SimParams::default());
    let agent = world.create_account("agent", NewUser::named("Agent"));
    let person = world.create_user(NewUser::named("Person"));
    let group = world.create_group("Team", None, false, &[person]);
    world.add_member(group, agent);
    let account = connect(&world, "agent").await;
    let mut events = account.take_events().unwrap();
    world
        .group_post(group, person, None, "in the group")
        .unwrap();
    world.send_direct(person, agent, "in private");
    let mut senders = Vec::new();
    while senders.len() < 2 {
        if let Some(AccountEvent::NewMessage(message)) = events.recv().await {
            senders.push((message.text.clone(), message.sender.unwrap().peer.is_some()));
        }
    }
    assert_eq!(
        senders,
        [
            ("in the group".to_owned(), false),
            ("in private".to_owned(), true)
        ]
    );
}

// ----- Channel catch-up (`updates`) -----

/// A gap longer than one channel difference is filled from the channel's history with a few
/// `messages.getHistory` calls; a short one needs none.
#[tokio::test(start_paused = true)]
async fn a_long_channel_gap_is_filled_from_history_and_a_short_one_is_not() {
    let world = SimWorld::new(SimParams::default());
    let reader = world.create_account("reader", NewUser::named("Reader"));
    let channel = world.create_channel("Feed", None, &[]);
    world.add_member(channel, reader);
    let limit = world.params().channel_difference_limit;
    for (gap, fills) in [(limit, 0), (limit + 1, 1)] {
        let account = connect(&world, "reader").await;
        let mut events = account.take_events().unwrap();
        account.request_checkpoint();
        let checkpoint = loop {
            if let Some(AccountEvent::Checkpoint(checkpoint)) = events.recv().await {
                break checkpoint;
            }
        };
        account.commit_checkpoint(checkpoint).await.unwrap();
        account.disconnect().await;
        drop(account);
        let before = world.counters(reader).history_fills;
        for n in 0..gap {
            world.channel_post(channel, &format!("post {n}"));
        }
        let account = connect(&world, "reader").await;
        let mut events = account.take_events().unwrap();
        let mut texts = Vec::new();
        while texts.len() < gap {
            if let Some(AccountEvent::NewMessage(message)) = events.recv().await {
                texts.push(message.text);
            }
        }
        let expected: Vec<String> = (0..gap).map(|n| format!("post {n}")).collect();
        assert_eq!(texts, expected, "a gap of {gap}");
        assert_eq!(
            world.counters(reader).history_fills - before,
            fills,
            "a gap of {gap}"
        );
        account.disconnect().await;
    }
}

// ----- Media -----

/// The next private message an account's stream delivers (skipping other events).
async fn next_private(
    events: &mut tokio::sync::mpsc::Receiver<AccountEvent>,
) -> jobbot_core::telegram::IncomingMessage {
    loop {
        match events.recv().await.expect("the stream is open") {
            AccountEvent::NewMessage(message) if message.is_private() => return message,
            _ => {}
        }
    }
}

/// A received file goes out again by the receiving account's reference, with its caption; the
/// same file under another account's reference, a stale reference, an unknown file, a voice
/// message to someone who refuses them and an over-long caption fail as Telegram names them; an
/// upload over 2,000 MiB never happens.
#[tokio::test(start_paused = true)]
async fn media_are_resent_only_by_the_receiving_accounts_current_reference() {
    use jobbot_core::telegram::{MAX_CAPTION_UTF16, MediaKind};
    use jobbot_sim::{MAX_UPLOAD_BYTES, SimMedia};

    let world = SimWorld::new(SimParams::default());
    let agent_id = world.create_account("agent", NewUser::named("Agent").username("agent_hr"));
    let other_id = world.create_account("other", NewUser::named("Other").username("other_hr"));
    let anna = world.create_user(NewUser::named("Anna").username("anna_cv"));
    let quiet = world.create_user(
        NewUser::named("Quiet")
            .username("quiet_one")
            .refusing_voice_messages(),
    );
    let agent = connect(&world, "agent").await;
    let other = connect(&world, "other").await;
    let mut agent_events = agent.take_events().unwrap();
    let mut other_events = other.take_events().unwrap();

    world
        .send_direct_media(
            anna,
            agent_id,
            SimMedia::document("cv.pdf", "application/pdf", 52_000),
            "my CV",
        )
        .unwrap();
    let received = next_private(&mut agent_events).await;
    assert_eq!(
        (received.media, received.text.as_str()),
        (Some(MediaKind::Document), "my CV")
    );
    let file = received
        .file
        .clone()
        .expect("a document comes with its file");
    assert_eq!(file.file_name.as_deref(), Some("cv.pdf"));
    assert_eq!(file.mime_type.as_deref(), Some("application/pdf"));
    assert_eq!(file.size, Some(52_000));

    let quiet_peer = resolve(&*agent, "quiet_one").await;
    let anna_peer = resolve(&*agent, "anna_cv").await;
    let sent = agent
        .send_direct(
            quiet_peer,
            &MessageContent::with_media(file.clone(), "forwarded"),
            RandomId(1),
        )
        .await
        .expect("the receiving account re-sends its file");
    let delivered = world.received_from(quiet, agent_id);
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        (delivered[0].file, delivered[0].text.as_str()),
        (Some(file.id), "forwarded")
    );
    assert!(sent.message_id > 0);

    // Another account holding this account's reference: refused.
    world
        .send_direct_media(anna, other_id, SimMedia::photo(10_000), "")
        .unwrap();
    let other_peer = resolve(&*other, "anna_cv").await;
    assert_eq!(
        other
            .send_direct(
                other_peer,
                &MessageContent::with_media(file.clone(), ""),
                RandomId(2)
            )
            .await,
        Err(TelegramError::FileReferenceExpired)
    );
    let photo = next_private(&mut other_events).await;
    assert_eq!(photo.media, Some(MediaKind::Photo));
    assert!(
        photo.file.is_some(),
        "a photo without caption still has its file"
    );

    // A wrong access hash, and a stale reference after expiry.
    let mut forged = file.clone();
    forged.access_hash ^= 1;
    assert_eq!(
        agent
            .send_direct(
                anna_peer,
                &MessageContent::with_media(forged, ""),
                RandomId(3)
            )
            .await,
        Err(TelegramError::MediaEmpty)
    );
    let long_caption = "x".repeat(MAX_CAPTION_UTF16 + 1);
    assert_eq!(
        agent
            .send_direct(
                anna_peer,
                &MessageContent::with_media(file.clone(), long_caption),
                RandomId(4)
            )
            .await,
        Err(TelegramError::MessageTooLong)
    );
    world.expire_file_references(file.id);
    assert_eq!(
        agent
            .send_direct(
                anna_peer,
                &MessageContent::with_media(file.clone(), ""),
                RandomId(5)
            )
            .await,
        Err(TelegramError::FileReferenceExpired)
    );
    // Fetched again, the message carries a fresh reference that sends; a message deleted for
    // both sides has no file left.
    let fresh = agent
        .refetch_file(received.chat, received.message_id)
        .await
        .unwrap()
        .expect("the message still has its file");
    assert_ne!(fresh.file_reference, file.file_reference);
    // The sends so far took the burst: wait out the bucket (paused time).
    sleep(Duration::from_secs(60)).await;
    assert_eq!(
        (fresh.id, fresh.file_name.as_deref()),
        (file.id, Some("cv.pdf"))
    );
    agent
        .send_direct(
            anna_peer,
            &MessageContent::with_media(fresh.clone(), ""),
            RandomId(50),
        )
        .await
        .expect("the fresh reference sends");
    world.delete_private_message(agent_id, received.message_id);
    assert_eq!(
        agent.refetch_file(received.chat, received.message_id).await,
        Ok(None)
    );

    // Voice messages to someone who refuses them.
    world
        .send_direct_media(anna, agent_id, SimMedia::voice(7, 30_000), "")
        .unwrap();
    let voice = next_private(&mut agent_events)
        .await
        .file
        .expect("a voice file");
    assert_eq!(
        (voice.kind, voice.duration_seconds),
        (MediaKind::Voice, Some(7))
    );
    assert!(matches!(
        agent
            .send_direct(
                quiet_peer,
                &MessageContent::with_media(voice.clone(), ""),
                RandomId(6)
            )
            .await,
        Err(TelegramError::MediaForbidden { .. })
    ));
    // Six sends so far: past the burst of five, wait out the bucket (paused time).
    sleep(Duration::from_secs(60)).await;
    agent
        .send_direct(
            anna_peer,
            &MessageContent::with_media(voice, ""),
            RandomId(7),
        )
        .await
        .expect("Anna accepts voice messages");

    // The upload limit (core.telegram.org/api/files): 4,000 parts of 512 KiB.
    assert_eq!(MAX_UPLOAD_BYTES, 2000 * 1024 * 1024);
    assert!(
        world
            .send_direct_media(
                anna,
                agent_id,
                SimMedia::video("big.mp4", 60, MAX_UPLOAD_BYTES + 1),
                ""
            )
            .is_err()
    );
    world
        .send_direct_media(
            anna,
            agent_id,
            SimMedia::video_note(5, MAX_UPLOAD_BYTES),
            "",
        )
        .expect("exactly the limit uploads");
}
