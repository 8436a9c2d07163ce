use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::counters::COLD_DM_WINDOW_MS;
use super::*;

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn pacing(messages_per_minute: u32, burst: u32, cold_dms_per_day: u32) -> Pacing {
    Pacing {
        messages_per_minute,
        burst,
        cold_dms_per_day,
        peer_flood_pause_hours: 24,
    }
}

/// The pool [`ready_pool`] puts every agent in.
const POOL: PoolId = PoolId(0);

fn session(index: usize) -> SessionName {
    SessionName::parse(&format!("agent_{index}")).unwrap()
}

/// A scheduler with `count` ready agents named `agent_0`…, all with `pacing`, all in [`POOL`].
fn ready_pool(count: usize, pacing: Pacing) -> AgentScheduler {
    ready_pool_with(count, pacing, SchedulerSettings::default())
}

/// A pool that paces at the configured rate whatever happens, for tests of the cooldowns alone.
fn fixed_pool(count: usize, pacing: Pacing) -> AgentScheduler {
    let settings = SchedulerSettings {
        learn_limits: false,
        ..SchedulerSettings::default()
    };
    ready_pool_with(count, pacing, settings)
}

fn ready_pool_with(count: usize, pacing: Pacing, settings: SchedulerSettings) -> AgentScheduler {
    let mut scheduler = AgentScheduler::new(settings);
    let mut members = Vec::new();
    for index in 0..count {
        let agent = scheduler.add_agent(session(index), pacing, Millis::ZERO);
        scheduler.set_connection_state(agent, ConnectionState::Ready);
        members.push(agent);
    }
    scheduler.set_pool(POOL, &members).unwrap();
    scheduler
}

fn expect_send(decision: Decision) -> AgentKey {
    match decision {
        Decision::Send(agent) => agent,
        other => panic!("expected Send, got {other:?}"),
    }
}

/// Picks and reports `Sent` at once; returns the agent.
fn send_now(
    scheduler: &mut AgentScheduler,
    request: &Request,
    now: Millis,
    rng: &mut StdRng,
) -> AgentKey {
    let agent = expect_send(scheduler.pick(POOL, request, now, rng));
    assert_eq!(
        scheduler.on_outcome(agent, request, SendOutcome::Sent, now),
        OutcomeAction::Done
    );
    agent
}

const A: AgentKey = AgentKey(0);
const B: AgentKey = AgentKey(1);
const C: AgentKey = AgentKey(2);

#[test]
fn flood_wait_fails_over_to_another_agent_at_once_and_the_message_is_delivered_once() {
    let mut rng = rng(1);
    let mut scheduler = ready_pool(2, Pacing::default());
    let now = Millis(10 * SECOND);
    let request = Request::first_contact();

    let first = expect_send(scheduler.pick(POOL, &request, now, &mut rng));
    let flood = SendOutcome::Failed(TelegramError::FloodWait { seconds: 30 });
    assert_eq!(
        scheduler.on_outcome(first, &request, flood, now),
        OutcomeAction::RetryOtherAgent
    );

    let retry = request.avoiding(first);
    let second = expect_send(scheduler.pick(POOL, &retry, now, &mut rng));
    assert_ne!(second, first);
    assert_eq!(
        scheduler.on_outcome(second, &retry, SendOutcome::Sent, now),
        OutcomeAction::Done
    );

    let delivered: u32 = scheduler
        .status(now)
        .iter()
        .map(|status| status.sent_last_minute)
        .sum();
    assert_eq!(delivered, 1);
    assert_eq!(scheduler.agent(first).unwrap().in_flight(), 0);
}

#[test]
fn a_flooded_agent_is_skipped_until_its_wait_plus_margin_has_passed_then_picked_again() {
    let mut rng = rng(2);
    // Fast pacing so that pacing never hides the FloodWait in this test.
    let mut scheduler = fixed_pool(2, pacing(6_000, 100, 1_000));
    let start = Millis(0);
    let request = Request::new(SendKind::Reply);
    let flooded = expect_send(scheduler.pick(POOL, &request, start, &mut rng));
    scheduler.on_outcome(
        flooded,
        &request,
        SendOutcome::Failed(TelegramError::FloodWait { seconds: 30 }),
        start,
    );

    // 30 s + 10 % + 1 s.
    let flood_end = Millis(34 * SECOND);
    assert_eq!(
        scheduler.agent(flooded).unwrap().flood_wait_until(),
        flood_end
    );
    for at in (0..flood_end.0).step_by(250) {
        assert_ne!(
            send_now(&mut scheduler, &request, Millis(at), &mut rng),
            flooded,
            "picked during its FloodWait at {at} ms"
        );
    }
    let picked_after: HashSet<AgentKey> = (0..40)
        .map(|step| {
            send_now(
                &mut scheduler,
                &request,
                Millis(flood_end.0 + step * 250),
                &mut rng,
            )
        })
        .collect();
    assert!(
        picked_after.contains(&flooded),
        "the agent came back after its FloodWait"
    );
}

#[test]
fn a_lone_flooded_agent_gives_the_exact_end_of_its_wait_and_sends_then() {
    let mut rng = rng(3);
    let mut scheduler = ready_pool(1, Pacing::default());
    let request = Request::first_contact();
    let now = Millis(5 * SECOND);
    expect_send(scheduler.pick(POOL, &request, now, &mut rng));
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::FloodWait { seconds: 100 }),
        now,
    );

    // 100 s + 10 s + 1 s.
    let flood_end = Millis(now.0 + 111 * SECOND);
    let waiting = Decision::WaitUntil {
        at: flood_end,
        reason: WaitReason::FloodWait,
    };
    assert_eq!(scheduler.pick(POOL, &request, now, &mut rng), waiting);
    assert_eq!(
        scheduler.pick(POOL, &request, Millis(flood_end.0 - 1), &mut rng),
        waiting
    );
    assert_eq!(
        scheduler.pick(POOL, &request, flood_end, &mut rng),
        Decision::Send(A)
    );
}

#[test]
fn a_sticky_conversation_never_switches_agent() {
    #[derive(Debug)]
    enum Setup {
        Idle,
        PacedOut,
        BusyAndPacedOut,
        Flooded,
        Dead,
        Paused,
        Disconnected,
    }
    let now = Millis(HOUR);
    let check = |setup: Setup, expected: Decision| {
        let mut rng = rng(4);
        let mut scheduler = ready_pool(3, Pacing::default());
        let reply = Request::in_conversation(SendKind::Reply, B);
        match setup {
            Setup::Idle => {}
            Setup::PacedOut | Setup::BusyAndPacedOut => {
                for _ in 0..3 {
                    expect_send(scheduler.pick(POOL, &reply, now, &mut rng));
                }
                if matches!(setup, Setup::PacedOut) {
                    for _ in 0..3 {
                        scheduler.on_outcome(B, &reply, SendOutcome::Sent, now);
                    }
                }
            }
            Setup::Flooded => {
                expect_send(scheduler.pick(POOL, &reply, now, &mut rng));
                let action = scheduler.on_outcome(
                    B,
                    &reply,
                    SendOutcome::Failed(TelegramError::FloodWait { seconds: 10 }),
                    now,
                );
                assert_eq!(
                    action,
                    OutcomeAction::RetrySameAgentAfter {
                        at: Millis(now.0 + 12 * SECOND)
                    }
                );
            }
            Setup::Dead => scheduler.set_connection_state(
                B,
                ConnectionState::Dead {
                    reason: DeadReason::Revoked,
                },
            ),
            Setup::Paused => scheduler.set_connection_state(B, ConnectionState::Paused),
            Setup::Disconnected => scheduler.set_connection_state(B, ConnectionState::Disconnected),
        }
        // Idle agents A and C are always available; the sticky request must not use them.
        assert_eq!(
            scheduler.pick(POOL, &reply, now, &mut rng),
            expected,
            "{setup:?}"
        );
    };
    check(Setup::Idle, Decision::Send(B));
    let paced = Decision::WaitUntil {
        at: Millis(now.0 + 3 * SECOND),
        reason: WaitReason::Pacing,
    };
    check(Setup::PacedOut, paced.clone());
    check(Setup::BusyAndPacedOut, paced);
    check(
        Setup::Flooded,
        Decision::WaitUntil {
            at: Millis(now.0 + 12 * SECOND),
            reason: WaitReason::FloodWait,
        },
    );
    check(
        Setup::Dead,
        Decision::NoAgent(NoAgentReason::StickyAgentDead {
            agent: B,
            dead_reason: DeadReason::Revoked,
        }),
    );
    check(
        Setup::Paused,
        Decision::NoAgent(NoAgentReason::StickyAgentPaused { agent: B }),
    );
    check(
        Setup::Disconnected,
        Decision::WaitForStateChange {
            reason: StateChangeReason::StickyAgentNotConnected,
        },
    );
}

#[test]
fn dead_and_paused_agents_are_skipped() {
    let mut rng = rng(5);
    let mut scheduler = ready_pool(3, pacing(6_000, 100, 1_000));
    let request = Request::first_contact();
    let dying = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    let dead = SendOutcome::Failed(TelegramError::AccountDead {
        reason: DeadReason::Banned,
    });
    assert_eq!(
        scheduler.on_outcome(dying, &request, dead, Millis(0)),
        OutcomeAction::RetryOtherAgent
    );
    let paused = AgentKey((dying.0 + 1) % 3);
    let alive = AgentKey((dying.0 + 2) % 3);
    scheduler.set_connection_state(paused, ConnectionState::Paused);
    for step in 0..50 {
        assert_eq!(
            send_now(&mut scheduler, &request, Millis(step * 100), &mut rng),
            alive
        );
    }
    scheduler.set_connection_state(
        alive,
        ConnectionState::Dead {
            reason: DeadReason::Deactivated,
        },
    );
    assert_eq!(
        scheduler.pick(POOL, &request, Millis(HOUR), &mut rng),
        Decision::NoAgent(NoAgentReason::AllUnavailable { dead: 2, paused: 1 })
    );
}

#[test]
fn when_nothing_can_send_the_wait_ends_exactly_when_the_first_agent_can() {
    // Each agent is blocked by a different limit; the earliest of their release instants wins,
    // and a pick at that instant sends through that agent.
    let start = Millis(10 * HOUR);
    let check = |flood_seconds: u32,
                 paced_out: bool,
                 peer_flood: bool,
                 kind: SendKind,
                 expected_agent: AgentKey,
                 expected: (u64, WaitReason)| {
        let mut rng = rng(6);
        let mut scheduler = fixed_pool(3, pacing(20, 3, 1_000));
        let neutral = Request::new(SendKind::ChannelPost);
        // A: flooded for `flood_seconds`.
        scheduler.pick(
            POOL,
            &Request::in_conversation(SendKind::ChannelPost, A),
            start,
            &mut rng,
        );
        scheduler.on_outcome(
            A,
            &neutral,
            SendOutcome::Failed(TelegramError::FloodWait {
                seconds: flood_seconds,
            }),
            start,
        );
        // B: burst drained a little later, so its pacing instant is start + 2 s + 3 s.
        if paced_out {
            for _ in 0..3 {
                scheduler.pick(
                    POOL,
                    &Request::in_conversation(SendKind::ChannelPost, B),
                    Millis(start.0 + 2 * SECOND),
                    &mut rng,
                );
            }
        }
        // C: PEER_FLOOD, which blocks first contacts for 24 h but not the other kinds.
        if peer_flood {
            scheduler.pick(
                POOL,
                &Request::in_conversation(SendKind::ChannelPost, C),
                start,
                &mut rng,
            );
            scheduler.on_outcome(
                C,
                &neutral,
                SendOutcome::Failed(TelegramError::PeerFlood),
                start,
            );
            scheduler.pick(
                POOL,
                &Request::in_conversation(SendKind::ChannelPost, C),
                start,
                &mut rng,
            );
            scheduler.pick(
                POOL,
                &Request::in_conversation(SendKind::ChannelPost, C),
                start,
                &mut rng,
            );
        }
        let request = Request::new(kind);
        let now = Millis(start.0 + 2 * SECOND);
        let at = Millis(start.0 + expected.0);
        assert_eq!(
            scheduler.pick(POOL, &request, now, &mut rng),
            Decision::WaitUntil {
                at,
                reason: expected.1
            }
        );
        assert_eq!(
            scheduler.pick(POOL, &request, Millis(at.0 - 1), &mut rng),
            Decision::WaitUntil {
                at,
                reason: expected.1
            }
        );
        assert_eq!(
            scheduler.pick(POOL, &request, at, &mut rng),
            Decision::Send(expected_agent)
        );
    };
    // A free at 3.3 + 1 = 4.3 s (FloodWait 3 s); B at 5 s; C drained at start (3 picks), free at 3 s.
    check(
        3,
        true,
        true,
        SendKind::ChannelPost,
        C,
        (3 * SECOND, WaitReason::Pacing),
    );
    // For a first contact C is out for 24 h, so A (4.3 s) is next.
    check(
        3,
        true,
        true,
        SendKind::FirstContact,
        A,
        (4_300, WaitReason::FloodWait),
    );
    // A long FloodWait: B's pacing (5 s) comes first.
    check(
        60,
        true,
        true,
        SendKind::FirstContact,
        B,
        (5 * SECOND, WaitReason::Pacing),
    );
}

#[test]
fn peer_flood_blocks_first_contacts_on_that_agent_but_not_replies() {
    let mut rng = rng(7);
    let mut scheduler = ready_pool(1, Pacing::default());
    let now = Millis(HOUR);
    let first_contact = Request::first_contact();
    expect_send(scheduler.pick(POOL, &first_contact, now, &mut rng));
    let action = scheduler.on_outcome(
        A,
        &first_contact,
        SendOutcome::Failed(TelegramError::PeerFlood),
        now,
    );
    assert_eq!(action, OutcomeAction::RetryOtherAgent);

    let pause_end = Millis(now.0 + 24 * HOUR);
    assert_eq!(
        scheduler.pick(POOL, &first_contact, now, &mut rng),
        Decision::WaitUntil {
            at: pause_end,
            reason: WaitReason::PeerFlood
        }
    );
    assert_eq!(
        scheduler.pick(POOL, &Request::new(SendKind::Reply), now, &mut rng),
        Decision::Send(A)
    );
    assert_eq!(
        scheduler.pick(
            POOL,
            &Request::in_conversation(SendKind::Reply, A),
            now,
            &mut rng
        ),
        Decision::Send(A)
    );
    assert_eq!(
        scheduler.pick(POOL, &first_contact, pause_end, &mut rng),
        Decision::Send(A)
    );
}

#[test]
fn the_cold_dm_cap_is_a_rolling_24_hours_and_spares_replies() {
    let mut rng = rng(8);
    let mut scheduler = ready_pool(1, pacing(6_000, 10, 3));
    let first_contact = Request::first_contact();
    for at in [0, MINUTE, 2 * MINUTE] {
        send_now(&mut scheduler, &first_contact, Millis(at), &mut rng);
    }
    let now = Millis(3 * MINUTE);
    let frees_at = Millis(COLD_DM_WINDOW_MS);
    assert_eq!(
        scheduler.pick(POOL, &first_contact, now, &mut rng),
        Decision::WaitUntil {
            at: frees_at,
            reason: WaitReason::ColdDmDailyCap
        }
    );
    assert_eq!(scheduler.status(now)[0].cold_dms_last_day, 3);
    assert_eq!(
        send_now(
            &mut scheduler,
            &Request::new(SendKind::Reply),
            now,
            &mut rng
        ),
        A
    );
    assert_eq!(
        send_now(&mut scheduler, &first_contact, frees_at, &mut rng),
        A
    );
    // The next slot frees 24 h after the second send, not at midnight.
    assert_eq!(
        scheduler.pick(POOL, &first_contact, frees_at, &mut rng),
        Decision::WaitUntil {
            at: Millis(MINUTE + COLD_DM_WINDOW_MS),
            reason: WaitReason::ColdDmDailyCap
        }
    );
}

/// The GCRA guarantee, checked exactly on a list of send instants: the `j`-th send after the
/// `i`-th is no earlier than `(j - i + 1 - burst) * T` after it. Rewritten as
/// `s_j - j*T >= s_i - i*T - tau` for all `i < j`, it is one pass with a running maximum.
fn assert_conforms(sends: &[Millis], emission_interval_ms: u64, burst: u32, agent: AgentKey) {
    let tolerance = emission_interval_ms as i128 * i128::from(burst - 1);
    let mut running_max: Option<i128> = None;
    for (index, at) in sends.iter().enumerate() {
        let shifted = i128::from(at.0) - index as i128 * emission_interval_ms as i128;
        if let Some(max) = running_max {
            assert!(
                shifted >= max - tolerance,
                "{agent} sent too fast at {at} (send #{index})"
            );
        }
        running_max = Some(running_max.map_or(shifted, |max| max.max(shifted)));
    }
}

#[test]
fn over_a_simulated_hour_no_agent_exceeds_its_rate_and_the_pool_sends_at_its_full_rate() {
    let agents = 5u64;
    let window = HOUR;
    let tick = 100;
    let pacing = Pacing::default();
    let interval = 60_000 / u64::from(pacing.messages_per_minute);
    let burst = u64::from(pacing.burst);

    // A request every tick, far more than the pool can take: the ones that must wait are dropped.
    let mut rng = rng(9);
    let mut scheduler = ready_pool(agents as usize, pacing);
    let mut sends: HashMap<AgentKey, Vec<Millis>> = HashMap::new();
    let request = Request::new(SendKind::Reply);
    for step in 0..window / tick {
        let now = Millis(step * tick);
        if let Decision::Send(agent) = scheduler.pick(POOL, &request, now, &mut rng) {
            scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
            sends.entry(agent).or_default().push(now);
        }
    }
    for (agent, times) in &sends {
        assert_conforms(times, interval, pacing.burst, *agent);
        assert!(
            times.len() as u64 <= burst + window / interval,
            "{agent} sent {}",
            times.len()
        );
    }
    // Each agent is saturated: its burst at 0 and then one send per interval in [0, 1 h).
    let total: u64 = sends.values().map(|times| times.len() as u64).sum();
    assert_eq!(total, agents * (burst + window / interval - 1));

    // Event-driven: follow each WaitUntil exactly; the same exact total, and no early wake-up.
    let mut rng = rng_for_event_driven();
    let mut scheduler = ready_pool(agents as usize, pacing);
    let mut now = Millis(0);
    let mut total = 0u64;
    let mut just_woke = false;
    while now.0 < window {
        match scheduler.pick(POOL, &request, now, &mut rng) {
            Decision::Send(agent) => {
                scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
                total += 1;
                just_woke = false;
            }
            Decision::WaitUntil { at, reason } => {
                assert!(!just_woke, "woke at {now} and still could not send");
                assert!(at > now && reason == WaitReason::Pacing);
                now = at;
                just_woke = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(total, agents * (burst + window / interval - 1));
}

fn rng_for_event_driven() -> StdRng {
    rng(10)
}

#[test]
fn load_spreads_evenly_below_capacity() {
    // Four agents with 80 sends/min of capacity and one request a second (75 % load): the
    // least-busy choice should keep every agent within a few percent of a quarter.
    let mut rng = rng(11);
    let mut scheduler = ready_pool(4, Pacing::default());
    let mut counts: HashMap<AgentKey, u32> = HashMap::new();
    let request = Request::new(SendKind::Reply);
    for second in 0..HOUR / SECOND {
        let agent = send_now(&mut scheduler, &request, Millis(second * SECOND), &mut rng);
        *counts.entry(agent).or_default() += 1;
    }
    println!("sends per agent: {counts:?}");
    let fair_share = 3_600 / 4;
    for (agent, count) in &counts {
        assert!(
            count.abs_diff(fair_share) <= 45,
            "{agent} sent {count}, fair share {fair_share}"
        );
    }
    assert_eq!(counts.len(), 4);
}

#[test]
fn two_idle_agents_are_not_always_picked_in_the_same_order() {
    let mut rng = rng(12);
    let picked: HashSet<AgentKey> = (0..32)
        .map(|_| {
            let mut scheduler = ready_pool(2, Pacing::default());
            expect_send(scheduler.pick(POOL, &Request::first_contact(), Millis(0), &mut rng))
        })
        .collect();
    assert_eq!(picked, HashSet::from([A, B]));
}

#[test]
fn consecutive_picks_alternate_between_two_agents_by_headroom() {
    let mut rng = rng(13);
    let mut scheduler = ready_pool(2, Pacing::default());
    let request = Request::new(SendKind::Reply);
    let first = send_now(&mut scheduler, &request, Millis(0), &mut rng);
    let second = send_now(&mut scheduler, &request, Millis(0), &mut rng);
    assert_ne!(first, second, "the agent with more headroom goes next");
}

#[test]
fn recipient_level_failures_fail_the_recipient_and_leave_the_agent_untouched() {
    let check = |error: TelegramError| {
        let mut rng = rng(14);
        let mut scheduler = ready_pool(2, Pacing::default());
        let request = Request::first_contact();
        let agent = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
        let mut expected = scheduler.status(Millis(0));
        expected[agent.0 as usize].in_flight = 0;
        let action = scheduler.on_outcome(
            agent,
            &request,
            SendOutcome::Failed(error.clone()),
            Millis(0),
        );
        assert_eq!(
            action,
            OutcomeAction::FailRecipient {
                error: error.clone()
            }
        );
        assert_eq!(scheduler.status(Millis(0)), expected, "{error:?}");
    };
    check(TelegramError::PrivacyRestricted);
    check(TelegramError::UsernameNotFound);
    check(TelegramError::NotAUser);
    check(TelegramError::TopicDeleted);
}

#[test]
fn outcomes_map_to_actions_and_agent_states() {
    let now = Millis(HOUR);
    let check =
        |error: TelegramError, sticky: bool, action: OutcomeAction, state: ConnectionState| {
            let mut rng = rng(15);
            let mut scheduler = ready_pool(2, Pacing::default());
            let request = if sticky {
                Request::in_conversation(SendKind::Reply, A)
            } else {
                Request::new(SendKind::Reply)
            };
            // Reserve on A specifically, whatever the kind of request.
            expect_send(scheduler.pick(
                POOL,
                &Request::in_conversation(SendKind::Reply, A),
                now,
                &mut rng,
            ));
            assert_eq!(
                scheduler.on_outcome(A, &request, SendOutcome::Failed(error.clone()), now),
                action,
                "{error:?} sticky={sticky}"
            );
            let agent = scheduler.agent(A).unwrap();
            assert_eq!(agent.connection(), state, "{error:?} sticky={sticky}");
            assert_eq!(agent.in_flight(), 0);
            assert_eq!(agent.last_error().map(|last| &last.error), Some(&error));
        };
    let ready = ConnectionState::Ready;
    let flood = TelegramError::FloodWait { seconds: 100 };
    check(flood.clone(), false, OutcomeAction::RetryOtherAgent, ready);
    check(
        flood,
        true,
        OutcomeAction::RetrySameAgentAfter {
            at: Millis(now.0 + 111 * SECOND),
        },
        ready,
    );
    check(
        TelegramError::PeerFlood,
        false,
        OutcomeAction::RetryOtherAgent,
        ready,
    );
    check(
        TelegramError::PeerFlood,
        true,
        OutcomeAction::RetrySameAgentAfter {
            at: Millis(now.0 + 24 * HOUR),
        },
        ready,
    );
    let dead = TelegramError::AccountDead {
        reason: DeadReason::AuthKeyDuplicated,
    };
    let dead_state = ConnectionState::Dead {
        reason: DeadReason::AuthKeyDuplicated,
    };
    check(
        dead.clone(),
        false,
        OutcomeAction::RetryOtherAgent,
        dead_state,
    );
    check(
        dead,
        true,
        OutcomeAction::FailPermanently {
            reason: FailureReason::StickyAgentDead {
                dead_reason: DeadReason::AuthKeyDuplicated,
            },
        },
        dead_state,
    );
    let network = TelegramError::Network {
        message: "connection reset".into(),
    };
    check(
        network.clone(),
        false,
        OutcomeAction::RetrySameAgentAfterReconnect,
        ConnectionState::Disconnected,
    );
    check(
        network,
        true,
        OutcomeAction::RetrySameAgentAfterReconnect,
        ConnectionState::Disconnected,
    );
    check(
        TelegramError::SlowMode { seconds: 30 },
        false,
        OutcomeAction::RetryChatAfter {
            at: Millis(now.0 + 30 * SECOND),
        },
        ready,
    );
    let forbidden = TelegramError::ChatForbidden {
        code: "CHAT_WRITE_FORBIDDEN".into(),
    };
    check(
        forbidden.clone(),
        false,
        OutcomeAction::FailPermanently {
            reason: FailureReason::ChatForbidden { error: forbidden },
        },
        ready,
    );
    let other = TelegramError::Other {
        message: "INTERNAL".into(),
    };
    check(
        other.clone(),
        false,
        OutcomeAction::FailPermanently {
            reason: FailureReason::Unclassified { error: other },
        },
        ready,
    );
}

#[test]
fn a_slow_mode_wait_does_not_cool_the_agent_down() {
    let mut rng = rng(16);
    let mut scheduler = ready_pool(1, Pacing::default());
    let request = Request::new(SendKind::ChannelPost);
    expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::SlowMode { seconds: 600 }),
        Millis(0),
    );
    assert_eq!(
        scheduler.pick(POOL, &request, Millis(0), &mut rng),
        Decision::Send(A)
    );
}

#[test]
fn when_no_agent_will_ever_qualify_the_reason_says_why() {
    let check = |setup: &dyn Fn(&mut AgentScheduler), request: Request, expected: Decision| {
        let mut rng = rng(17);
        let mut scheduler = ready_pool(2, pacing(20, 3, 40));
        setup(&mut scheduler);
        assert_eq!(
            scheduler.pick(POOL, &request, Millis(0), &mut rng),
            expected
        );
    };
    let first_contact = Request::first_contact();
    check(
        &|scheduler| {
            scheduler.set_connection_state(A, ConnectionState::Paused);
            scheduler.set_connection_state(B, ConnectionState::Paused);
        },
        first_contact,
        Decision::NoAgent(NoAgentReason::AllUnavailable { dead: 0, paused: 2 }),
    );
    check(
        &|scheduler| {
            scheduler.set_connection_state(A, ConnectionState::Paused);
            scheduler.set_connection_state(B, ConnectionState::Disconnected);
        },
        first_contact,
        Decision::WaitForStateChange {
            reason: StateChangeReason::AgentsNotConnected,
        },
    );
    check(
        &|scheduler| {
            scheduler.set_pacing(A, pacing(20, 3, 0), Millis(0));
            scheduler.set_pacing(B, pacing(20, 3, 0), Millis(0));
        },
        first_contact,
        Decision::NoAgent(NoAgentReason::NoAgentMayWriteFirst),
    );
    check(
        &|scheduler| scheduler.set_connection_state(B, ConnectionState::Paused),
        first_contact.avoiding(A),
        Decision::NoAgent(NoAgentReason::AllUnavailable { dead: 0, paused: 1 }),
    );
    check(
        &|_| {},
        Request::in_conversation(SendKind::Reply, AgentKey(9)),
        Decision::NoAgent(NoAgentReason::UnknownAgent { agent: AgentKey(9) }),
    );
    let mut empty = AgentScheduler::new(SchedulerSettings::default());
    assert_eq!(
        empty.pick(POOL, &first_contact, Millis(0), &mut rng(0)),
        Decision::NoAgent(NoAgentReason::UnknownPool { pool: POOL })
    );
    empty.set_pool(POOL, &[]).unwrap();
    assert_eq!(
        empty.pick(POOL, &first_contact, Millis(0), &mut rng(0)),
        Decision::NoAgent(NoAgentReason::EmptyPool)
    );
}

#[test]
fn the_ready_index_follows_connection_changes() {
    let mut rng = rng(18);
    let mut scheduler = ready_pool(50, Pacing::default());
    let states = [
        ConnectionState::Ready,
        ConnectionState::Connecting,
        ConnectionState::Disconnected,
        ConnectionState::Paused,
        ConnectionState::Dead {
            reason: DeadReason::Frozen,
        },
    ];
    for _ in 0..2_000 {
        let agent = AgentKey(rng.random_range(0..50));
        scheduler.set_connection_state(agent, states[rng.random_range(0..states.len())]);
        let expected: HashSet<AgentKey> = scheduler
            .agents()
            .filter(|(_, state)| state.connection() == ConnectionState::Ready)
            .map(|(key, _)| key)
            .collect();
        let indexed: HashSet<AgentKey> = scheduler.pools[&POOL].ready.iter().copied().collect();
        assert_eq!(indexed, expected);
        assert_indexes_consistent(&scheduler);
    }
}

/// Checks every index of the table against its definition: each pool's ready list holds exactly
/// its `Ready` members, once each, at the positions their memberships record, and memberships
/// and pool member lists mirror each other.
fn assert_indexes_consistent(scheduler: &AgentScheduler) {
    for (&pool_id, pool) in &scheduler.pools {
        let members: HashSet<AgentKey> = pool.members.iter().copied().collect();
        assert_eq!(
            members.len(),
            pool.members.len(),
            "{pool_id}: duplicate member"
        );
        let expected: HashSet<AgentKey> = pool
            .members
            .iter()
            .copied()
            .filter(|&agent| {
                scheduler.agents[agent.0 as usize].connection == ConnectionState::Ready
            })
            .collect();
        let indexed: HashSet<AgentKey> = pool.ready.iter().copied().collect();
        assert_eq!(indexed, expected, "{pool_id}: ready index");
        assert_eq!(
            pool.ready.len(),
            expected.len(),
            "{pool_id}: duplicate in ready index"
        );
        for (position, agent) in pool.ready.iter().enumerate() {
            let membership = scheduler.links[agent.0 as usize]
                .memberships
                .iter()
                .find(|m| m.pool == pool_id)
                .unwrap_or_else(|| panic!("{pool_id}: {agent} indexed without membership"));
            assert_eq!(membership.ready_position, Some(position as u32));
        }
    }
    for (index, links) in scheduler.links.iter().enumerate() {
        let agent = AgentKey(index as u32);
        if links.retired {
            assert!(
                links.memberships.is_empty(),
                "{agent} removed but in a pool"
            );
        }
        for membership in &links.memberships {
            let pool = &scheduler.pools[&membership.pool];
            assert!(pool.members.contains(&agent), "{agent}: stale membership");
            if membership.ready_position.is_none() {
                assert!(!pool.ready.contains(&agent));
            }
        }
    }
}

#[test]
fn status_reports_cooldowns_headroom_and_counts_and_serialises() {
    let mut rng = rng(19);
    let mut scheduler = fixed_pool(1, Pacing::default());
    let request = Request::first_contact();
    send_now(&mut scheduler, &request, Millis(0), &mut rng);
    expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::FloodWait { seconds: 9 }),
        Millis(0),
    );
    let status = &scheduler.status(Millis(1_000))[0];
    assert_eq!(status.flood_wait_until, Some(Millis(10_900)));
    assert_eq!(
        (
            status.pacing_headroom,
            status.cold_dms_last_day,
            status.sent_last_minute
        ),
        (1, 2, 1)
    );
    let json = serde_json::to_value(status).unwrap();
    assert_eq!(json["session"], "agent_0");
    assert_eq!(json["state"]["state"], "ready");
    assert_eq!(json["last_error"]["error"]["error"], "flood_wait");
    assert_eq!(scheduler.status(Millis(10_900))[0].flood_wait_until, None);
}

#[test]
fn pick_cost_at_ten_thousand_agents_is_printed_not_asserted() {
    // Rough figures for the record (debug builds are slow); the benchmark harness measures them
    // properly. What this test asserts is only that large pools keep working on both paths.
    let mut rng = rng(20);
    let mut scheduler = ready_pool(10_000, Pacing::default());
    let request = Request::first_contact();
    let picks = 20_000u64;
    let started = std::time::Instant::now();
    for step in 0..picks {
        send_now(&mut scheduler, &request, Millis(step), &mut rng);
    }
    println!(
        "common path, pick + outcome at 10,000 agents: {:?}",
        started.elapsed() / picks as u32
    );

    // Saturated: every agent has used its one permit, so each pick samples, then scans.
    let mut scheduler = ready_pool(10_000, pacing(1, 1, 40));
    for _ in 0..10_000 {
        send_now(&mut scheduler, &request, Millis(0), &mut rng);
    }
    let waits = 200u32;
    let started = std::time::Instant::now();
    for _ in 0..waits {
        let decision = scheduler.pick(POOL, &request, Millis(0), &mut rng);
        assert_eq!(
            decision,
            Decision::WaitUntil {
                at: Millis(MINUTE),
                reason: WaitReason::Pacing
            }
        );
    }
    println!(
        "saturated path (sample, then scan) at 10,000 agents: {:?}",
        started.elapsed() / waits
    );
}

#[test]
fn random_traffic_keeps_the_cache_in_step_and_every_decision_matches_a_brute_force_oracle() {
    let mut rng = rng(21);
    let mut scheduler = ready_pool(6, pacing(30, 2, 5));
    let kinds = [
        SendKind::FirstContact,
        SendKind::Reply,
        SendKind::ChannelPost,
    ];
    let errors = [
        TelegramError::FloodWait { seconds: 7 },
        TelegramError::PeerFlood,
        TelegramError::PrivacyRestricted,
        TelegramError::SlowMode { seconds: 3 },
        TelegramError::Network {
            message: "reset".into(),
        },
    ];
    let mut now = Millis(0);
    let (mut sends, mut waits, mut gave_up) = (0u32, 0u32, 0u32);
    for step in 0..5_000u32 {
        now = Millis(now.0 + rng.random_range(0..1_500));
        if step % 97 == 0 {
            let agent = AgentKey(rng.random_range(0..6));
            scheduler.set_connection_state(agent, ConnectionState::Ready);
            scheduler.set_pacing(
                agent,
                pacing(
                    rng.random_range(10..40),
                    rng.random_range(1..4),
                    rng.random_range(0..6),
                ),
                now,
            );
        }
        let request = Request::new(kinds[rng.random_range(0..kinds.len())]);
        // The oracle: the earliest instant over ready agents, from their full state.
        let oracle = scheduler
            .agents()
            .filter(|(_, state)| state.connection() == ConnectionState::Ready)
            .map(|(_, state)| match state.ready_at(&request, now) {
                Ok(()) => now,
                Err((at, _)) => at,
            })
            .min();
        match scheduler.pick(POOL, &request, now, &mut rng) {
            Decision::Send(agent) => {
                assert_eq!(
                    oracle,
                    Some(now),
                    "step {step}: sent while the oracle says wait"
                );
                sends += 1;
                let outcome = if rng.random_bool(0.8) {
                    SendOutcome::Sent
                } else {
                    SendOutcome::Failed(errors[rng.random_range(0..errors.len())].clone())
                };
                scheduler.on_outcome(agent, &request, outcome, now);
            }
            Decision::WaitUntil { at, .. } => {
                assert_eq!(Some(at), oracle, "step {step}: inexact wait");
                waits += 1;
            }
            Decision::WaitForStateChange { .. } | Decision::NoAgent(_) => {
                assert!(
                    oracle.is_none_or(|at| at == Millis::NEVER),
                    "step {step}: gave up with {oracle:?}"
                );
                gave_up += 1;
            }
        }
        for (key, state) in scheduler.agents() {
            assert_eq!(
                scheduler.sendable_at[key.0 as usize],
                state.sendable_at(),
                "step {step}: stale cache for {key}"
            );
        }
    }
    // The traffic must have exercised every branch for the oracle to mean something.
    assert!(
        sends > 100 && waits > 100 && gave_up > 0,
        "sends {sends}, waits {waits}, gave up {gave_up}"
    );
}

#[test]
fn an_agent_shared_by_two_pools_spends_one_pacing_budget() {
    // Two channels list the same account and both ask for a send every tick for an hour: the
    // account still sends at its own rate in total, never at twice it.
    let window = HOUR;
    let tick = 100;
    let pacing = Pacing::default();
    let interval = 60_000 / u64::from(pacing.messages_per_minute);
    let burst = u64::from(pacing.burst);
    let (first_pool, second_pool) = (PoolId(1), PoolId(2));

    let mut rng = rng(30);
    let mut scheduler = AgentScheduler::new(SchedulerSettings::default());
    let shared = scheduler.add_agent(session(0), pacing, Millis::ZERO);
    // The second channel's add_agent for the same account gets the same key.
    assert_eq!(
        scheduler.add_agent(session(0), pacing, Millis::ZERO),
        shared
    );
    scheduler.set_connection_state(shared, ConnectionState::Ready);
    scheduler.set_pool(first_pool, &[shared]).unwrap();
    scheduler.set_pool(second_pool, &[shared]).unwrap();

    let request = Request::new(SendKind::Reply);
    let mut sends: Vec<Millis> = Vec::new();
    let mut per_pool: HashMap<PoolId, u64> = HashMap::new();
    for step in 0..window / tick {
        let now = Millis(step * tick);
        // Random order, so that both get some of the budget (a permit frees every 30 ticks,
        // so alternating by tick parity would hand every one to the same pool).
        let order = if rng.random_bool(0.5) {
            [first_pool, second_pool]
        } else {
            [second_pool, first_pool]
        };
        for pool in order {
            if let Decision::Send(agent) = scheduler.pick(pool, &request, now, &mut rng) {
                assert_eq!(agent, shared);
                scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
                sends.push(now);
                *per_pool.entry(pool).or_default() += 1;
            }
        }
    }
    assert_conforms(&sends, interval, pacing.burst, shared);
    assert_eq!(sends.len() as u64, burst + window / interval - 1);
    assert!(
        per_pool.values().all(|&count| count > 100),
        "both pools sent: {per_pool:?}"
    );
    // Both pools report the one state of the account.
    let now = Millis(window);
    let first = scheduler.pool_status(first_pool, now).unwrap();
    let second = scheduler.pool_status(second_pool, now).unwrap();
    assert_eq!(first.agents, second.agents);
    // The day counter has whole-hour buckets, so an hour of traffic is all in it.
    assert_eq!(first.agents[0].sent_last_day as usize, sends.len());
}

#[test]
fn a_pool_never_picks_a_non_member() {
    let mut rng = rng(31);
    let mut scheduler = ready_pool(10, pacing(6_000, 100, 1_000));
    let channel = PoolId(7);
    let members = [AgentKey(2), AgentKey(5), AgentKey(7)];
    scheduler.set_pool(channel, &members).unwrap();
    let kinds = [
        SendKind::FirstContact,
        SendKind::Reply,
        SendKind::ChannelPost,
    ];
    let mut seen = HashSet::new();
    for step in 0..2_000u64 {
        let now = Millis(step * 50);
        let request = Request::new(kinds[rng.random_range(0..kinds.len())]);
        // Traffic in the all-agents pool too, so the members' load moves under the channel.
        if let Decision::Send(agent) = scheduler.pick(POOL, &request, now, &mut rng) {
            scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
        }
        if let Decision::Send(agent) = scheduler.pick(channel, &request, now, &mut rng) {
            assert!(members.contains(&agent), "step {step}: picked {agent}");
            seen.insert(agent);
            scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
        }
    }
    assert_eq!(seen, HashSet::from(members));

    // A conversation of another channel's agent is refused, not moved.
    let outsider = Request::in_conversation(SendKind::Reply, AgentKey(0));
    assert_eq!(
        scheduler.pick(channel, &outsider, Millis(HOUR), &mut rng),
        Decision::NoAgent(NoAgentReason::StickyAgentNotInPool {
            agent: AgentKey(0),
            pool: channel
        })
    );
    assert_eq!(
        scheduler.pick(POOL, &outsider, Millis(HOUR), &mut rng),
        Decision::Send(AgentKey(0))
    );

    // Replacing the membership takes effect at once; a bad list changes nothing.
    scheduler
        .set_pool(channel, &[AgentKey(1), AgentKey(1)])
        .unwrap();
    assert_eq!(scheduler.pool_members(channel), Some(&[AgentKey(1)][..]));
    assert_eq!(
        scheduler.set_pool(channel, &[AgentKey(3), AgentKey(99)]),
        Err(PoolError::UnknownAgent {
            agent: AgentKey(99)
        })
    );
    assert_eq!(scheduler.pool_members(channel), Some(&[AgentKey(1)][..]));
    let request = Request::first_contact();
    for step in 0..50 {
        let now = Millis(2 * HOUR + step * SECOND);
        let agent = expect_send(scheduler.pick(channel, &request, now, &mut rng));
        assert_eq!(agent, AgentKey(1));
        scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
    }
    assert!(scheduler.remove_pool(channel));
    assert_eq!(
        scheduler.pick(
            channel,
            &Request::first_contact(),
            Millis(3 * HOUR),
            &mut rng
        ),
        Decision::NoAgent(NoAgentReason::UnknownPool { pool: channel })
    );
    assert!(!scheduler.remove_pool(channel));
    assert_indexes_consistent(&scheduler);
}

#[test]
fn removing_an_agent_mid_flight_absorbs_its_late_outcome_and_retries_elsewhere() {
    let now = Millis(HOUR);
    let check = |outcome: SendOutcome, sticky: bool, expected: OutcomeAction| {
        let mut rng = rng(32);
        let mut scheduler = ready_pool(2, Pacing::default());
        let request = if sticky {
            Request::in_conversation(SendKind::Reply, A)
        } else {
            Request::first_contact()
        };
        // Reserve on A, then the configuration drops A before the send reports back.
        expect_send(scheduler.pick(
            POOL,
            &Request::in_conversation(SendKind::Reply, A),
            now,
            &mut rng,
        ));
        assert!(scheduler.remove_agent(A));
        let label = format!("{outcome:?} sticky={sticky}");
        let action = scheduler.on_outcome(A, &request, outcome, now);
        assert_eq!(action, expected, "{label}");
        assert_eq!(scheduler.agents[A.0 as usize].in_flight, 0, "{label}");
        if action == OutcomeAction::RetryOtherAgent {
            let retry = request.avoiding(A);
            assert_eq!(
                scheduler.pick(POOL, &retry, now, &mut rng),
                Decision::Send(B)
            );
        }
        // A is gone for every later request.
        for _ in 0..20 {
            let picked = scheduler.pick(POOL, &Request::new(SendKind::ChannelPost), now, &mut rng);
            assert_ne!(picked, Decision::Send(A), "{label}");
        }
        assert_eq!(
            scheduler.pick(
                POOL,
                &Request::in_conversation(SendKind::Reply, A),
                now,
                &mut rng
            ),
            Decision::NoAgent(NoAgentReason::UnknownAgent { agent: A })
        );
        assert_indexes_consistent(&scheduler);
    };
    let removed = OutcomeAction::FailPermanently {
        reason: FailureReason::StickyAgentRemoved,
    };
    let flood = || SendOutcome::Failed(TelegramError::FloodWait { seconds: 30 });
    let network = || {
        SendOutcome::Failed(TelegramError::Network {
            message: "reset".into(),
        })
    };
    check(SendOutcome::Sent, false, OutcomeAction::Done);
    check(SendOutcome::NotAttempted, true, OutcomeAction::Done);
    check(flood(), false, OutcomeAction::RetryOtherAgent);
    check(flood(), true, removed.clone());
    check(network(), false, OutcomeAction::RetryOtherAgent);
    check(network(), true, removed.clone());
    check(
        SendOutcome::Failed(TelegramError::PeerFlood),
        false,
        OutcomeAction::RetryOtherAgent,
    );
    check(SendOutcome::Failed(TelegramError::PeerFlood), true, removed);
    check(
        SendOutcome::Failed(TelegramError::PrivacyRestricted),
        false,
        OutcomeAction::FailRecipient {
            error: TelegramError::PrivacyRestricted,
        },
    );
    check(
        SendOutcome::Failed(TelegramError::AccountDead {
            reason: DeadReason::Banned,
        }),
        true,
        OutcomeAction::FailPermanently {
            reason: FailureReason::StickyAgentDead {
                dead_reason: DeadReason::Banned,
            },
        },
    );
}

#[test]
fn lookups_and_status_forget_a_removed_agent_and_a_re_added_session_gets_its_key_and_cooldowns_back()
 {
    let mut rng = rng(33);
    let mut scheduler = ready_pool(2, Pacing::default());
    let now = Millis(HOUR);
    assert_eq!(scheduler.agent_key(&session(0)), Some(A));
    assert_eq!(scheduler.agent_key(&session(5)), None);

    let request = Request::in_conversation(SendKind::Reply, A);
    expect_send(scheduler.pick(POOL, &request, now, &mut rng));
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::FloodWait { seconds: 100 }),
        now,
    );
    let flood_end = Millis(now.0 + 111 * SECOND);

    assert!(scheduler.remove_agent(A));
    assert!(!scheduler.remove_agent(A));
    assert_eq!(scheduler.agent_key(&session(0)), None);
    assert!(scheduler.agent(A).is_none());
    assert_eq!(scheduler.len(), 1);
    assert_eq!(
        scheduler
            .status(now)
            .iter()
            .map(|s| s.agent)
            .collect::<Vec<_>>(),
        [B]
    );
    assert_eq!(scheduler.pool_members(POOL), Some(&[B][..]));
    assert_eq!(
        scheduler.set_pool(PoolId(3), &[A]),
        Err(PoolError::UnknownAgent { agent: A })
    );
    // A late connection report for the removed agent must not put it back in a pool.
    scheduler.set_connection_state(A, ConnectionState::Ready);
    assert_indexes_consistent(&scheduler);

    // The session comes back: same key, same FloodWait (Telegram remembers it), not connected,
    // in no pool until the caller says so, with the new pacing.
    let faster = pacing(30, 2, 10);
    assert_eq!(scheduler.add_agent(session(0), faster, now), A);
    let revived = scheduler.agent(A).unwrap();
    assert_eq!(revived.flood_wait_until(), flood_end);
    assert_eq!(revived.connection(), ConnectionState::Connecting);
    assert_eq!(revived.pacing(), faster);
    assert_eq!(scheduler.pool_members(POOL), Some(&[B][..]));
    assert_eq!(scheduler.len(), 2);

    // Adding a present session again only updates its pacing.
    assert_eq!(scheduler.add_agent(session(1), faster, now), B);
    assert_eq!(scheduler.agent(B).unwrap().pacing(), faster);
    assert_eq!(
        scheduler.agent(B).unwrap().connection(),
        ConnectionState::Ready
    );
    assert_eq!(scheduler.add_agent(session(2), faster, now), C);

    scheduler.set_connection_state(A, ConnectionState::Ready);
    scheduler.set_pool(POOL, &[A, B, C]).unwrap();
    let status = scheduler.pool_status(POOL, now).unwrap();
    // B is ready and idle; A is flooded; C is still connecting.
    assert_eq!((status.total, status.available_now), (3, 1));
    assert_eq!(
        status.agents.iter().map(|s| s.agent).collect::<Vec<_>>(),
        [A, B, C]
    );
    assert_eq!(status.agents[0].flood_wait_until, Some(flood_end));
    assert!(scheduler.pool_status(PoolId(99), now).is_none());
    assert_indexes_consistent(&scheduler);
}

#[test]
fn pool_indexes_match_a_brute_force_model_under_random_churn() {
    // The model: pool member lists, connection states and the configured sessions, kept the
    // obvious way. Every operation is applied to both; after each, the scheduler's indexes must
    // agree with the model, and a pick from any pool must return a ready member.
    let mut rng = rng(34);
    let mut scheduler = AgentScheduler::new(SchedulerSettings::default());
    let mut model_pools: HashMap<PoolId, Vec<AgentKey>> = HashMap::new();
    let mut model_state: Vec<ConnectionState> = Vec::new();
    let mut model_active: Vec<bool> = Vec::new();
    let mut model_keys: HashMap<usize, AgentKey> = HashMap::new();
    let states = [
        ConnectionState::Ready,
        ConnectionState::Ready,
        ConnectionState::Connecting,
        ConnectionState::Disconnected,
        ConnectionState::Paused,
        ConnectionState::Dead {
            reason: DeadReason::Frozen,
        },
    ];
    let fast = pacing(60_000, 1_000, 1_000_000);
    let (mut sends, mut removals, mut revivals) = (0u32, 0u32, 0u32);
    for step in 0..4_000u64 {
        let now = Millis(step * 10);
        let issued = model_state.len() as u32;
        match rng.random_range(0..100) {
            0..10 => {
                let index = rng.random_range(0..12);
                let key = scheduler.add_agent(session(index), fast, now);
                match model_keys.get(&index) {
                    Some(&known) => {
                        assert_eq!(key, known, "step {step}: a session changed key");
                        if !model_active[key.0 as usize] {
                            model_active[key.0 as usize] = true;
                            model_state[key.0 as usize] = ConnectionState::Connecting;
                            revivals += 1;
                        }
                    }
                    None => {
                        assert_eq!(key, AgentKey(issued), "step {step}: keys are never reused");
                        model_keys.insert(index, key);
                        model_state.push(ConnectionState::Connecting);
                        model_active.push(true);
                    }
                }
            }
            10..55 if issued > 0 => {
                let agent = AgentKey(rng.random_range(0..issued));
                let state = states[rng.random_range(0..states.len())];
                scheduler.set_connection_state(agent, state);
                model_state[agent.0 as usize] = state;
            }
            55..70 => {
                let pool = PoolId(rng.random_range(0..4));
                let count = rng.random_range(0..6);
                let count = if issued == 0 { 0 } else { count };
                let members: Vec<AgentKey> = (0..count)
                    .map(|_| AgentKey(rng.random_range(0..issued)))
                    .collect();
                let result = scheduler.set_pool(pool, &members);
                match members.iter().find(|a| !model_active[a.0 as usize]) {
                    Some(&agent) => assert_eq!(result, Err(PoolError::UnknownAgent { agent })),
                    None => {
                        result.unwrap();
                        let mut unique = Vec::new();
                        for agent in members {
                            if !unique.contains(&agent) {
                                unique.push(agent);
                            }
                        }
                        model_pools.insert(pool, unique);
                    }
                }
            }
            70..74 => {
                let pool = PoolId(rng.random_range(0..4));
                assert_eq!(
                    scheduler.remove_pool(pool),
                    model_pools.remove(&pool).is_some()
                );
            }
            74..80 if issued > 0 => {
                let agent = AgentKey(rng.random_range(0..issued));
                let was_active = model_active[agent.0 as usize];
                assert_eq!(scheduler.remove_agent(agent), was_active);
                model_active[agent.0 as usize] = false;
                for members in model_pools.values_mut() {
                    members.retain(|&member| member != agent);
                }
                removals += u32::from(was_active);
            }
            _ => {
                let pool = PoolId(rng.random_range(0..4));
                let request = Request::new(SendKind::Reply);
                let decision = scheduler.pick(pool, &request, now, &mut rng);
                if let Decision::Send(agent) = decision {
                    let members = &model_pools[&pool];
                    assert!(
                        members.contains(&agent),
                        "step {step}: {agent} not in {pool}"
                    );
                    assert_eq!(model_state[agent.0 as usize], ConnectionState::Ready);
                    scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
                    sends += 1;
                } else if let Some(members) = model_pools.get(&pool) {
                    // Pacing is far above this traffic: a ready member would have been chosen.
                    assert!(
                        members
                            .iter()
                            .all(|a| model_state[a.0 as usize] != ConnectionState::Ready),
                        "step {step}: {decision:?} with a ready member in {pool}"
                    );
                } else {
                    assert_eq!(
                        decision,
                        Decision::NoAgent(NoAgentReason::UnknownPool { pool })
                    );
                }
            }
        }

        assert_indexes_consistent(&scheduler);
        let mut pools: Vec<PoolId> = scheduler.pools().collect();
        pools.sort();
        let mut expected_pools: Vec<PoolId> = model_pools.keys().copied().collect();
        expected_pools.sort();
        assert_eq!(pools, expected_pools, "step {step}");
        for (&pool, members) in &model_pools {
            assert_eq!(
                scheduler.pool_members(pool),
                Some(&members[..]),
                "step {step}"
            );
            let ready: HashSet<AgentKey> = scheduler.pools[&pool].ready.iter().copied().collect();
            let expected: HashSet<AgentKey> = members
                .iter()
                .copied()
                .filter(|a| model_state[a.0 as usize] == ConnectionState::Ready)
                .collect();
            assert_eq!(ready, expected, "step {step}: ready index of {pool}");
        }
        for (&index, &key) in &model_keys {
            let expected = model_active[key.0 as usize].then_some(key);
            assert_eq!(
                scheduler.agent_key(&session(index)),
                expected,
                "step {step}"
            );
        }
        assert_eq!(
            scheduler.len(),
            model_active.iter().filter(|&&active| active).count()
        );
    }
    assert!(
        sends > 100 && removals > 20 && revivals > 10,
        "sends {sends}, removals {removals}, revivals {revivals}"
    );
}

#[test]
fn a_flood_wait_lowers_the_agents_pacing_and_it_gets_no_full_burst_after_the_wait() {
    let mut rng = rng(31);
    let mut scheduler = ready_pool(1, pacing(20, 3, 1_000));
    let request = Request::new(SendKind::Reply);
    expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::FloodWait { seconds: 30 }),
        Millis(0),
    );
    let state = scheduler.agent(A).unwrap();
    assert_eq!(state.learned().send_message.milli_per_minute(), 10_000);
    assert_eq!(state.gcra().emission_interval_ms(), 6_000);
    let after_wait = state.flood_wait_until();
    assert_eq!(
        state.gcra().headroom(after_wait),
        1,
        "no full burst after the wait"
    );
    // A FloodWait answering a call picked before the first was known is no new violation.
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::FloodWait { seconds: 30 }),
        Millis(10),
    );
    assert_eq!(send_rate(&scheduler, A), 10_000);
    let changes = scheduler.take_learning_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, session(0));
    assert!(scheduler.take_learning_changes().is_empty());
}

#[test]
fn peer_flood_lowers_the_daily_first_message_cap_to_what_the_account_managed() {
    let mut rng = rng(32);
    let mut scheduler = ready_pool(1, pacing(6_000, 100, 40));
    let request = Request::first_contact();
    for _ in 0..10 {
        let agent = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
        scheduler.on_outcome(agent, &request, SendOutcome::Sent, Millis(0));
    }
    expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    scheduler.on_outcome(
        A,
        &request,
        SendOutcome::Failed(TelegramError::PeerFlood),
        Millis(0),
    );
    let state = scheduler.agent(A).unwrap();
    assert_eq!(state.learned().first_messages.per_day(), 10);
    assert_eq!(scheduler.status(Millis(0))[0].cold_dms_per_day, 10);
}

#[test]
fn peer_flood_answers_from_before_the_pause_change_nothing_and_a_refusal_after_it_doubles_it() {
    let mut rng = rng(33);
    let mut scheduler = ready_pool(1, pacing(6_000, 100, 40));
    let request = Request::first_contact();
    for _ in 0..10 {
        let agent = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
        scheduler.on_outcome(agent, &request, SendOutcome::Sent, Millis(0));
    }
    // Two first messages in flight when the refusal comes: one refusal, one reduction.
    let first = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    let second = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    for agent in [first, second] {
        scheduler.on_outcome(
            agent,
            &request,
            SendOutcome::Failed(TelegramError::PeerFlood),
            Millis(0),
        );
    }
    let day = Millis(24 * 3_600_000);
    let state = scheduler.agent(A).unwrap();
    assert_eq!(state.learned().first_messages.per_day(), 10);
    assert_eq!(state.peer_flood_until(), day);
    // Refused again before anything went through: Telegram's restriction outlasted the pause.
    let agent = expect_send(scheduler.pick(POOL, &request, day, &mut rng));
    scheduler.on_outcome(
        agent,
        &request,
        SendOutcome::Failed(TelegramError::PeerFlood),
        day,
    );
    let state = scheduler.agent(A).unwrap();
    assert_eq!(state.learned().first_messages.per_day(), 10, "not zero");
    assert_eq!(state.peer_flood_until(), Millis(day.0 + 48 * 3_600_000));
}

#[test]
fn a_first_message_slot_frees_a_day_after_the_answer_not_the_pick() {
    let mut rng = rng(34);
    let mut scheduler = ready_pool(1, pacing(6_000, 100, 1));
    let request = Request::first_contact();
    let agent = expect_send(scheduler.pick(POOL, &request, Millis(0), &mut rng));
    // Telegram counted it somewhere between the pick and the answer.
    scheduler.on_outcome(agent, &request, SendOutcome::Sent, Millis(2_000));
    let day = 24 * 3_600_000;
    assert_eq!(
        scheduler.pick(POOL, &request, Millis(day), &mut rng),
        Decision::WaitUntil {
            at: Millis(day + 2_000),
            reason: WaitReason::ColdDmDailyCap
        }
    );
    expect_send(scheduler.pick(POOL, &request, Millis(day + 2_000), &mut rng));
}

#[test]
fn learned_limits_are_restored_within_the_configured_ceiling() {
    let mut scheduler = ready_pool(1, pacing(20, 3, 40));
    let mut learned = *scheduler.agent(A).unwrap().learned();
    learned
        .send_message
        .on_flood_wait(RateCeiling::per_minute(20, 3), 30, true, Millis(0));
    learned.first_messages.on_peer_flood(12, true, Millis(0));
    scheduler.restore_learned(A, learned, Millis(0), 0);
    let state = scheduler.agent(A).unwrap();
    assert_eq!(state.gcra().emission_interval_ms(), 6_000);
    assert_eq!(state.learned().first_messages.per_day(), 12);
    // A lower ceiling set later still bounds the learned rate.
    scheduler.set_pacing(A, pacing(4, 3, 5), Millis(0));
    let state = scheduler.agent(A).unwrap();
    assert_eq!(state.gcra().emission_interval_ms(), 15_000);
    assert_eq!(state.learned().first_messages.per_day(), 5);
}

// ----- Every class of call through the account's table (issue #12 item 2) -----

fn send_rate(scheduler: &AgentScheduler, agent: AgentKey) -> u32 {
    scheduler
        .agent(agent)
        .unwrap()
        .learned()
        .send_message
        .milli_per_minute()
}

fn resolve_rate(scheduler: &AgentScheduler, agent: AgentKey) -> u32 {
    scheduler
        .agent(agent)
        .unwrap()
        .learned()
        .calls
        .get(CallClass::ResolveUsername)
        .unwrap()
        .milli_per_minute()
}

#[test]
fn a_resolve_flood_wait_lowers_the_resolve_rate_and_not_the_send_rate() {
    let mut rng = rng(41);
    let mut scheduler = ready_pool(1, pacing(20, 3, 40));
    let ceiling = default_call_ceiling(CallClass::ResolveUsername).unwrap();
    assert_eq!(resolve_rate(&scheduler, A), ceiling.milli_per_minute);
    assert_eq!(
        scheduler.reserve_call(A, CallClass::ResolveUsername, Millis(0)),
        CallDecision::Go
    );
    scheduler.on_call_outcome(
        A,
        CallClass::ResolveUsername,
        &SendOutcome::Failed(TelegramError::FloodWait { seconds: 600 }),
        Millis(0),
    );
    assert!(resolve_rate(&scheduler, A) < ceiling.milli_per_minute);
    let state = scheduler.agent(A).unwrap();
    assert_eq!(
        state.learned().send_message.milli_per_minute(),
        20_000,
        "the send rate is another method's"
    );
    assert_eq!(state.flood_wait_until(), Millis::ZERO, "sends do not wait");
    // The account still sends at once; its resolves wait out the flood.
    send_now(
        &mut scheduler,
        &Request::first_contact(),
        Millis(1),
        &mut rng,
    );
    match scheduler.reserve_call(A, CallClass::ResolveUsername, Millis(1)) {
        CallDecision::WaitUntil { at, reason } => {
            assert_eq!(reason, WaitReason::FloodWait);
            assert!(at >= Millis(600 * SECOND));
        }
        other => panic!("expected a wait, got {other:?}"),
    }
    // Joins and topics are other methods again.
    assert_eq!(
        scheduler.reserve_call(A, CallClass::CreateForumTopic, Millis(1)),
        CallDecision::Go
    );
    let changes = scheduler.take_learning_changes();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].1.calls.get(CallClass::ResolveUsername),
        scheduler
            .agent(A)
            .unwrap()
            .learned()
            .calls
            .get(CallClass::ResolveUsername)
    );
    let status = &scheduler.status(Millis(1))[0];
    let resolve = status
        .calls
        .iter()
        .find(|call| call.class == CallClass::ResolveUsername)
        .unwrap();
    assert_eq!(resolve.ceiling_milli_per_minute, ceiling.milli_per_minute);
    assert!(resolve.flood_wait_until.is_some());
    assert_eq!(status.calls[0].class, CallClass::SendMessage);
    assert_eq!(status.ceiling_milli_per_minute, 20_000);
}

#[test]
fn calls_of_a_class_are_paced_at_its_ceiling_and_an_unready_account_makes_none() {
    let mut scheduler = ready_pool(1, pacing(20, 3, 40));
    let ceiling = default_call_ceiling(CallClass::JoinChannel).unwrap();
    for _ in 0..ceiling.burst {
        assert_eq!(
            scheduler.reserve_call(A, CallClass::JoinChannel, Millis(0)),
            CallDecision::Go
        );
        scheduler.on_call_outcome(A, CallClass::JoinChannel, &SendOutcome::Sent, Millis(0));
    }
    let interval = AdaptiveRate::new(ceiling, Millis(0)).emission_interval_ms();
    assert_eq!(
        scheduler.reserve_call(A, CallClass::JoinChannel, Millis(0)),
        CallDecision::WaitUntil {
            at: Millis(interval),
            reason: WaitReason::Pacing
        }
    );
    assert_eq!(
        scheduler.reserve_call(A, CallClass::JoinChannel, Millis(interval)),
        CallDecision::Go
    );
    scheduler.set_connection_state(A, ConnectionState::Disconnected);
    assert_eq!(
        scheduler.reserve_call(A, CallClass::ResolveUsername, Millis(interval)),
        CallDecision::NotReady
    );
}

#[test]
fn a_send_to_a_username_takes_a_resolve_permit_and_a_flood_on_its_resolve_is_the_resolves() {
    let mut rng = rng(42);
    let mut scheduler = ready_pool(2, pacing(600, 100, 1_000));
    let by_username = Request::first_contact().resolving(true);
    let burst = default_call_ceiling(CallClass::ResolveUsername)
        .unwrap()
        .burst;
    // Two agents, each with a burst of resolves: then sends to usernames wait for a resolve
    // permit, while sends to known peers go on.
    for _ in 0..2 * burst {
        send_now(&mut scheduler, &by_username, Millis(0), &mut rng);
    }
    match scheduler.pick(POOL, &by_username, Millis(0), &mut rng) {
        Decision::WaitUntil { reason, .. } => assert_eq!(reason, WaitReason::Pacing),
        other => panic!("expected a wait for a resolve permit, got {other:?}"),
    }
    send_now(
        &mut scheduler,
        &Request::first_contact(),
        Millis(0),
        &mut rng,
    );
    // A flood wait on the resolve step lowers the resolve rate, not the send rate, and the
    // message goes to another agent.
    let later = Millis(MINUTE);
    let agent = expect_send(scheduler.pick(POOL, &by_username, later, &mut rng));
    let before = resolve_rate(&scheduler, agent);
    let action = scheduler.on_outcome(
        agent,
        &by_username,
        SendOutcome::ResolveFailed(TelegramError::FloodWait { seconds: 60 }),
        later,
    );
    assert_eq!(action, OutcomeAction::RetryOtherAgent);
    assert!(resolve_rate(&scheduler, agent) < before);
    let state = scheduler.agent(agent).unwrap();
    assert_eq!(state.learned().send_message.milli_per_minute(), 600_000);
    assert_eq!(state.flood_wait_until(), Millis::ZERO);
    // That agent can still send to a known peer, but not to a username, until the wait ends.
    let other = if agent == A { AgentKey(1) } else { A };
    scheduler.set_connection_state(other, ConnectionState::Paused);
    send_now(&mut scheduler, &Request::first_contact(), later, &mut rng);
    match scheduler.pick(POOL, &by_username, later, &mut rng) {
        Decision::WaitUntil { reason, at } => {
            assert_eq!(reason, WaitReason::FloodWait);
            assert!(at >= Millis(later.0 + 60 * SECOND));
        }
        other => panic!("expected the resolve's flood wait, got {other:?}"),
    }
    // A recipient-level answer of the resolve step ends the message as before.
    let sticky = Request::in_conversation(SendKind::Reply, agent).resolving(true);
    let much_later = Millis(later.0 + 10 * MINUTE);
    expect_send(scheduler.pick(POOL, &sticky, much_later, &mut rng));
    assert_eq!(
        scheduler.on_outcome(
            agent,
            &sticky,
            SendOutcome::ResolveFailed(TelegramError::UsernameNotFound),
            much_later,
        ),
        OutcomeAction::FailRecipient {
            error: TelegramError::UsernameNotFound
        }
    );
}

#[test]
fn learned_call_rates_are_restored_and_rows_without_them_start_at_the_ceiling() {
    let mut scheduler = ready_pool(1, pacing(20, 3, 40));
    scheduler.reserve_call(A, CallClass::CreateForumTopic, Millis(0));
    scheduler.on_call_outcome(
        A,
        CallClass::CreateForumTopic,
        &SendOutcome::Failed(TelegramError::FloodWait { seconds: 30 }),
        Millis(0),
    );
    let (_, learned) = scheduler.take_learning_changes().remove(0);
    let stored = serde_json::to_string(&learned).unwrap();
    let topic_rate = learned
        .calls
        .get(CallClass::CreateForumTopic)
        .unwrap()
        .milli_per_minute();
    let ceiling = default_call_ceiling(CallClass::CreateForumTopic).unwrap();
    assert!(topic_rate < ceiling.milli_per_minute);

    // A restart: a new table, the stored row restored.
    let mut restarted = ready_pool(1, pacing(20, 3, 40));
    restarted.restore_learned(A, serde_json::from_str(&stored).unwrap(), Millis(0), 0);
    let calls = restarted.agent(A).unwrap().learned().calls;
    assert_eq!(
        calls
            .get(CallClass::CreateForumTopic)
            .unwrap()
            .milli_per_minute(),
        topic_rate
    );
    assert_eq!(
        calls
            .get(CallClass::ResolveUsername)
            .unwrap()
            .milli_per_minute(),
        default_call_ceiling(CallClass::ResolveUsername)
            .unwrap()
            .milli_per_minute
    );
    // The restored rate paces: a burst of 1 after the flood, then the learned interval.
    assert_eq!(
        restarted.reserve_call(A, CallClass::CreateForumTopic, Millis(0)),
        CallDecision::Go
    );
    assert!(matches!(
        restarted.reserve_call(A, CallClass::CreateForumTopic, Millis(0)),
        CallDecision::WaitUntil {
            reason: WaitReason::Pacing,
            ..
        }
    ));

    // A row stored before the classes were learned (only sends and first messages).
    let mut old: serde_json::Value = serde_json::from_str(&stored).unwrap();
    old.as_object_mut().unwrap().remove("calls");
    let old: LearnedLimits = serde_json::from_value(old).unwrap();
    let mut restarted = ready_pool(1, pacing(20, 3, 40));
    restarted.restore_learned(A, old, Millis(0), 0);
    assert_eq!(
        restarted
            .agent(A)
            .unwrap()
            .learned()
            .calls
            .get(CallClass::CreateForumTopic)
            .unwrap()
            .milli_per_minute(),
        ceiling.milli_per_minute
    );
}

#[test]
fn a_known_contacts_username_takes_no_resolve_permit_but_waits_out_a_resolve_flood() {
    let mut rng = rng(43);
    let mut scheduler = ready_pool(1, pacing(600, 100, 1_000));
    let by_username = Request::new(SendKind::Reply).resolving(true);
    let burst = default_call_ceiling(CallClass::ResolveUsername)
        .unwrap()
        .burst;
    // Answered from the account's cache: more than a burst of resolves at once is fine.
    for _ in 0..burst + 5 {
        send_now(&mut scheduler, &by_username, Millis(0), &mut rng);
    }
    assert_eq!(
        scheduler.reserve_call(A, CallClass::ResolveUsername, Millis(0)),
        CallDecision::Go,
        "no resolve permit was spent"
    );
    scheduler.on_call_outcome(A, CallClass::ResolveUsername, &SendOutcome::Sent, Millis(0));
    // A cache miss that got a flood wait: the agent's username sends wait it out (another miss
    // would only repeat it), its other sends do not.
    expect_send(scheduler.pick(POOL, &by_username, Millis(0), &mut rng));
    scheduler.on_outcome(
        A,
        &by_username,
        SendOutcome::ResolveFailed(TelegramError::FloodWait { seconds: 60 }),
        Millis(0),
    );
    match scheduler.pick(POOL, &by_username, Millis(1), &mut rng) {
        Decision::WaitUntil { reason, .. } => assert_eq!(reason, WaitReason::FloodWait),
        other => panic!("expected the resolve's flood wait, got {other:?}"),
    }
    send_now(
        &mut scheduler,
        &Request::new(SendKind::Reply),
        Millis(1),
        &mut rng,
    );
    assert_eq!(send_rate(&scheduler, A), 600_000);
}

/// A reply to a person found through their message is a `users.getUsers` no cache answers: unlike
/// a known contact's username, each one spends a resolve permit, so a burst of them waits for the
/// resolve pace.
#[test]
fn a_reply_to_a_person_found_through_their_message_takes_a_resolve_permit() {
    let mut rng = rng(44);
    let mut scheduler = ready_pool(1, pacing(600, 100, 1_000));
    let by_message = Request::new(SendKind::Reply).looking_up(true);
    assert!(by_message.resolves && by_message.takes_resolve_permit());
    let burst = default_call_ceiling(CallClass::ResolveUsername)
        .unwrap()
        .burst;
    for _ in 0..burst {
        send_now(&mut scheduler, &by_message, Millis(0), &mut rng);
    }
    match scheduler.pick(POOL, &by_message, Millis(0), &mut rng) {
        Decision::WaitUntil { reason, .. } => assert_eq!(reason, WaitReason::Pacing),
        other => panic!("expected the resolve pace, got {other:?}"),
    }
    // Sends that need no lookup are not held by it.
    send_now(
        &mut scheduler,
        &Request::new(SendKind::Reply),
        Millis(0),
        &mut rng,
    );
}

/// A first message whose resolve failed never reached `messages.sendMessage`: its slot in the
/// daily window comes back, so a resolve flood wait does not cost a first message of the day;
/// one refused by `sendMessage` itself keeps its slot.
#[test]
fn a_first_message_that_never_reached_send_message_gives_its_cold_dm_slot_back() {
    let mut rng = rng(21);
    let mut scheduler = ready_pool(1, pacing(6_000, 10, 2));
    let first = Request::first_contact().resolving(true);
    let agent = expect_send(scheduler.pick(POOL, &first, Millis(0), &mut rng));
    assert_eq!(scheduler.status(Millis(0))[0].cold_dms_last_day, 1);
    scheduler.on_outcome(
        agent,
        &first,
        SendOutcome::ResolveFailed(TelegramError::UsernameNotFound),
        Millis(0),
    );
    assert_eq!(scheduler.status(Millis(0))[0].cold_dms_last_day, 0);
    let later = Millis(MINUTE);
    let agent = expect_send(scheduler.pick(POOL, &first, later, &mut rng));
    scheduler.on_outcome(agent, &first, SendOutcome::NotAttempted, later);
    assert_eq!(scheduler.status(later)[0].cold_dms_last_day, 0);
    let agent = expect_send(scheduler.pick(POOL, &first, later, &mut rng));
    scheduler.on_outcome(
        agent,
        &first,
        SendOutcome::Failed(TelegramError::PrivacyRestricted),
        later,
    );
    assert_eq!(
        scheduler.status(later)[0].cold_dms_last_day,
        1,
        "refused by sendMessage: the attempt counts"
    );
    send_now(&mut scheduler, &first, later, &mut rng);
    assert_eq!(
        scheduler.pick(POOL, &first, later, &mut rng),
        Decision::WaitUntil {
            at: Millis(MINUTE + COLD_DM_WINDOW_MS),
            reason: WaitReason::ColdDmDailyCap
        }
    );
    assert_indexes_consistent(&scheduler);
}

/// Telegram's side of one account's `sendMessage` limit as the simulator models it (a bucket of
/// `burst` tokens refilled continuously at `per_minute`, checked when a call arrives), in whole
/// milliseconds.
struct TelegramBucket {
    per_minute: u32,
    burst: u32,
    tokens: f64,
    last: Option<u64>,
}

impl TelegramBucket {
    fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute,
            burst,
            tokens: f64::from(burst),
            last: None,
        }
    }

    /// Whether a call arriving at `at` is let through (it takes a token) or flooded.
    fn arrive(&mut self, at: u64) -> bool {
        let burst = f64::from(self.burst);
        if let Some(last) = self.last {
            let refilled = (at - last) as f64 * f64::from(self.per_minute) / MINUTE as f64;
            self.tokens = (self.tokens + refilled).min(burst);
        }
        self.last = Some(at);
        // The simulator's comparison, less a rounding error's worth of the float sum.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Paces one agent configured at exactly Telegram's limit through calls whose delays vary
/// (the store's write and the trip before Telegram counts a call, the answer's trip after),
/// each returning before the next is picked; says how many calls Telegram flooded.
fn floods_at_the_true_limit(
    per_minute: u32,
    burst: u32,
    delays: &[(u64, u64, u64)],
    count_returns: bool,
) -> usize {
    let mut rng = rng(9);
    let mut scheduler = fixed_pool(1, pacing(per_minute, burst, 1_000));
    let mut telegram = TelegramBucket::new(per_minute, burst);
    let request = Request::new(SendKind::Reply);
    let mut now = 0;
    let mut floods = 0;
    for &(idle, before, after) in delays {
        now += idle;
        let agent = loop {
            match scheduler.pick(POOL, &request, Millis(now), &mut rng) {
                Decision::Send(agent) => break agent,
                Decision::WaitUntil { at, .. } => now = at.0,
                other => panic!("the one agent should be paced only, got {other:?}"),
            }
        };
        let taken = now;
        if !telegram.arrive(taken + before) {
            floods += 1;
        }
        now = taken + before + after;
        if count_returns {
            scheduler.call_returned(agent, CallClass::SendMessage, Millis(taken), Millis(now));
        }
        scheduler.on_outcome(agent, &request, SendOutcome::Sent, Millis(now));
    }
    floods
}

#[test]
fn a_permit_counted_at_the_take_floods_a_limiter_paced_at_the_limit_when_delays_vary() {
    // 2 a minute, burst 1 (the cluster benchmark's world): the first call waits 40 ms before
    // Telegram counts it, the second 5 ms, so Telegram sees them 29,965 ms apart.
    let delays = [(0, 40, 10), (0, 5, 10), (0, 40, 10), (0, 5, 10)];
    assert!(floods_at_the_true_limit(2, 1, &delays, false) > 0);
    assert_eq!(floods_at_the_true_limit(2, 1, &delays, true), 0);
}

proptest::proptest! {
    /// However a call's delays vary, as long as each call returns before the next is picked, a
    /// limiter configured at an account's true limit never draws a flood wait from it.
    #[test]
    fn a_permit_counted_when_its_call_returns_never_floods_an_account_paced_at_its_limit(
        per_minute in 1u32..=40,
        burst in 1u32..=4,
        delays in proptest::collection::vec(
            (proptest::prop_oneof![proptest::strategy::Just(0u64), 0u64..200_000], 0u64..1_500, 0u64..1_500),
            1..60,
        ),
    ) {
        proptest::prop_assert_eq!(floods_at_the_true_limit(per_minute, burst, &delays, true), 0);
    }
}

#[test]
fn a_send_that_never_reached_telegram_gives_its_permit_back() {
    let mut rng = rng(10);
    let mut scheduler = fixed_pool(1, pacing(2, 1, 1_000));
    let request = Request::first_contact().resolving(true);
    let now = Millis(MINUTE);
    // Another node claimed the message first: the pick's permits (send and resolve) go back,
    // so the agent sends the next message at once instead of an interval later.
    let agent = expect_send(scheduler.pick(POOL, &request, now, &mut rng));
    scheduler.on_outcome(agent, &request, SendOutcome::NotAttempted, now);
    assert_eq!(scheduler.agent(agent).unwrap().gcra().headroom(now), 1);
    let again = expect_send(scheduler.pick(POOL, &request, now, &mut rng));
    assert_eq!(again, agent);
    // A send that was made keeps its permit.
    scheduler.on_outcome(agent, &request, SendOutcome::Sent, now);
    assert!(matches!(
        scheduler.pick(POOL, &request, now, &mut rng),
        Decision::WaitUntil { .. }
    ));
}

/// An account another process used until now (a lease taken over, a restart): its sends,
/// resolves and topic creations wait one interval, as if Telegram's bucket were empty; joins
/// keep their burst, since the agent joins its chats when it connects.
#[test]
fn an_account_used_elsewhere_starts_empty_but_its_joins_keep_their_burst() {
    let mut rng = rng(5);
    let mut scheduler = ready_pool(1, pacing(20, 3, 40));
    let now = Millis(SECOND);
    scheduler.used_elsewhere_until(A, now);
    assert_eq!(
        scheduler.pick(POOL, &Request::new(SendKind::Reply), now, &mut rng),
        Decision::WaitUntil {
            at: Millis(now.0 + 3 * SECOND),
            reason: WaitReason::Pacing
        }
    );
    for class in [CallClass::ResolveUsername, CallClass::CreateForumTopic] {
        assert!(
            matches!(
                scheduler.reserve_call(A, class, now),
                CallDecision::WaitUntil {
                    reason: WaitReason::Pacing,
                    ..
                }
            ),
            "{class:?}"
        );
    }
    assert_eq!(
        scheduler.reserve_call(A, CallClass::JoinChannel, now),
        CallDecision::Go
    );
}
