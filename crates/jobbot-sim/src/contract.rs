//! A conformance suite for the Telegram port, written only against
//! [`jobbot_core::telegram`]'s traits so the same checks can run against the simulator (from
//! `tests/sim.rs`) and, from another crate, against real Telegram with test accounts.
//!
//! Each check is a `pub async fn` over a [`ContractFixture`]. Checks that need to make the world
//! do something (a stranger writes, an admin deletes a topic, an account is banned) use
//! [`ContractFixture::controls`]; against real Telegram that is `None` and the check reports
//! [`CheckOutcome::Skipped`] rather than passing. Every check wants a fresh fixture: several of
//! them spend an account's limits on purpose.
//!
//! The checks pace themselves as a careful client would (a resolve every 15 s, a send every 4 s,
//! and they wait out any flood wait they are given), except where provoking the limit is the
//! point. On paused tokio time the waits cost nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::login::{LoginFlow, LoginState, LoginStepError};
use jobbot_core::telegram::{
    AccountConnector, AccountEvent, AuthorizationStatus, Checkpoint, ConnectError, ConnectOptions,
    DeadReason, IncomingMessage, JoinTarget, LoginError, MessageAuthor, MessageContent,
    NewChatKind, Peer, PeerKind, PeerRef, RandomId, SentMessage, TelegramAccount, TelegramError,
    TopicId,
};
use tokio::sync::mpsc;
use tokio::time::{Duration, sleep, timeout};

/// What a check concluded when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    /// The fixture cannot do what the check needs (usually: no world controls against real
    /// Telegram). Not a pass.
    Skipped(&'static str),
}

/// `Err` holds a message saying what Telegram (or the simulator) did instead.
pub type CheckResult = Result<CheckOutcome, String>;

/// Phone numbers for the login checks. Not `Debug`: it holds a 2FA password.
pub struct LoginPhones {
    /// A registered account without two-step verification.
    pub plain: PhoneNumber,
    /// A registered account with two-step verification.
    pub two_factor: PhoneNumber,
    pub password: String,
    pub hint: Option<String>,
    /// A number Telegram refuses (`PHONE_NUMBER_BANNED`).
    pub banned: PhoneNumber,
    /// A valid number with no account.
    pub unregistered: PhoneNumber,
}

/// What the suite needs to know about the world it runs against.
pub trait ContractFixture: Send + Sync {
    fn connector(&self) -> Arc<dyn AccountConnector>;
    /// A logged-in account: admin of [`Self::postable_channel`] and [`Self::forum_group`].
    fn first_account(&self) -> SessionName;
    /// Another logged-in account: a plain member of [`Self::postable_channel`].
    fn second_account(&self) -> SessionName;
    /// A session that was never logged in, for the login checks.
    fn spare_session(&self) -> SessionName;
    /// A person who accepts messages from strangers.
    fn regular_user(&self) -> Username;
    /// A person who accepts messages only from contacts.
    fn private_user(&self) -> Username;
    fn bot(&self) -> Username;
    /// A public broadcast channel neither account is in.
    fn public_channel(&self) -> Username;
    /// A well-formed username nobody has.
    fn missing_username(&self) -> Username;
    fn postable_channel(&self) -> ChatId;
    /// A private forum supergroup the second account is not in.
    fn forum_group(&self) -> ChatId;
    /// An invite link hash to a chat the second account is not in.
    fn invite_hash(&self) -> String;
    /// Where random ids start; real-Telegram fixtures must not reuse ids across runs.
    fn random_id_base(&self) -> i64;
    fn login_phones(&self) -> Option<LoginPhones>;
    fn controls(&self) -> Option<&dyn WorldControls>;
    /// How the checks space their calls: a careful client's spacing by default. A fixture whose
    /// world has faster limits (the simulator in its own process, on real time) may space them
    /// closer, as long as the spacing stays within its limits.
    fn pacing(&self) -> Pacing {
        Pacing::CAREFUL
    }
}

/// The spacing of the checks' calls (see [`ContractFixture::pacing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Before each `resolveUsername`.
    pub resolve: Duration,
    /// Before each send.
    pub send: Duration,
}

impl Pacing {
    /// A careful client against real Telegram: [`RESOLVE_SPACING`] and [`SEND_SPACING`].
    pub const CAREFUL: Pacing = Pacing {
        resolve: RESOLVE_SPACING,
        send: SEND_SPACING,
    };
}

/// Things only a simulated world can be made to do.
pub trait WorldControls: Send + Sync {
    fn cold_dm_budget(&self) -> u32;
    /// New people who accept messages and have never talked to anyone.
    fn fresh_strangers(&self, count: usize) -> Vec<Username>;
    /// `writer` sends `account` a private message.
    fn user_writes_to(
        &self,
        writer: &Username,
        account: &SessionName,
        text: &str,
    ) -> Result<(), String>;
    /// `writer` sends `account` a file with `caption`.
    fn user_sends_file_to(
        &self,
        writer: &Username,
        account: &SessionName,
        media: crate::SimMedia,
        caption: &str,
    ) -> Result<(), String>;
    /// The channel publishes a post.
    fn channel_posts(&self, channel: ChatId, text: &str) -> Result<(), String>;
    /// A member (not one of the accounts) writes in the group, in `topic` when given.
    fn member_posts(&self, group: ChatId, topic: Option<TopicId>, text: &str)
    -> Result<(), String>;
    /// An admin deletes the topic and its history.
    fn delete_topic(&self, group: ChatId, topic: TopicId) -> Result<(), String>;
    /// Texts of the private messages `recipient` got from `from`.
    fn messages_received(&self, recipient: &Username, from: &SessionName) -> Vec<String>;
    fn ban(&self, account: &SessionName);
    fn drop_connection(&self, account: &SessionName);
    /// A second connection with the same session key, as from a copied session file.
    fn duplicate_connection(&self, account: &SessionName) -> Arc<dyn TelegramAccount>;
    fn last_login_code(&self, phone: &PhoneNumber) -> Option<String>;
    fn login_code_lifetime(&self) -> Duration;
    /// The account of `phone` scans a login's QR code (`tg://login?token=…`) with its phone and
    /// accepts the login.
    fn scan_login_qr(&self, phone: &PhoneNumber, url: &str) -> Result<(), String>;
    /// The account's next `updates.getChannelDifference` of `channel` answers a flood wait of
    /// `seconds`. Only a simulated world in this process can; others say so.
    fn flood_channel_catch_up(
        &self,
        _account: &SessionName,
        _channel: ChatId,
        _seconds: u32,
    ) -> Result<(), String> {
        Err("this world cannot impose a catch-up flood wait".into())
    }
}

/// Calls `$callback!` with the name of every check, so each back-end's test file runs them all
/// (one test per check) and a new check runs everywhere: `contract_checks!(my_macro);`.
#[macro_export]
macro_rules! contract_checks {
    ($callback:ident) => {
        $callback!(
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
            chat_access_tells_admins_from_members_and_forums,
            message_length_is_counted_in_utf16_units,
            joining_is_idempotent,
            created_chats_take_members_and_are_gone_once_deleted,
            a_forum_topic_can_be_created_and_posted_to,
            a_deleted_topic_is_refused,
            a_channel_post_reaches_a_member_accounts_stream,
            a_direct_message_arrives_as_a_private_message,
            a_topic_message_carries_its_topic_id,
            a_dropped_connection_is_lost_then_restored,
            a_quiet_connection_is_restored_without_any_update,
            the_next_connection_catches_up_from_the_committed_checkpoint,
            a_gap_longer_than_one_channel_difference_is_filled_from_history,
            a_flood_wait_in_one_channels_catch_up_holds_only_that_channel,
            a_private_message_carries_the_senders_own_reference,
            a_group_messages_author_is_found_through_the_message,
            a_received_file_is_resent_only_by_the_account_that_received_it,
            a_send_already_on_its_way_is_a_duplicate_not_a_second_message,
            login_with_a_wrong_code_then_the_right_one,
            a_login_code_is_resent_the_way_telegram_offered,
            login_with_an_expired_code,
            login_with_two_step_verification,
            login_with_a_banned_or_unregistered_phone,
            login_guessing_codes_gets_a_flood_wait,
            qr_login_rotates_an_expired_token_and_signs_in_after_a_scan,
            qr_login_of_a_two_step_account_asks_for_the_password,
        );
    };
}

/// A careful client's spacing of `resolveUsername` calls.
pub const RESOLVE_SPACING: Duration = Duration::from_secs(15);
/// A careful client's spacing of sends.
pub const SEND_SPACING: Duration = Duration::from_secs(4);
/// How long a check waits for an event that should arrive.
const EVENT_DEADLINE: Duration = Duration::from_secs(60);

macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

// ----- Pacing and flood waits -----

/// Sending too fast gives `FloodWait` as a typed value with seconds; while it lasts, the call
/// gets the remaining wait; after it, sending works again; refused sends deliver nothing.
pub async fn flood_wait_is_a_typed_value_with_seconds(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let account = connect(fixture, &fixture.first_account()).await?;
    let peer = resolve_paced(fixture, &*account, &fixture.regular_user())
        .await
        .map_err(failed("resolve"))?;
    let mut delivered = 0;
    let mut first_wait = None;
    for attempt in 0..500 {
        match account
            .send_direct(peer.peer, &text(&format!("pacing {attempt}")), ids.next())
            .await
        {
            Ok(_) => delivered += 1,
            Err(TelegramError::FloodWait { seconds }) => {
                first_wait = Some(seconds);
                break;
            }
            Err(error) => {
                return Err(format!(
                    "send {attempt} failed with {error:?} instead of a flood wait"
                ));
            }
        }
    }
    let Some(seconds) = first_wait else {
        return Err("500 sends back to back never got a flood wait".into());
    };
    ensure!(seconds > 0, "a flood wait of 0 s");
    match account
        .send_direct(peer.peer, &text("during the wait"), ids.next())
        .await
    {
        Err(TelegramError::FloodWait { seconds: remaining }) if remaining <= seconds => {}
        other => {
            return Err(format!(
                "a send during a {seconds} s flood wait gave {other:?}"
            ));
        }
    }
    sleep(Duration::from_secs(u64::from(seconds))).await;
    account
        .send_direct(peer.peer, &text("after the wait"), ids.next())
        .await
        .map_err(|error| format!("a send after waiting the flood wait out failed: {error:?}"))?;
    delivered += 1;
    if let Some(controls) = fixture.controls() {
        let received = controls
            .messages_received(&fixture.regular_user(), &fixture.first_account())
            .len();
        ensure!(
            received == delivered,
            "{delivered} sends succeeded but {received} messages arrived"
        );
    }
    Ok(CheckOutcome::Passed)
}

/// Resolving many different usernames quickly gets a flood wait (the adapter's cache does not
/// help with names it has not seen).
pub async fn resolving_many_usernames_quickly_gets_a_flood_wait(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs fresh usernames"));
    };
    let account = connect(fixture, &fixture.first_account()).await?;
    for (index, username) in controls.fresh_strangers(200).iter().enumerate() {
        match account.resolve_username(username).await {
            Ok(_) => {}
            Err(TelegramError::FloodWait { seconds }) if seconds > 0 => {
                return Ok(CheckOutcome::Passed);
            }
            Err(error) => {
                return Err(format!(
                    "resolve {index} failed with {error:?} instead of a flood wait"
                ));
            }
        }
    }
    Err("200 different usernames resolved back to back without a flood wait".into())
}

/// A resend with the same `random_id` returns the first message and creates no second one; the
/// same id for a different message is refused.
pub async fn resending_a_random_id_creates_no_second_message(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let account = connect(fixture, &fixture.first_account()).await?;
    let peer = resolve_paced(fixture, &*account, &fixture.regular_user())
        .await
        .map_err(failed("resolve"))?;
    let random_id = ids.next();
    let first = send_paced(fixture, &*account, peer.peer, "only once", random_id)
        .await
        .map_err(failed("send"))?;
    let again = send_paced(fixture, &*account, peer.peer, "only once", random_id)
        .await
        .map_err(failed("resend"))?;
    ensure!(
        again == first,
        "the resend returned {again:?}, the first send {first:?}"
    );
    let channel = fixture.postable_channel();
    match account
        .post_to_chat(channel, &text("reusing an id"), random_id)
        .await
    {
        Err(_) => {}
        Ok(sent) => {
            return Err(format!(
                "a random_id used for a direct message posted {sent:?} in a channel"
            ));
        }
    }
    sleep(fixture.pacing().send).await;
    let post_id = ids.next();
    let post = account
        .post_to_chat(channel, &text("one post"), post_id)
        .await
        .map_err(|e| format!("post: {e:?}"))?;
    sleep(fixture.pacing().send).await;
    let repost = account
        .post_to_chat(channel, &text("one post"), post_id)
        .await
        .map_err(|e| format!("repost: {e:?}"))?;
    ensure!(
        repost == post,
        "the repost returned {repost:?}, the first post {post:?}"
    );
    if let Some(controls) = fixture.controls() {
        let received =
            controls.messages_received(&fixture.regular_user(), &fixture.first_account());
        ensure!(received == ["only once"], "the recipient got {received:?}");
    }
    Ok(CheckOutcome::Passed)
}

// ----- Session ownership -----

/// A session has one owner: a second `connect`, `check_authorization` or `begin_login` is refused
/// with `SessionBusy` before connecting (the first connection keeps working, so its key was not
/// burnt), and disconnecting or dropping the owner releases the session.
pub async fn a_second_owner_of_a_session_is_refused_before_connecting(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let connector = fixture.connector();
    let session = fixture.first_account();
    let options = ConnectOptions::default();
    let owner = connect(fixture, &session).await?;
    match connector.connect(&session, &options).await {
        Err(ConnectError::SessionBusy { .. }) => {}
        Err(error) => {
            return Err(format!(
                "a second connect failed with {error:?}, not SessionBusy"
            ));
        }
        Ok(_) => return Err("a second connect of a held session succeeded: two owners".into()),
    }
    match connector.check_authorization(&session, &options).await {
        Err(ConnectError::SessionBusy { .. }) => {}
        other => {
            return Err(format!(
                "check_authorization of a held session gave {other:?}"
            ));
        }
    }
    match connector.begin_login(&session, &options).await {
        Err(ConnectError::SessionBusy { .. }) => {}
        Err(error) => {
            return Err(format!(
                "begin_login of a held session failed with {error:?}"
            ));
        }
        Ok(_) => return Err("begin_login of a held session succeeded".into()),
    }
    owner
        .get_me()
        .await
        .map_err(|error| format!("the first owner broke after the refusals: {error:?}"))?;
    owner.disconnect().await;
    drop(owner);
    let next_owner = connect(fixture, &session).await?;
    next_owner
        .get_me()
        .await
        .map_err(|error| format!("after disconnect: {error:?}"))?;
    drop(next_owner);
    let third_owner = connect(fixture, &session).await?;
    third_owner
        .get_me()
        .await
        .map_err(|error| format!("after drop: {error:?}"))?;
    Ok(CheckOutcome::Passed)
}

/// `check_authorization` tells a logged-in session from one never logged in, and releases the
/// session afterwards.
pub async fn check_authorization_tells_logged_in_from_not(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let connector = fixture.connector();
    let options = ConnectOptions::default();
    match connector
        .check_authorization(&fixture.first_account(), &options)
        .await
    {
        Ok(AuthorizationStatus::Authorized(_)) => {}
        other => return Err(format!("a logged-in session was reported as {other:?}")),
    }
    match connector
        .check_authorization(&fixture.spare_session(), &options)
        .await
    {
        Ok(AuthorizationStatus::NotLoggedIn) => {}
        other => {
            return Err(format!(
                "a never-logged-in session was reported as {other:?}"
            ));
        }
    }
    match connector.connect(&fixture.spare_session(), &options).await {
        Err(ConnectError::NotLoggedIn { .. }) => {}
        Err(error) => {
            return Err(format!(
                "connecting a never-logged-in session failed with {error:?}"
            ));
        }
        Ok(_) => return Err("a never-logged-in session connected".into()),
    }
    connect(fixture, &fixture.first_account()).await?;
    Ok(CheckOutcome::Passed)
}

/// A session used from two connections at once is burnt for good (`AUTH_KEY_DUPLICATED`).
pub async fn a_duplicated_connection_burns_the_session(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("would burn a real session"));
    };
    let session = fixture.first_account();
    let owner = connect(fixture, &session).await?;
    let copy = controls.duplicate_connection(&session);
    let burnt = TelegramError::AccountDead {
        reason: DeadReason::AuthKeyDuplicated,
    };
    let on_owner = owner.get_me().await;
    ensure!(
        on_owner.as_ref().err() == Some(&burnt),
        "the owner's call gave {on_owner:?}"
    );
    let on_copy = copy.get_me().await;
    ensure!(
        on_copy.as_ref().err() == Some(&burnt),
        "the copy's call gave {on_copy:?}"
    );
    drop((owner, copy));
    let connector = fixture.connector();
    match connector
        .check_authorization(&session, &ConnectOptions::default())
        .await
    {
        Ok(AuthorizationStatus::Dead(DeadReason::AuthKeyDuplicated)) => {}
        other => {
            return Err(format!(
                "after AUTH_KEY_DUPLICATED the session is reported as {other:?}"
            ));
        }
    }
    match connector
        .connect(&session, &ConnectOptions::default())
        .await
    {
        Err(ConnectError::Dead {
            reason: DeadReason::AuthKeyDuplicated,
            ..
        }) => Ok(CheckOutcome::Passed),
        Err(error) => Err(format!("connecting a burnt session failed with {error:?}")),
        Ok(_) => Err("a burnt session connected".into()),
    }
}

/// A banned account gets `AccountDead { Banned }` from every call, and cannot connect again.
pub async fn a_banned_account_is_dead_on_every_call(fixture: &impl ContractFixture) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a ban"));
    };
    let session = fixture.first_account();
    let account = connect(fixture, &session).await?;
    controls.ban(&session);
    let banned = TelegramError::AccountDead {
        reason: DeadReason::Banned,
    };
    let results = [
        account.get_me().await.err(),
        account
            .resolve_username(&fixture.regular_user())
            .await
            .err(),
        account
            .post_to_chat(
                fixture.postable_channel(),
                &text("x"),
                RandomIds::new(fixture).next(),
            )
            .await
            .err(),
        account
            .join_chat(&JoinTarget::InviteHash(fixture.invite_hash()))
            .await
            .err(),
    ];
    for (call, result) in results.iter().enumerate() {
        ensure!(
            result.as_ref() == Some(&banned),
            "call {call} of a banned account gave {result:?}"
        );
    }
    drop(account);
    match fixture
        .connector()
        .connect(&session, &ConnectOptions::default())
        .await
    {
        Err(ConnectError::Dead {
            reason: DeadReason::Banned,
            ..
        }) => Ok(CheckOutcome::Passed),
        Err(error) => Err(format!("connecting a banned account failed with {error:?}")),
        Ok(_) => Err("a banned account connected".into()),
    }
}

// ----- Who may be written to -----

/// Past the daily budget of chats with strangers the account gets `PEER_FLOOD`, for new strangers
/// and follow-ups alike, while a reply to someone who wrote first still goes through
/// (telegram.org/faq_spam).
pub async fn peer_flood_after_the_cold_dm_budget_but_replies_still_work(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("would limit a real account"));
    };
    let ids = RandomIds::new(fixture);
    let session = fixture.first_account();
    let budget = controls.cold_dm_budget() as usize;
    let strangers = controls.fresh_strangers(budget + 1);
    let writer = controls.fresh_strangers(1).remove(0);
    let account = connect(fixture, &session).await?;
    let mut first_peer = None;
    for (index, stranger) in strangers[..budget].iter().enumerate() {
        let peer = resolve_paced(fixture, &*account, stranger)
            .await
            .map_err(failed("resolve"))?;
        send_paced(
            fixture,
            &*account,
            peer.peer,
            "hello, about your vacancy",
            ids.next(),
        )
        .await
        .map_err(|error| format!("cold DM {index} of a budget of {budget}: {error:?}"))?;
        first_peer.get_or_insert(peer.peer);
    }
    let over_budget = resolve_paced(fixture, &*account, &strangers[budget])
        .await
        .map_err(failed("resolve"))?;
    match send_paced(
        fixture,
        &*account,
        over_budget.peer,
        "one too many",
        ids.next(),
    )
    .await
    {
        Err(TelegramError::PeerFlood) => {}
        other => {
            return Err(format!(
                "the cold DM past the budget gave {other:?}, not PeerFlood"
            ));
        }
    }
    if let Some(first_peer) = first_peer {
        match send_paced(fixture, &*account, first_peer, "a follow-up", ids.next()).await {
            Err(TelegramError::PeerFlood) => {}
            other => {
                return Err(format!(
                    "a follow-up to a stranger while limited gave {other:?}"
                ));
            }
        }
    }
    controls.user_writes_to(&writer, &session, "Hi! Is the job still open?")?;
    let writer_peer = resolve_paced(fixture, &*account, &writer)
        .await
        .map_err(failed("resolve"))?;
    send_paced(
        fixture,
        &*account,
        writer_peer.peer,
        "Yes, it is!",
        ids.next(),
    )
    .await
    .map_err(|error| format!("a reply to someone who wrote first, while limited: {error:?}"))?;
    let refused = controls.messages_received(&strangers[budget], &session);
    ensure!(refused.is_empty(), "the refused stranger got {refused:?}");
    Ok(CheckOutcome::Passed)
}

/// A person who accepts messages only from contacts refuses a cold DM.
pub async fn a_private_user_refuses_a_cold_dm(fixture: &impl ContractFixture) -> CheckResult {
    let account = connect(fixture, &fixture.first_account()).await?;
    let peer = resolve_paced(fixture, &*account, &fixture.private_user())
        .await
        .map_err(failed("resolve"))?;
    match account
        .send_direct(peer.peer, &text("hello"), RandomIds::new(fixture).next())
        .await
    {
        Err(TelegramError::PrivacyRestricted) => {}
        other => return Err(format!("a DM to a private user gave {other:?}")),
    }
    if let Some(controls) = fixture.controls() {
        let received =
            controls.messages_received(&fixture.private_user(), &fixture.first_account());
        ensure!(received.is_empty(), "the private user got {received:?}");
    }
    Ok(CheckOutcome::Passed)
}

pub async fn an_unknown_username_is_not_found(fixture: &impl ContractFixture) -> CheckResult {
    let account = connect(fixture, &fixture.first_account()).await?;
    match resolve_paced(fixture, &*account, &fixture.missing_username()).await {
        Err(TelegramError::UsernameNotFound) => Ok(CheckOutcome::Passed),
        other => Err(format!("resolving a missing username gave {other:?}")),
    }
}

/// Bots and channels resolve with their kind, and a direct message to them is `NotAUser` (the
/// port's contract; real Telegram would deliver a DM to a bot, so the adapter checks the kind).
pub async fn a_direct_message_to_a_bot_or_channel_is_not_a_user(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let account = connect(fixture, &fixture.first_account()).await?;
    for (username, kind) in [
        (fixture.bot(), PeerKind::Bot),
        (fixture.public_channel(), PeerKind::Channel),
    ] {
        let peer = resolve_paced(fixture, &*account, &username)
            .await
            .map_err(failed("resolve"))?;
        ensure!(
            peer.kind == kind,
            "{username} resolved as {:?}, expected {kind:?}",
            peer.kind
        );
        match account
            .send_direct(peer.peer, &text("hello"), ids.next())
            .await
        {
            Err(TelegramError::NotAUser) => {}
            other => return Err(format!("a DM to {username} ({kind:?}) gave {other:?}")),
        }
    }
    Ok(CheckOutcome::Passed)
}

/// An access hash belongs to the account that resolved it: another account is refused with it
/// (`PEER_ID_INVALID`) and must resolve the peer itself.
pub async fn an_access_hash_from_another_account_is_refused(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let first = connect(fixture, &fixture.first_account()).await?;
    let second = connect(fixture, &fixture.second_account()).await?;
    let seen_by_first = resolve_paced(fixture, &*first, &fixture.regular_user())
        .await
        .map_err(failed("resolve"))?;
    match second
        .send_direct(seen_by_first.peer, &text("borrowed hash"), ids.next())
        .await
    {
        Err(TelegramError::PeerInvalid) => {}
        other => {
            return Err(format!(
                "a send with another account's access hash gave {other:?}"
            ));
        }
    }
    if let Some(controls) = fixture.controls() {
        let received =
            controls.messages_received(&fixture.regular_user(), &fixture.second_account());
        ensure!(
            received.is_empty(),
            "a send with a borrowed hash delivered {received:?}"
        );
    }
    let seen_by_second = resolve_paced(fixture, &*second, &fixture.regular_user())
        .await
        .map_err(failed("resolve"))?;
    ensure!(
        seen_by_second.id() == seen_by_first.id(),
        "the two accounts resolved different ids"
    );
    send_paced(
        fixture,
        &*second,
        seen_by_second.peer,
        "own hash",
        ids.next(),
    )
    .await
    .map_err(failed("send with own hash"))?;
    Ok(CheckOutcome::Passed)
}

/// Posting in a broadcast channel needs admin rights.
pub async fn a_plain_member_may_not_post_in_a_channel(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let member = connect(fixture, &fixture.second_account()).await?;
    match member
        .post_to_chat(
            fixture.postable_channel(),
            &text("hi"),
            RandomIds::new(fixture).next(),
        )
        .await
    {
        Err(TelegramError::ChatForbidden { .. }) => Ok(CheckOutcome::Passed),
        other => Err(format!("a non-admin post in a channel gave {other:?}")),
    }
}

/// `chat_access` (what `jobbot doctor` asks) reads the rights the calls then enforce: the admin
/// of a channel may post there and a plain member may not; the forum is a forum whose admin may
/// create topics. Nothing is changed, so it can run against real accounts.
pub async fn chat_access_tells_admins_from_members_and_forums(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let admin = connect(fixture, &fixture.first_account()).await?;
    let member = connect(fixture, &fixture.second_account()).await?;
    let channel = fixture.postable_channel();
    let as_admin = admin
        .chat_access(channel)
        .await
        .map_err(failed("the admin's chat_access"))?;
    ensure!(
        as_admin.chat == channel
            && as_admin.kind == PeerKind::Channel
            && as_admin.member
            && as_admin.admin
            && as_admin.can_post
            && !as_admin.forum,
        "the channel's admin sees {as_admin:?}"
    );
    let as_member = member
        .chat_access(channel)
        .await
        .map_err(failed("the member's chat_access"))?;
    ensure!(
        as_member.member && !as_member.admin && !as_member.can_post,
        "a plain member of the channel sees {as_member:?}"
    );
    let forum = admin
        .chat_access(fixture.forum_group())
        .await
        .map_err(failed("chat_access of the forum"))?;
    ensure!(
        forum.kind == PeerKind::Group && forum.forum && forum.member && forum.can_create_topics,
        "the forum's admin sees {forum:?}"
    );
    Ok(CheckOutcome::Passed)
}

/// The 4,096 limit counts UTF-16 code units, not characters (core.telegram.org/api/entities):
/// 2,049 emoji outside the BMP are 2,049 characters but 4,098 units, `MessageTooLong`, and
/// nothing is posted; 2,048 of them are exactly 4,096 units and go out.
pub async fn message_length_is_counted_in_utf16_units(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let admin = connect(fixture, &fixture.first_account()).await?;
    let too_long = "\u{1F600}".repeat(2_049);
    match admin
        .post_to_chat(fixture.postable_channel(), &text(&too_long), ids.next())
        .await
    {
        Err(TelegramError::MessageTooLong) => {}
        other => return Err(format!("a post of 4,098 UTF-16 units gave {other:?}")),
    }
    sleep(fixture.pacing().send).await;
    let longest = "\u{1F600}".repeat(2_048);
    admin
        .post_to_chat(fixture.postable_channel(), &text(&longest), ids.next())
        .await
        .map_err(|error| format!("a post of exactly 4,096 UTF-16 units: {error:?}"))?;
    Ok(CheckOutcome::Passed)
}

// ----- Chats and forum topics -----

/// Joining by invite, or by username, twice succeeds twice with the same chat; a bad invite is
/// `InvalidInvite`.
pub async fn joining_is_idempotent(fixture: &impl ContractFixture) -> CheckResult {
    let account = connect(fixture, &fixture.second_account()).await?;
    let invite = JoinTarget::InviteHash(fixture.invite_hash());
    let first = account
        .join_chat(&invite)
        .await
        .map_err(|error| format!("join by invite: {error:?}"))?;
    let again = account
        .join_chat(&invite)
        .await
        .map_err(|error| format!("second join by invite: {error:?}"))?;
    ensure!(
        first.id() == again.id(),
        "two joins of one invite gave {} and {}",
        first.id(),
        again.id()
    );
    match account
        .join_chat(&JoinTarget::InviteHash("AAAAAAAAAAAAAAAAAAAAAA".into()))
        .await
    {
        Err(TelegramError::InvalidInvite) => {}
        other => return Err(format!("a made-up invite gave {other:?}")),
    }
    let by_name = JoinTarget::Username(fixture.public_channel());
    sleep(fixture.pacing().resolve).await;
    let channel = account
        .join_chat(&by_name)
        .await
        .map_err(|error| format!("join by username: {error:?}"))?;
    ensure!(
        channel.kind == PeerKind::Channel,
        "joined {:?}, expected a channel",
        channel.kind
    );
    sleep(fixture.pacing().resolve).await;
    let channel_again = account
        .join_chat(&by_name)
        .await
        .map_err(|error| format!("rejoin by username: {error:?}"))?;
    ensure!(
        channel_again.id() == channel.id(),
        "two joins by username gave different chats"
    );
    Ok(CheckOutcome::Passed)
}

/// What the one-click setup relies on: `channels.createChannel` makes a broadcast channel and a
/// forum its creator administers; `messages.exportChatInvite` gives a link another account joins
/// by; `messages.editChatDefaultBannedRights` lets members create topics; `channels.inviteToChannel` adds a person the creator resolved; only the creator may
/// delete a chat (`channels.deleteChannel`), and a deleted chat is gone for everyone: its id and
/// its link stop working.
pub async fn created_chats_take_members_and_are_gone_once_deleted(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let creator = connect(fixture, &fixture.first_account()).await?;
    let other = connect(fixture, &fixture.second_account()).await?;
    let channel = creator
        .create_channel(
            NewChatKind::Broadcast,
            "Contract channel",
            "made by a check",
        )
        .await
        .map_err(failed("create a channel"))?;
    ensure!(
        channel.kind == PeerKind::Channel,
        "a broadcast channel came back as {:?}",
        channel.kind
    );
    let forum = creator
        .create_channel(NewChatKind::Forum, "Contract forum", "")
        .await
        .map_err(failed("create a forum"))?;
    let access = creator
        .chat_access(forum.id())
        .await
        .map_err(failed("the forum's access"))?;
    ensure!(
        access.forum && access.admin && access.can_create_topics,
        "the creator's access to its new forum: {access:?}"
    );
    let link = creator
        .export_invite_link(forum.id())
        .await
        .map_err(failed("export an invite"))?;
    let Some(jobbot_core::config::SourceRef::Invite(hash)) =
        jobbot_core::config::SourceRef::parse(&link)
    else {
        return Err(format!("{link:?} is not an invite link"));
    };
    let joined = other
        .join_chat(&JoinTarget::InviteHash(hash.clone()))
        .await
        .map_err(failed("join by the exported link"))?;
    ensure!(
        joined.id() == forum.id(),
        "the link led to {}, not {}",
        joined.id(),
        forum.id()
    );
    match other.allow_members_to_create_topics(forum.id()).await {
        Err(TelegramError::ChatForbidden { .. }) => {}
        refused => {
            return Err(format!(
                "a member opening topics to members got {refused:?}"
            ));
        }
    }
    creator
        .allow_members_to_create_topics(forum.id())
        .await
        .map_err(failed("let members create topics"))?;
    let member = other
        .chat_access(forum.id())
        .await
        .map_err(failed("the member's access"))?;
    ensure!(
        member.member && member.forum && member.can_create_topics && !member.admin,
        "a member's access once members may create topics: {member:?}"
    );
    let person = resolve_paced(fixture, &*creator, &fixture.regular_user())
        .await
        .map_err(failed("resolve a person"))?;
    let missing = creator
        .invite_to_channel(channel.id(), &[person.peer])
        .await
        .map_err(failed("invite a person"))?;
    ensure!(missing.is_empty(), "the invite left out {missing:?}");
    match other.delete_channel(forum.id()).await {
        Err(TelegramError::ChatForbidden { .. }) => {}
        other => return Err(format!("a member deleting the forum got {other:?}")),
    }
    for chat in [channel.id(), forum.id()] {
        creator
            .delete_channel(chat)
            .await
            .map_err(failed("delete a created chat"))?;
    }
    match other.chat_access(forum.id()).await {
        Err(TelegramError::ChatForbidden { .. }) => {}
        other => return Err(format!("a deleted forum's access gave {other:?}")),
    }
    match other.join_chat(&JoinTarget::InviteHash(hash)).await {
        Err(TelegramError::InvalidInvite) => {}
        other => return Err(format!("a deleted forum's link gave {other:?}")),
    }
    Ok(CheckOutcome::Passed)
}

/// A topic can be created (once per `random_id`) and posted to.
pub async fn a_forum_topic_can_be_created_and_posted_to(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let account = connect(fixture, &fixture.first_account()).await?;
    let group = fixture.forum_group();
    let random_id = ids.next();
    let topic = account
        .create_forum_topic(group, "Contract check", random_id)
        .await
        .map_err(|e| format!("create: {e:?}"))?;
    let again = account
        .create_forum_topic(group, "Contract check", random_id)
        .await
        .map_err(|e| format!("recreate: {e:?}"))?;
    ensure!(
        again == topic,
        "the same random_id created a second topic ({topic:?}, {again:?})"
    );
    let sent = account
        .post_to_topic(
            group,
            topic,
            &text("first message in the topic"),
            ids.next(),
        )
        .await
        .map_err(|error| format!("post to topic: {error:?}"))?;
    ensure!(sent.chat == group, "a topic post landed in {}", sent.chat);
    Ok(CheckOutcome::Passed)
}

/// After an admin deletes a topic, posting into it is `TopicDeleted`.
pub async fn a_deleted_topic_is_refused(fixture: &impl ContractFixture) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs an admin deletion"));
    };
    let ids = RandomIds::new(fixture);
    let account = connect(fixture, &fixture.first_account()).await?;
    let group = fixture.forum_group();
    let topic = account
        .create_forum_topic(group, "Soon gone", ids.next())
        .await
        .map_err(|e| format!("create: {e:?}"))?;
    controls.delete_topic(group, topic)?;
    match account
        .post_to_topic(group, topic, &text("anyone here?"), ids.next())
        .await
    {
        Err(TelegramError::TopicDeleted) => Ok(CheckOutcome::Passed),
        other => Err(format!("a post into a deleted topic gave {other:?}")),
    }
}

// ----- Events -----

/// A channel post reaches a member account's stream; the account's own post arrives as outgoing,
/// with the id `post_to_chat` returned (the way to recognise one's own messages).
pub async fn a_channel_post_reaches_a_member_accounts_stream(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a channel post"));
    };
    let account = connect(fixture, &fixture.first_account()).await?;
    let mut events = account
        .take_events()
        .ok_or("the first take_events returned None")?;
    ensure!(
        account.take_events().is_none(),
        "a second take_events returned a second stream"
    );
    let channel = fixture.postable_channel();
    controls.channel_posts(channel, "Rust developer wanted")?;
    let post = next_message(&mut events, |message| {
        message.text == "Rust developer wanted"
    })
    .await?;
    ensure!(
        post.chat == channel && post.chat_kind == PeerKind::Channel,
        "the post arrived as {post:?}"
    );
    ensure!(
        !post.outgoing && !post.is_service && !post.is_private(),
        "the post arrived as {post:?}"
    );
    let sent = account
        .post_to_chat(
            channel,
            &text("our own post"),
            RandomIds::new(fixture).next(),
        )
        .await
        .map_err(|error| format!("own post: {error:?}"))?;
    let echo = next_message(&mut events, |message| message.text == "our own post").await?;
    ensure!(
        echo.outgoing && echo.message_id == sent.message_id,
        "own post came back as {echo:?} for {sent:?}"
    );
    Ok(CheckOutcome::Passed)
}

/// A private message to an account arrives as a private message from its sender.
pub async fn a_direct_message_arrives_as_a_private_message(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs someone to write"));
    };
    let account = connect(fixture, &fixture.first_account()).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let writer = controls.fresh_strangers(1).remove(0);
    controls.user_writes_to(
        &writer,
        &fixture.first_account(),
        "Hello! About the vacancy",
    )?;
    let message = next_message(&mut events, |message| {
        message.text == "Hello! About the vacancy"
    })
    .await?;
    ensure!(message.is_private(), "the DM arrived as {message:?}");
    let sender = message.sender.as_ref().ok_or("a DM without a sender")?;
    ensure!(
        sender.username.as_ref() == Some(&writer),
        "the DM's sender is {sender:?}"
    );
    ensure!(
        sender.kind == PeerKind::User && sender.id == message.chat,
        "the DM arrived as {message:?}"
    );
    Ok(CheckOutcome::Passed)
}

/// Messages in a forum carry their topic: the creation is a service message in the new topic,
/// a member's message in the topic has its id, one in General has none.
pub async fn a_topic_message_carries_its_topic_id(fixture: &impl ContractFixture) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a member to write"));
    };
    let account = connect(fixture, &fixture.first_account()).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let group = fixture.forum_group();
    let topic = account
        .create_forum_topic(group, "Candidate Ivan", RandomIds::new(fixture).next())
        .await
        .map_err(|error| format!("create: {error:?}"))?;
    let created = next_message(&mut events, |message| message.is_service).await?;
    ensure!(
        created.topic_id == Some(topic) && created.chat == group,
        "topic creation arrived as {created:?}"
    );
    controls.member_posts(group, Some(topic), "in the topic")?;
    let in_topic = next_message(&mut events, |message| message.text == "in the topic").await?;
    ensure!(
        in_topic.topic_id == Some(topic) && !in_topic.outgoing,
        "topic message arrived as {in_topic:?}"
    );
    controls.member_posts(group, None, "in general")?;
    let in_general = next_message(&mut events, |message| message.text == "in general").await?;
    ensure!(
        in_general.topic_id.is_none(),
        "a General message arrived with {:?}",
        in_general.topic_id
    );
    Ok(CheckOutcome::Passed)
}

/// A dropped connection: `ConnectionLost`, calls fail with `Network`, then `ConnectionRestored`
/// and the updates missed meanwhile.
pub async fn a_dropped_connection_is_lost_then_restored(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a network cut"));
    };
    let session = fixture.first_account();
    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    controls.drop_connection(&session);
    let lost = next_event(&mut events).await?;
    ensure!(
        lost == AccountEvent::ConnectionLost,
        "expected ConnectionLost, got {lost:?}"
    );
    match account.get_me().await {
        Err(TelegramError::Network { .. }) => {}
        other => return Err(format!("a call while disconnected gave {other:?}")),
    }
    controls.channel_posts(fixture.postable_channel(), "posted during the outage")?;
    let restored = next_event(&mut events).await?;
    ensure!(
        restored == AccountEvent::ConnectionRestored,
        "expected ConnectionRestored, got {restored:?}"
    );
    next_message(&mut events, |message| {
        message.text == "posted during the outage"
    })
    .await?;
    account
        .get_me()
        .await
        .map_err(|error| format!("a call after reconnecting: {error:?}"))?;
    Ok(CheckOutcome::Passed)
}

/// A connection that comes back is announced at once, with no update to carry the news: a
/// quiet account (one that only sends) must not stay "disconnected" until someone writes to it.
pub async fn a_quiet_connection_is_restored_without_any_update(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a network cut"));
    };
    let session = fixture.first_account();
    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    controls.drop_connection(&session);
    let lost = next_event(&mut events).await?;
    ensure!(
        lost == AccountEvent::ConnectionLost,
        "expected ConnectionLost, got {lost:?}"
    );
    // Nothing is posted anywhere meanwhile.
    let restored = next_event(&mut events).await?;
    ensure!(
        restored == AccountEvent::ConnectionRestored,
        "expected ConnectionRestored with no update, got {restored:?}"
    );
    account
        .get_me()
        .await
        .map_err(|error| format!("a call once restored: {error:?}"))?;
    Ok(CheckOutcome::Passed)
}

// ----- Update positions -----

/// A committed checkpoint is where the session's next connection catches up from: what came
/// after it is delivered again (at least once), including what arrived while no connection was
/// open, and nothing before it is.
pub async fn the_next_connection_catches_up_from_the_committed_checkpoint(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs channel posts"));
    };
    let session = fixture.first_account();
    let channel = fixture.postable_channel();
    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    controls.channel_posts(channel, "before the checkpoint")?;
    next_message(&mut events, |message| {
        message.text == "before the checkpoint"
    })
    .await
    .map_err(|error| format!("the first post: {error}"))?;
    account.request_checkpoint();
    let checkpoint = next_checkpoint(&mut events)
        .await
        .map_err(|error| format!("the first checkpoint: {error}"))?;
    account
        .commit_checkpoint(checkpoint)
        .await
        .map_err(failed("commit"))?;
    controls.channel_posts(channel, "after the checkpoint")?;
    next_message(&mut events, |message| {
        message.text == "after the checkpoint"
    })
    .await
    .map_err(|error| format!("the second post: {error}"))?;
    // A checkpoint asked for but never committed changes nothing.
    account.request_checkpoint();
    next_checkpoint(&mut events)
        .await
        .map_err(|error| format!("the second checkpoint: {error}"))?;
    account.disconnect().await;
    drop(account);
    controls.channel_posts(channel, "while away")?;

    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let event = next_event(&mut events)
            .await
            .map_err(|error| format!("after reconnecting, having seen {texts:?}: {error}"))?;
        match event {
            AccountEvent::NewMessage(message) => texts.push(message.text),
            AccountEvent::Checkpoint(_)
            | AccountEvent::ConnectionLost
            | AccountEvent::ConnectionRestored
            | AccountEvent::MessageEdited(_) => {}
        }
    }
    ensure!(
        texts == ["after the checkpoint", "while away"],
        "after reconnecting the stream delivered {texts:?}"
    );
    // A checkpoint of the earlier connection is ignored.
    account
        .commit_checkpoint(checkpoint)
        .await
        .map_err(failed("commit of an old checkpoint"))?;
    Ok(CheckOutcome::Passed)
}

/// How many posts a channel gets while its reader is away, in the gap checks: more than one
/// `updates.getChannelDifference` answers for a user client (its `limit` is 100 in grammers and
/// Telethon; past it Telegram answers `channelDifferenceTooLong`,
/// core.telegram.org/constructor/updates.channelDifferenceTooLong).
const LONG_GAP: usize = 250;

/// Reconnects `session` after a committed checkpoint while the channel got `posts` posts, and
/// returns the new connection with its stream.
async fn away_and_back(
    fixture: &impl ContractFixture,
    controls: &dyn WorldControls,
    session: &SessionName,
    while_away: impl FnOnce() -> Result<(), String>,
) -> Result<(Arc<dyn TelegramAccount>, mpsc::Receiver<AccountEvent>), String> {
    let channel = fixture.postable_channel();
    let account = connect(fixture, session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    controls.channel_posts(channel, "before leaving")?;
    next_message(&mut events, |message| message.text == "before leaving")
        .await
        .map_err(|error| format!("the first post: {error}"))?;
    account.request_checkpoint();
    let checkpoint = next_checkpoint(&mut events).await?;
    account
        .commit_checkpoint(checkpoint)
        .await
        .map_err(failed("commit"))?;
    account.disconnect().await;
    drop(account);
    while_away()?;
    let account = connect(fixture, session).await?;
    let events = account.take_events().ok_or("take_events returned None")?;
    Ok((account, events))
}

/// More posts than one channel difference returns arrive anyway, each once and in order: the
/// back-end fills a `channelDifferenceTooLong` gap from the channel's history, starting at the
/// saved position.
pub async fn a_gap_longer_than_one_channel_difference_is_filled_from_history(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs channel posts"));
    };
    let channel = fixture.postable_channel();
    let (_account, mut events) = away_and_back(fixture, controls, &fixture.first_account(), || {
        (0..LONG_GAP).try_for_each(|n| controls.channel_posts(channel, &format!("gap {n}")))
    })
    .await?;
    let mut texts = Vec::new();
    while texts.len() < LONG_GAP {
        let message = next_message(&mut events, |message| message.chat == channel)
            .await
            .map_err(|error| format!("after {} of the gap: {error}", texts.len()))?;
        texts.push(message.text);
    }
    let expected: Vec<String> = (0..LONG_GAP).map(|n| format!("gap {n}")).collect();
    ensure!(
        texts == expected,
        "the gap arrived as {} messages, first {:?}, last {:?}",
        texts.len(),
        texts.first(),
        texts.last()
    );
    Ok(CheckOutcome::Passed)
}

/// A flood wait on one channel's catch-up holds that channel only: the group's missed and live
/// messages arrive meanwhile; a checkpoint committed meanwhile does not pass the held channel
/// (a restart still gets its posts); once the wait is over, its posts arrive.
pub async fn a_flood_wait_in_one_channels_catch_up_holds_only_that_channel(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs channel posts"));
    };
    let session = fixture.first_account();
    let (channel, group) = (fixture.postable_channel(), fixture.forum_group());
    // A wait the check outlasts within its deadline for events.
    let wait = (EVENT_DEADLINE / 4).as_secs() as u32;
    let mut refused = None;
    let (account, mut events) = away_and_back(fixture, controls, &session, || {
        controls.channel_posts(channel, "channel while away")?;
        controls.member_posts(group, None, "group while away")?;
        if let Err(error) = controls.flood_channel_catch_up(&session, channel, wait) {
            refused = Some(error);
        }
        Ok(())
    })
    .await?;
    if refused.is_some() {
        return Ok(CheckOutcome::Skipped(
            "the world cannot impose a catch-up flood wait",
        ));
    }
    let mut seen = Vec::new();
    let first = next_message(&mut events, |message| {
        message.chat == channel || message.chat == group
    })
    .await?;
    seen.push(first.text);
    controls.member_posts(group, None, "group live")?;
    let second = next_message(&mut events, |message| {
        message.chat == channel || message.chat == group
    })
    .await?;
    seen.push(second.text);
    ensure!(
        seen == ["group while away", "group live"],
        "while the channel's catch-up waits, the stream delivered {seen:?}"
    );
    account.request_checkpoint();
    let checkpoint = next_checkpoint(&mut events).await?;
    account
        .commit_checkpoint(checkpoint)
        .await
        .map_err(failed("commit"))?;
    let held = next_message(&mut events, |message| message.chat == channel)
        .await
        .map_err(|error| format!("the held channel after its wait: {error}"))?;
    ensure!(
        held.text == "channel while away",
        "after the wait the channel delivered {:?}",
        held.text
    );
    account.disconnect().await;
    drop(account);
    // The checkpoint taken while the channel was held did not save past its post.
    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let again = next_message(&mut events, |message| message.chat == channel)
        .await
        .map_err(|error| format!("the held post after a restart: {error}"))?;
    ensure!(
        again.text == "channel while away",
        "after a restart the channel delivered {:?} first",
        again.text
    );
    Ok(CheckOutcome::Passed)
}

/// A private message carries what the receiving account needs to answer its sender, even one
/// without a username: the sender's reference with this account's own access hash.
pub async fn a_private_message_carries_the_senders_own_reference(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a stranger to write"));
    };
    let ids = RandomIds::new(fixture);
    let session = fixture.first_account();
    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let writer = controls
        .fresh_strangers(1)
        .pop()
        .ok_or("no stranger was created")?;
    controls.user_writes_to(&writer, &session, "hello first")?;
    let message = next_message(&mut events, |message| message.text == "hello first").await?;
    let sender = message.sender.ok_or("the message has no sender")?;
    let peer = sender
        .peer
        .ok_or("a private message's sender carries no reference")?;
    ensure!(peer.id == sender.id, "the reference names another peer");
    sleep(fixture.pacing().send).await;
    account
        .send_direct(peer, &text("answer"), ids.next())
        .await
        .map_err(failed("answer through the sender's reference"))?;
    ensure!(
        controls.messages_received(&writer, &session) == ["answer"],
        "the writer did not get the answer"
    );
    Ok(CheckOutcome::Passed)
}

/// The author of a group message, who comes as a `min` user whose hash cannot address them, is
/// found through the message (`inputUserFromMessage`, core.telegram.org/api/min) with the
/// account's own reference, and gets a private message through it. A message that is not theirs
/// names nobody (`PeerInvalid`); an account that cannot see the (private) group is refused it
/// (`ChatForbidden`).
pub async fn a_group_messages_author_is_found_through_the_message(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped(
            "needs a member to write in the group",
        ));
    };
    let ids = RandomIds::new(fixture);
    let session = fixture.first_account();
    let account = connect(fixture, &session).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let group = fixture.forum_group();
    controls.member_posts(group, None, "who is hiring?")?;
    let message = next_message(&mut events, |message| message.text == "who is hiring?").await?;
    let sender = message.sender.ok_or("the group message has no sender")?;
    let author = MessageAuthor {
        chat: group,
        chat_username: None,
        message_id: message.message_id,
        user: sender.id,
    };
    let peer = account
        .resolve_message_author(&author)
        .await
        .map_err(failed("find the author through their message"))?;
    ensure!(
        peer.id() == sender.id && peer.kind == PeerKind::User,
        "the message named {:?}, not its author",
        peer.id()
    );
    sleep(fixture.pacing().send).await;
    account
        .send_direct(peer.peer, &text("we are"), ids.next())
        .await
        .map_err(failed("write to the author through the found reference"))?;
    let username = sender
        .username
        .ok_or("the group's member has no username to look their messages up by")?;
    ensure!(
        controls.messages_received(&username, &session) == ["we are"],
        "the author did not get the message"
    );
    let not_theirs = MessageAuthor {
        message_id: message.message_id + 1_000,
        ..author.clone()
    };
    match account.resolve_message_author(&not_theirs).await {
        Err(TelegramError::PeerInvalid) => {}
        other => return Err(format!("a message that is not theirs answered {other:?}")),
    }
    let outsider = connect(fixture, &fixture.second_account()).await?;
    match outsider.resolve_message_author(&author).await {
        Err(TelegramError::ChatForbidden { .. }) => {}
        other => {
            return Err(format!(
                "an account outside the private group answered {other:?}"
            ));
        }
    }
    Ok(CheckOutcome::Passed)
}

/// A file a person sent to one account comes with a reference of that account's: it re-sends the
/// file with a caption, and another account holding that reference is refused with
/// `FILE_REFERENCE_EXPIRED` (core.telegram.org/api/file_reference), delivering nothing.
pub async fn a_received_file_is_resent_only_by_the_account_that_received_it(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let Some(controls) = fixture.controls() else {
        return Ok(CheckOutcome::Skipped("needs a person to send a file"));
    };
    let ids = RandomIds::new(fixture);
    let session = fixture.first_account();
    let account = connect(fixture, &session).await?;
    let other = connect(fixture, &fixture.second_account()).await?;
    let mut events = account.take_events().ok_or("take_events returned None")?;
    let writer = controls
        .fresh_strangers(1)
        .pop()
        .ok_or("no stranger was created")?;
    controls.user_sends_file_to(
        &writer,
        &session,
        crate::SimMedia::document("cv.pdf", "application/pdf", 52_000),
        "my CV",
    )?;
    let message = next_message(&mut events, |message| message.text == "my CV").await?;
    let file = message.file.ok_or("a document arrived without its file")?;
    ensure!(
        file.file_name.as_deref() == Some("cv.pdf"),
        "the file name is {:?}",
        file.file_name
    );
    let peer = message
        .sender
        .and_then(|sender| sender.peer)
        .ok_or("the sender carries no reference")?;
    let by_other = resolve_paced(fixture, &*other, &writer)
        .await
        .map_err(failed("resolve"))?;
    sleep(fixture.pacing().send).await;
    match other
        .send_direct(
            by_other.peer,
            &MessageContent::with_media(file.clone(), "borrowed"),
            ids.next(),
        )
        .await
    {
        Err(TelegramError::FileReferenceExpired) => {}
        other => {
            return Err(format!(
                "a file under another account's reference gave {other:?}"
            ));
        }
    }
    sleep(fixture.pacing().send).await;
    account
        .send_direct(
            peer,
            &MessageContent::with_media(file, "got it"),
            ids.next(),
        )
        .await
        .map_err(failed("re-send the file"))?;
    ensure!(
        controls.messages_received(&writer, &session) == ["got it"],
        "the writer did not get the file back"
    );
    ensure!(
        controls
            .messages_received(&writer, &fixture.second_account())
            .is_empty(),
        "the refused send delivered something"
    );
    Ok(CheckOutcome::Passed)
}

/// Two sends with one `random_id` at once: one message arrives; the other call returns it or says
/// it is already on its way (`RANDOM_ID_DUPLICATE`), never a second message.
pub async fn a_send_already_on_its_way_is_a_duplicate_not_a_second_message(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let ids = RandomIds::new(fixture);
    let account = connect(fixture, &fixture.first_account()).await?;
    let peer = resolve_paced(fixture, &*account, &fixture.regular_user())
        .await
        .map_err(failed("resolve"))?;
    let random_id = ids.next();
    sleep(fixture.pacing().send).await;
    let body = text("at once");
    let (first, second) = tokio::join!(
        account.send_direct(peer.peer, &body, random_id),
        account.send_direct(peer.peer, &body, random_id),
    );
    let sent: Vec<SentMessage> = [&first, &second]
        .into_iter()
        .filter_map(|result| result.as_ref().ok().copied())
        .collect();
    ensure!(
        !sent.is_empty(),
        "neither send went out: {first:?} {second:?}"
    );
    ensure!(
        sent.iter().all(|message| *message == sent[0]),
        "two messages: {first:?} {second:?}"
    );
    for result in [&first, &second] {
        ensure!(
            matches!(result, Ok(_) | Err(TelegramError::RandomIdDuplicate)),
            "a send answered {result:?}"
        );
    }
    // Once the first is done, a repeat returns it.
    sleep(fixture.pacing().send).await;
    let again = account
        .send_direct(peer.peer, &body, random_id)
        .await
        .map_err(failed("repeat"))?;
    ensure!(
        again == sent[0],
        "the repeat returned {again:?}, not {:?}",
        sent[0]
    );
    if let Some(controls) = fixture.controls() {
        let received =
            controls.messages_received(&fixture.regular_user(), &fixture.first_account());
        ensure!(received == ["at once"], "the recipient got {received:?}");
    }
    Ok(CheckOutcome::Passed)
}

// ----- Login -----

/// `auth.resendCode` sends the code the way the previous answer's `next_type` named
/// (core.telegram.org/api/auth), and the code still signs in; with no way left it is
/// `ResendUnavailable` (`SEND_CODE_UNAVAILABLE`), the login still waiting for the code.
pub async fn a_login_code_is_resent_the_way_telegram_offered(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped("needs login phones and their codes"));
    };
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    let mut offered = match flow.submit_phone(phones.plain.as_str()).await {
        Ok(LoginState::AwaitingCode { sent, .. }) => sent.next,
        other => return Err(format!("phone: {other:?}")),
    };
    let mut resends = 0;
    while let Some(next) = offered {
        resends += 1;
        ensure!(resends < 10, "Telegram offered another way {resends} times");
        match flow.resend_code().await {
            Ok(LoginState::AwaitingCode { sent, .. }) if sent.delivery == next => {
                offered = sent.next;
            }
            other => return Err(format!("a resend offered as {next:?} gave {other:?}")),
        }
    }
    match flow.resend_code().await {
        Err(LoginStepError::Telegram(LoginError::ResendUnavailable)) => {}
        other => return Err(format!("a resend with no way left gave {other:?}")),
    }
    let code = controls
        .last_login_code(&phones.plain)
        .ok_or("no code was sent")?;
    match flow.submit_code(&code).await {
        Ok(LoginState::SignedIn(_)) => Ok(CheckOutcome::Passed),
        other => Err(format!("the code after resends gave {other:?}")),
    }
}

/// A wrong code is refused and the right one then signs in; the session is locked while the login
/// runs and connects afterwards as the person who logged in.
pub async fn login_with_a_wrong_code_then_the_right_one(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped("needs login phones and their codes"));
    };
    let connector = fixture.connector();
    let session = fixture.spare_session();
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    match connector
        .connect(&session, &ConnectOptions::default())
        .await
    {
        Err(ConnectError::SessionBusy { .. }) => {}
        Err(error) => {
            return Err(format!(
                "connecting a session during its login failed with {error:?}"
            ));
        }
        Ok(_) => return Err("a session connected while its login was running".into()),
    }
    flow.submit_phone(phones.plain.as_str())
        .await
        .map_err(|error| format!("phone: {error}"))?;
    let code = controls
        .last_login_code(&phones.plain)
        .ok_or("no code was sent")?;
    match flow.submit_code(&wrong_code(&code)).await {
        Err(LoginStepError::Telegram(LoginError::InvalidCode)) => {}
        other => return Err(format!("a wrong code gave {other:?}")),
    }
    ensure!(
        matches!(flow.state(), LoginState::AwaitingCode { .. }),
        "after a wrong code: {:?}",
        flow.state()
    );
    match flow.submit_code(&code).await {
        Ok(LoginState::SignedIn(me)) if me.phone.as_ref() == Some(&phones.plain) => {}
        other => return Err(format!("the right code gave {other:?}")),
    }
    drop(flow);
    let account = connect(fixture, &session).await?;
    let me = account
        .get_me()
        .await
        .map_err(|error| format!("get_me after login: {error:?}"))?;
    ensure!(
        me.phone.as_ref() == Some(&phones.plain),
        "logged in as {me:?}"
    );
    Ok(CheckOutcome::Passed)
}

/// An expired code sends the login back to the phone step, remembering the number; a new code
/// then works.
pub async fn login_with_an_expired_code(fixture: &impl ContractFixture) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped("needs login phones and their codes"));
    };
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    flow.submit_phone(phones.plain.as_str())
        .await
        .map_err(|error| format!("phone: {error}"))?;
    let code = controls
        .last_login_code(&phones.plain)
        .ok_or("no code was sent")?;
    sleep(controls.login_code_lifetime() + Duration::from_secs(1)).await;
    match flow.submit_code(&code).await {
        Err(LoginStepError::Telegram(LoginError::CodeExpired)) => {}
        other => return Err(format!("an expired code gave {other:?}")),
    }
    match flow.state() {
        LoginState::AwaitingPhone {
            last_phone: Some(phone),
        } if phone == &phones.plain => {}
        state => return Err(format!("after an expired code the login is at {state:?}")),
    }
    flow.submit_phone(phones.plain.as_str())
        .await
        .map_err(|error| format!("phone again: {error}"))?;
    let fresh = controls
        .last_login_code(&phones.plain)
        .ok_or("no new code was sent")?;
    match flow.submit_code(&fresh).await {
        Ok(LoginState::SignedIn(_)) => Ok(CheckOutcome::Passed),
        other => Err(format!("the new code gave {other:?}")),
    }
}

/// Two-step verification: the password step shows the hint, a wrong password is refused and the
/// right one signs in.
pub async fn login_with_two_step_verification(fixture: &impl ContractFixture) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped("needs login phones and their codes"));
    };
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    flow.submit_phone(phones.two_factor.as_str())
        .await
        .map_err(|error| format!("phone: {error}"))?;
    let code = controls
        .last_login_code(&phones.two_factor)
        .ok_or("no code was sent")?;
    match flow.submit_code(&code).await {
        Ok(LoginState::AwaitingPassword { hint, .. }) if hint == &phones.hint => {}
        other => return Err(format!("the code of a 2FA account gave {other:?}")),
    }
    match flow.submit_password("certainly not the password").await {
        Err(LoginStepError::Telegram(LoginError::InvalidPassword)) => {}
        other => return Err(format!("a wrong password gave {other:?}")),
    }
    ensure!(
        matches!(flow.state(), LoginState::AwaitingPassword { .. }),
        "after a wrong password: {:?}",
        flow.state()
    );
    match flow.submit_password(&phones.password).await {
        Ok(LoginState::SignedIn(me)) if me.phone.as_ref() == Some(&phones.two_factor) => {
            Ok(CheckOutcome::Passed)
        }
        other => Err(format!("the right password gave {other:?}")),
    }
}

/// A banned number is refused at the phone step; an unregistered one gets a code and then needs a
/// sign-up (core.telegram.org/api/auth).
pub async fn login_with_a_banned_or_unregistered_phone(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped("needs login phones and their codes"));
    };
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    match flow.submit_phone(phones.banned.as_str()).await {
        Err(LoginStepError::Telegram(LoginError::PhoneBanned)) => {}
        other => return Err(format!("a banned phone gave {other:?}")),
    }
    ensure!(
        matches!(flow.state(), LoginState::AwaitingPhone { .. }),
        "after a banned phone: {:?}",
        flow.state()
    );
    flow.submit_phone(phones.unregistered.as_str())
        .await
        .map_err(|error| format!("unregistered phone: {error}"))?;
    let code = controls
        .last_login_code(&phones.unregistered)
        .ok_or("no code was sent")?;
    match flow.submit_code(&code).await {
        Err(LoginStepError::Telegram(LoginError::SignUpRequired)) => Ok(CheckOutcome::Passed),
        other => Err(format!("the code of an unregistered phone gave {other:?}")),
    }
}

/// Guessing codes is stopped with a flood wait, which then also refuses the right code.
pub async fn login_guessing_codes_gets_a_flood_wait(fixture: &impl ContractFixture) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped("needs login phones and their codes"));
    };
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    flow.submit_phone(phones.plain.as_str())
        .await
        .map_err(|error| format!("phone: {error}"))?;
    let code = controls
        .last_login_code(&phones.plain)
        .ok_or("no code was sent")?;
    for guess in 0..50 {
        match flow.submit_code(&wrong_code(&code)).await {
            Err(LoginStepError::Telegram(LoginError::InvalidCode)) => {}
            Err(LoginStepError::Telegram(LoginError::FloodWait { seconds })) if seconds > 0 => {
                return match flow.submit_code(&code).await {
                    Err(LoginStepError::Telegram(LoginError::FloodWait { .. })) => {
                        Ok(CheckOutcome::Passed)
                    }
                    other => Err(format!(
                        "the right code during the login flood wait gave {other:?}"
                    )),
                };
            }
            other => return Err(format!("guess {guess} gave {other:?}")),
        }
    }
    Err("50 wrong codes without a flood wait".into())
}

// ----- Helpers -----

/// Unique random ids from the fixture's base, for one check.
struct RandomIds(AtomicI64);

impl RandomIds {
    fn new(fixture: &impl ContractFixture) -> Self {
        Self(AtomicI64::new(fixture.random_id_base()))
    }

    fn next(&self) -> RandomId {
        RandomId(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

fn text(text: &str) -> MessageContent {
    MessageContent::plain(text)
}

/// A code that differs from `code` in its first digit.
fn wrong_code(code: &str) -> String {
    let mut digits: Vec<char> = code.chars().collect();
    if let Some(first) = digits.first_mut() {
        *first = if *first == '1' { '2' } else { '1' };
    }
    digits.into_iter().collect()
}

async fn connect(
    fixture: &impl ContractFixture,
    session: &SessionName,
) -> Result<Arc<dyn TelegramAccount>, String> {
    fixture
        .connector()
        .connect(session, &ConnectOptions::default())
        .await
        .map_err(|error| format!("connect {session}: {error}"))
}

/// The caller's clock for a QR login: milliseconds since `start`, on tokio's (pausable) time.
fn qr_clock(start: tokio::time::Instant) -> impl Fn() -> u64 + Send + Sync {
    move || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Follows a QR login until it leaves the token `url` behind (a new token, the sign-in or the
/// password step). A wait may end early without a scan; each step waits on Telegram's answer.
async fn follow_qr_past<B: jobbot_core::telegram::LoginBackend>(
    flow: &mut LoginFlow<B>,
    clock: &(dyn Fn() -> u64 + Send + Sync),
    url: &str,
) -> Result<LoginState, String> {
    for _ in 0..10 {
        match flow.follow_qr(clock, std::time::Duration::MAX).await {
            Ok(LoginState::AwaitingQrScan { url: shown, .. }) if shown == url => {}
            Ok(state) => return Ok(state.clone()),
            Err(error) => return Err(format!("following the QR login: {error}")),
        }
    }
    Err("the QR login kept the same token for ten waits".into())
}

/// QR login (core.telegram.org/api/qr-login): a token nobody scans expires and a new one
/// replaces it; the phone cannot accept the expired one; a scan of the new one signs in, and
/// the token cannot be accepted twice.
pub async fn qr_login_rotates_an_expired_token_and_signs_in_after_a_scan(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped(
            "needs login phones and a phone to scan with",
        ));
    };
    let session = fixture.spare_session();
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    let clock = qr_clock(tokio::time::Instant::now());
    let first = match flow.start_qr(clock()).await {
        Ok(LoginState::AwaitingQrScan { url, .. }) => url.clone(),
        other => return Err(format!("starting a QR login gave {other:?}")),
    };
    let second = match follow_qr_past(&mut flow, &clock, &first).await? {
        LoginState::AwaitingQrScan { url, .. } => url,
        other => return Err(format!("an unscanned token led to {other:?}")),
    };
    ensure!(
        controls.scan_login_qr(&phones.plain, &first).is_err(),
        "the phone accepted an expired token"
    );
    controls
        .scan_login_qr(&phones.plain, &second)
        .map_err(|error| format!("scanning the fresh token: {error}"))?;
    match follow_qr_past(&mut flow, &clock, &second).await? {
        LoginState::SignedIn(me) if me.phone.as_ref() == Some(&phones.plain) => {}
        other => return Err(format!("a scanned token led to {other:?}")),
    }
    ensure!(
        controls.scan_login_qr(&phones.plain, &second).is_err(),
        "a used token was accepted again"
    );
    drop(flow);
    let account = connect(fixture, &session).await?;
    let me = account
        .get_me()
        .await
        .map_err(|error| format!("get_me after a QR login: {error:?}"))?;
    ensure!(
        me.phone.as_ref() == Some(&phones.plain),
        "logged in as {me:?}"
    );
    Ok(CheckOutcome::Passed)
}

/// A QR login of an account with two-step verification: after the scan, Telegram answers
/// `SESSION_PASSWORD_NEEDED` and the login goes on at the usual password step.
pub async fn qr_login_of_a_two_step_account_asks_for_the_password(
    fixture: &impl ContractFixture,
) -> CheckResult {
    let (Some(phones), Some(controls)) = (fixture.login_phones(), fixture.controls()) else {
        return Ok(CheckOutcome::Skipped(
            "needs login phones and a phone to scan with",
        ));
    };
    let mut flow = LoginFlow::new(begin_login(fixture).await?);
    let clock = qr_clock(tokio::time::Instant::now());
    let url = match flow.start_qr(clock()).await {
        Ok(LoginState::AwaitingQrScan { url, .. }) => url.clone(),
        other => return Err(format!("starting a QR login gave {other:?}")),
    };
    controls
        .scan_login_qr(&phones.two_factor, &url)
        .map_err(|error| format!("scanning the token: {error}"))?;
    match follow_qr_past(&mut flow, &clock, &url).await? {
        LoginState::AwaitingPassword { hint, .. } if hint == phones.hint => {}
        other => return Err(format!("a scan by a 2FA account led to {other:?}")),
    }
    match flow.submit_password(&phones.password).await {
        Ok(LoginState::SignedIn(me)) if me.phone.as_ref() == Some(&phones.two_factor) => {
            Ok(CheckOutcome::Passed)
        }
        other => Err(format!("the password after a QR scan gave {other:?}")),
    }
}

async fn begin_login(
    fixture: &impl ContractFixture,
) -> Result<Box<dyn jobbot_core::telegram::LoginBackend>, String> {
    fixture
        .connector()
        .begin_login(&fixture.spare_session(), &ConnectOptions::default())
        .await
        .map_err(|error| format!("begin_login: {error}"))
}

/// Resolves like a careful client: spaced out, waiting out up to three flood waits.
async fn resolve_paced(
    fixture: &impl ContractFixture,
    account: &dyn TelegramAccount,
    username: &Username,
) -> Result<Peer, TelegramError> {
    let mut attempts = 0;
    loop {
        sleep(fixture.pacing().resolve).await;
        match account.resolve_username(username).await {
            Err(TelegramError::FloodWait { seconds }) if attempts < 3 => {
                attempts += 1;
                sleep(Duration::from_secs(u64::from(seconds))).await;
            }
            other => return other,
        }
    }
}

/// Sends like a careful client: spaced out, waiting out up to three flood waits.
async fn send_paced(
    fixture: &impl ContractFixture,
    account: &dyn TelegramAccount,
    to: PeerRef,
    body: &str,
    random_id: RandomId,
) -> Result<SentMessage, TelegramError> {
    let mut attempts = 0;
    loop {
        sleep(fixture.pacing().send).await;
        match account.send_direct(to, &text(body), random_id).await {
            Err(TelegramError::FloodWait { seconds }) if attempts < 3 => {
                attempts += 1;
                sleep(Duration::from_secs(u64::from(seconds))).await;
            }
            other => return other,
        }
    }
}

/// Turns a port error into a check failure that says which step failed.
fn failed(step: &'static str) -> impl Fn(TelegramError) -> String {
    move |error| format!("{step}: {error:?}")
}

async fn next_event(events: &mut mpsc::Receiver<AccountEvent>) -> Result<AccountEvent, String> {
    match timeout(EVENT_DEADLINE, events.recv()).await {
        Ok(Some(event)) => Ok(event),
        Ok(None) => Err("the event stream ended".into()),
        Err(_) => Err(format!("no event within {EVENT_DEADLINE:?}")),
    }
}

/// The next checkpoint, skipping other events.
async fn next_checkpoint(events: &mut mpsc::Receiver<AccountEvent>) -> Result<Checkpoint, String> {
    loop {
        if let AccountEvent::Checkpoint(checkpoint) = next_event(events).await? {
            return Ok(checkpoint);
        }
    }
}

/// The next new message matching `wanted`, skipping other events.
async fn next_message(
    events: &mut mpsc::Receiver<AccountEvent>,
    wanted: impl Fn(&IncomingMessage) -> bool,
) -> Result<IncomingMessage, String> {
    let search = async {
        while let Some(event) = events.recv().await {
            if let AccountEvent::NewMessage(message) = event
                && wanted(&message)
            {
                return Ok(message);
            }
        }
        Err("the event stream ended".to_owned())
    };
    timeout(EVENT_DEADLINE, search)
        .await
        .map_err(|_| format!("no matching message within {EVENT_DEADLINE:?}"))?
}
