//! The simulator's integration tests: the port contract suite on paused tokio time, then rules
//! the contract cannot state for every back-end (exact budgets, counters, determinism).

use jobbot_sim::SimParams;
use jobbot_sim::contract::{self, CheckOutcome};
use jobbot_sim::fixture::SimFixture;

/// One test per contract check, each on a fresh world and paused time.
macro_rules! contract_checks {
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

contract_checks!(
    flood_wait_is_a_typed_value_with_seconds,
    resolving_many_usernames_quickly_gets_a_flood_wait,
    resending_a_random_id_creates_no_second_message,
    a_second_owner_of_a_session_is_refused_before_connecting,
    check_authorization_tells_logged_in_from_not,
    a_duplicated_connection_burns_the_session,
    a_banned_account_is_dead_on_every_call,
    peer_flood_after_the_cold_dm_budget_but_replies_still_work,
    a_private_user_refuses_a_cold_dm,
    an_unknown_username_is_not_found,
    a_direct_message_to_a_bot_or_channel_is_not_a_user,
    an_access_hash_from_another_account_is_refused,
    a_plain_member_may_not_post_in_a_channel,
    joining_is_idempotent,
    a_forum_topic_can_be_created_and_posted_to,
    a_deleted_topic_is_refused,
    a_channel_post_reaches_a_member_accounts_stream,
    a_direct_message_arrives_as_a_private_message,
    a_topic_message_carries_its_topic_id,
    a_dropped_connection_is_lost_then_restored,
    login_with_a_wrong_code_then_the_right_one,
    login_with_an_expired_code,
    login_with_two_step_verification,
    login_with_a_banned_or_unregistered_phone,
    login_guessing_codes_gets_a_flood_wait,
);
