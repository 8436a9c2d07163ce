//! The simulated Telegram: users, bots, channels, forum groups, sessions and their connections,
//! behind one `std::sync::Mutex`. The lock is never held across an `.await`: every call takes it,
//! decides, records and delivers, and releases it before any sleep.
//!
//! Collections are `BTreeMap`s so iteration (and therefore event delivery order) does not depend
//! on a per-process hash seed: the same `SimParams::seed` and the same calls give the same world.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{
    AccountEvent, DeadReason, IncomingMessage, Me, Peer, PeerKind, PeerRef, Sender, SentMessage,
    TelegramError, TopicId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use crate::history::ConnectionHistory;
use crate::limits::{ColdDmLimit, FloodBucket};
use crate::params::{AccountLimitDraw, RateLimitParams, SimParams};
use crate::updates::{StreamPosition, UpdateLog};

/// The whole simulated Telegram. Cheap to clone; all clones are the same world.
#[derive(Clone)]
pub struct SimWorld {
    state: Arc<Mutex<WorldState>>,
}

/// A user to create, built with chained calls: `NewUser::named("Ivan").username("ivan_hr")`.
/// Serialisable for the simulator's admin interface (a username or phone that does not parse is
/// refused when it is read). Not `Debug`: it may hold a 2FA password.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub(crate) first_name: String,
    last_name: Option<String>,
    pub(crate) username: Option<Username>,
    pub(crate) phone: Option<PhoneNumber>,
    refuses_strangers: bool,
    refuses_voice_messages: bool,
    refuses_group_invites: bool,
    two_factor: Option<TwoFactor>,
}

/// A chat-administration call, for [`SimWorld::fail_next_chat_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatCall {
    /// `channels.createChannel` of this kind.
    Create(jobbot_core::telegram::NewChatKind),
    /// `messages.exportChatInvite`.
    ExportInvite,
    /// `messages.editChatDefaultBannedRights`.
    DefaultRights,
    /// `channels.inviteToChannel`.
    Invite,
    /// `channels.deleteChannel`.
    Delete,
    /// `messages.importChatInvite` or `channels.joinChannel`.
    Join,
    /// `users.getUsers` with `inputUserFromMessage`: a group message's author found through the
    /// message (`resolve_message_author`).
    FindAuthor,
}

/// What a chat post is besides its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Post {
    Text,
    /// A file (by its id in the world) with the text as its caption.
    File(i64),
    /// A service message (topic created, …).
    Service,
}

/// A message as the world stores it: for tests and the demo to inspect what really arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The chat as the box's owner sees it: the other user for a private message, else the chat.
    pub chat: ChatId,
    pub message_id: i32,
    /// Who the message is from as Telegram shows it (a broadcast channel's posts are from the
    /// channel itself).
    pub sender: Option<ChatId>,
    /// The user who actually sent it, where one did (the admin behind a channel post).
    pub author: Option<ChatId>,
    pub text: String,
    /// The file sent with it (its id in the world; see [`SimWorld::file`]), the text being its
    /// caption.
    #[serde(default)]
    pub file: Option<i64>,
    pub topic: Option<TopicId>,
    pub date: i64,
    pub is_service: bool,
    pub edited: bool,
}

/// What happened to one account, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountCounters {
    pub calls: u64,
    /// Messages the account created: `messages.sendMessage` calls and the service messages of
    /// the forum topics it created (`topics_created`, limited apart).
    pub messages_sent: u64,
    /// Forum topics the account created (each is a message too, counted in `messages_sent`).
    pub topics_created: u64,
    pub send_flood_waits: u64,
    /// FloodWaits that started a new wait on any method (violations), as opposed to answers
    /// repeating a wait already running.
    pub flood_violations: u64,
    pub resolve_flood_waits: u64,
    pub other_flood_waits: u64,
    pub peer_floods: u64,
    pub privacy_refusals: u64,
    pub cold_chats_started: u64,
    pub resolves: u64,
    pub deduplicated_sends: u64,
    pub events_delivered: u64,
    pub events_dropped: u64,
    /// Calls naming a chat this session had not seen, which looked for it (dialogs, username)
    /// before posting or failing (see `peers`).
    pub peer_fallbacks: u64,
    /// Channel catch-ups that got a flood wait and waited it out (see `updates`).
    pub catch_up_flood_waits: u64,
    /// Channel gaps filled from the channel's history (`channelDifferenceTooLong`).
    pub history_fills: u64,
    /// `messages.getHistory` calls those fills made.
    pub history_calls: u64,
}

impl AccountCounters {
    pub fn flood_waits(&self) -> u64 {
        self.send_flood_waits + self.resolve_flood_waits + self.other_flood_waits
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct TwoFactor {
    pub(crate) password: String,
    pub(crate) hint: Option<String>,
}

pub(crate) type ConnectionId = u64;

// Saved by `persist` (serde). A field added here needs `#[serde(default)]` so older state files
// still load; one that cannot outlive the process is `#[serde(skip)]`.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorldState {
    pub(crate) params: SimParams,
    /// Reseeded from the saved seed on loading (see `persist`).
    #[serde(skip, default = "unseeded")]
    pub(crate) rng: StdRng,
    /// Restored from the saved age of the world on loading.
    #[serde(skip, default = "Instant::now")]
    pub(crate) started_at: Instant,
    access_hash_salt: u64,
    next_user_id: i64,
    next_channel_id: i64,
    next_handle_id: u64,
    pub(crate) users: BTreeMap<ChatId, UserRecord>,
    pub(crate) chats: BTreeMap<ChatId, ChatRecord>,
    pub(crate) usernames: BTreeMap<Username, ChatId>,
    pub(crate) phones: BTreeMap<PhoneNumber, ChatId>,
    pub(crate) banned_phones: BTreeSet<PhoneNumber>,
    pub(crate) invalid_phones: BTreeSet<PhoneNumber>,
    pub(crate) login_codes: BTreeMap<PhoneNumber, IssuedCode>,
    pub(crate) login_attempts: BTreeMap<PhoneNumber, LoginAttempts>,
    /// QR-login tokens not yet used, by token. Short-lived: they die with the process.
    #[serde(skip)]
    pub(crate) login_tokens: BTreeMap<Vec<u8>, IssuedLoginToken>,
    pub(crate) sessions: BTreeMap<SessionName, SessionRecord>,
    /// Live connections die with the process.
    #[serde(skip)]
    pub(crate) connections: BTreeMap<ConnectionId, ConnectionRecord>,
    pub(crate) invites: BTreeMap<String, InviteRecord>,
    /// `(writer, recipient)`: the writer has sent the recipient a private message. Decides who
    /// "wrote first" (telegram.org/faq_spam) and who already has a chat.
    pub(crate) wrote_to: BTreeSet<(ChatId, ChatId)>,
    /// Every connection ever opened (see `history`).
    #[serde(default)]
    pub(crate) history: ConnectionHistory,
    /// The last checkpoint handed out, over every connection.
    #[serde(default)]
    pub(crate) next_checkpoint: u64,
    /// Every file uploaded, by id (see `media`).
    #[serde(default)]
    pub(crate) files: BTreeMap<i64, crate::media::SimFile>,
}

fn unseeded() -> StdRng {
    StdRng::seed_from_u64(0)
}

#[derive(Serialize, Deserialize)]
pub(crate) struct UserRecord {
    pub(crate) first_name: String,
    pub(crate) last_name: Option<String>,
    pub(crate) username: Option<Username>,
    pub(crate) phone: Option<PhoneNumber>,
    pub(crate) is_bot: bool,
    /// "Who can send me messages: my contacts" (core.telegram.org/api/privacy,
    /// `new_noncontact_peers_require_premium`; refused with `PRIVACY_PREMIUM_REQUIRED` /
    /// `USER_PRIVACY_RESTRICTED`).
    pub(crate) refuses_strangers: bool,
    /// "Who can send me voice and video messages: nobody" (core.telegram.org/api/privacy,
    /// `inputPrivacyKeyVoiceMessages`): refused with `VOICE_MESSAGES_FORBIDDEN`.
    #[serde(default)]
    pub(crate) refuses_voice_messages: bool,
    /// "Who can add me to groups and channels: my contacts" (core.telegram.org/api/privacy,
    /// `inputPrivacyKeyChatInvite`): `channels.inviteToChannel` from someone not in this user's
    /// contacts leaves them out (`missing_invitees`); they can still join by an invite link.
    #[serde(default)]
    pub(crate) refuses_group_invites: bool,
    pub(crate) two_factor: Option<TwoFactor>,
    /// Banned, deactivated or frozen: applies to every session of the account.
    pub(crate) dead: Option<DeadReason>,
    /// People whose number this user saved.
    pub(crate) contacts: BTreeSet<ChatId>,
    /// Private messages in and out. Telegram numbers them per user, not per chat, so the same
    /// message has a different id in the sender's and the recipient's box.
    pub(crate) private_box: Vec<MessageRecord>,
    next_private_message_id: i32,
    pub(crate) limits: AccountLimits,
    pub(crate) counters: AccountCounters,
    /// Every update to this account with its position, for catch-up.
    #[serde(default)]
    pub(crate) updates: UpdateLog,
    /// This account's own daily budget of chats with strangers, when it differs from the world's
    /// (`SimParams::cold_dm_daily_budget`): Telegram's limits vary per account (age, reports,
    /// number type — telegram.org/faq_spam), so a demo or test can give one account less.
    pub(crate) cold_dm_budget: Option<u32>,
    /// This account's own `messages.sendMessage` limit, when drawn (see
    /// [`crate::params::AccountLimitSpread`]); `None`: the world's `SimParams::send_messages`.
    #[serde(default)]
    pub(crate) send_limit: Option<RateLimitParams>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct AccountLimits {
    pub(crate) send: FloodBucket,
    pub(crate) resolve: FloodBucket,
    pub(crate) create_topic: FloodBucket,
    pub(crate) join: FloodBucket,
    pub(crate) create_channel: FloodBucket,
    pub(crate) invite: FloodBucket,
    pub(crate) cold_dm: ColdDmLimit,
    /// MTProto deduplicates sends by `random_id` per account (updateMessageID, "random ID
    /// deduplication").
    pub(crate) by_random_id: BTreeMap<i64, Deduplicated>,
    /// Sends being processed now, by `random_id`: a repeat meanwhile is `RANDOM_ID_DUPLICATE`.
    /// A call in progress dies with the process, so it is never saved.
    #[serde(skip)]
    pub(crate) in_progress: BTreeSet<i64>,
    /// Answers for this account's next sends, in order, before any other check (see
    /// [`SimWorld::fail_next_sends`]).
    pub(crate) injected: VecDeque<TelegramError>,
    /// Answers for this account's next chat-administration calls of a kind (see
    /// [`SimWorld::fail_next_chat_call`]).
    pub(crate) injected_chat_calls: Vec<(ChatCall, TelegramError)>,
    /// A flood wait (seconds) the next `updates.getChannelDifference` of a channel answers (see
    /// [`SimWorld::flood_channel_catch_up`]).
    pub(crate) catch_up_floods: BTreeMap<ChatId, u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Destination {
    Direct(ChatId),
    Chat(ChatId),
    Topic(ChatId, TopicId),
    NewTopic(ChatId),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Deduplicated {
    pub(crate) destination: Destination,
    pub(crate) sent: SentMessage,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ChatRecord {
    pub(crate) id: ChatId,
    pub(crate) title: String,
    pub(crate) username: Option<Username>,
    /// A broadcast channel (only admins post) rather than a supergroup.
    pub(crate) broadcast: bool,
    pub(crate) forum: bool,
    /// Who created it: the only account that may delete it (`channels.deleteChannel`).
    #[serde(default)]
    pub(crate) creator: Option<ChatId>,
    /// The default banned rights leave `manage_topics`: every member may create topics
    /// (otherwise only admins).
    #[serde(default)]
    pub(crate) members_create_topics: bool,
    pub(crate) admins: BTreeSet<ChatId>,
    pub(crate) members: BTreeSet<ChatId>,
    pub(crate) messages: Vec<MessageRecord>,
    next_message_id: i32,
    pub(crate) topics: BTreeMap<TopicId, TopicRecord>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct TopicRecord {
    pub(crate) deleted: bool,
    #[serde(default)]
    pub(crate) title: String,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub(crate) user: Option<ChatId>,
    /// Revoked, logged out elsewhere, or burnt by `AUTH_KEY_DUPLICATED`: this key only.
    pub(crate) dead: Option<DeadReason>,
    /// The exclusive session lock jobbot takes before connecting (one owner per session). Held
    /// by a live holder only, so never saved.
    #[serde(skip)]
    pub(crate) lock: Option<ConnectionId>,
    /// Connections using this session's key right now; more than one is `AUTH_KEY_DUPLICATED`.
    #[serde(skip)]
    pub(crate) live_connections: BTreeSet<ConnectionId>,
    /// The update position saved in the session (the last committed checkpoint's), where the
    /// next connection catches up from. `None` until the session first connects.
    #[serde(default)]
    pub(crate) saved_position: Option<u64>,
    /// The session file's peer cache: the users and chats this session has seen in full, the
    /// only ones it can address (see `peers`). A new login starts it again. `None` in a state
    /// saved before the simulator kept it: such a session is taken to know every peer, so a
    /// saved world keeps working as it did.
    #[serde(default)]
    pub(crate) known_peers: Option<BTreeSet<ChatId>>,
    /// The session's username cache, kept with it as the adapter keeps it in the session file:
    /// a fresh hit costs no `contacts.resolveUsername`. Like a real cache it can be stale until it
    /// ages out: a username that changed hands still points at the old peer.
    #[serde(default)]
    pub(crate) usernames: jobbot_core::peer_cache::UsernameCache,
    /// Per channel, the last message up to the saved position: where filling a too-long gap
    /// from the channel's history starts (see `updates`).
    #[serde(default)]
    pub(crate) channel_marks: BTreeMap<ChatId, i32>,
}

pub(crate) struct ConnectionRecord {
    pub(crate) session: SessionName,
    pub(crate) user: ChatId,
    pub(crate) events: mpsc::Sender<AccountEvent>,
    down: bool,
    pub(crate) position: StreamPosition,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct InviteRecord {
    pub(crate) chat: ChatId,
    pub(crate) revoked: bool,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct IssuedCode {
    pub(crate) code: String,
    #[serde(with = "crate::persist::instant")]
    pub(crate) issued_at: Instant,
}

/// A token `auth.exportLoginToken` gave a session that is logging in.
pub(crate) struct IssuedLoginToken {
    pub(crate) session: SessionName,
    pub(crate) issued_at: Instant,
    /// The user whose phone accepted it (`auth.acceptLoginToken`).
    pub(crate) accepted_by: Option<ChatId>,
    /// Woken when it is accepted: the exporting session's `updateLoginToken`.
    pub(crate) accepted: Arc<tokio::sync::Notify>,
}

#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct LoginAttempts {
    #[serde(with = "crate::persist::instants")]
    pub(crate) codes_requested: Vec<Instant>,
    pub(crate) wrong_attempts: u32,
    #[serde(with = "crate::persist::option_instant")]
    pub(crate) blocked_until: Option<Instant>,
}

impl NewUser {
    pub fn named(first_name: &str) -> Self {
        Self {
            first_name: first_name.to_owned(),
            ..Self::default()
        }
    }

    pub fn last_name(mut self, last_name: &str) -> Self {
        self.last_name = Some(last_name.to_owned());
        self
    }

    /// Panics on an invalid username: this is test set-up.
    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(Username::parse(username).expect("test username"));
        self
    }

    /// Panics on an invalid phone number: this is test set-up.
    pub fn phone(mut self, phone: &str) -> Self {
        self.phone = Some(PhoneNumber::parse(phone).expect("test phone number"));
        self
    }

    /// Only contacts (and people this user wrote to) may message this user.
    pub fn refusing_strangers(mut self) -> Self {
        self.refuses_strangers = true;
        self
    }

    /// Lets only contacts add this user to groups and channels.
    pub fn refusing_group_invites(mut self) -> Self {
        self.refuses_group_invites = true;
        self
    }

    /// Refuses voice messages and video notes from everyone.
    pub fn refusing_voice_messages(mut self) -> Self {
        self.refuses_voice_messages = true;
        self
    }

    pub fn two_factor(mut self, password: &str, hint: Option<&str>) -> Self {
        self.two_factor = Some(TwoFactor {
            password: password.to_owned(),
            hint: hint.map(str::to_owned),
        });
        self
    }
}

impl SimWorld {
    /// A new, empty world. Its clock starts at the current `tokio::time::Instant`.
    pub fn new(params: SimParams) -> Self {
        let mut rng = StdRng::seed_from_u64(params.seed);
        let access_hash_salt = rng.random();
        let state = WorldState {
            params,
            rng,
            started_at: Instant::now(),
            access_hash_salt,
            next_user_id: 5_000_001,
            next_channel_id: 1_700_000_001,
            next_handle_id: 1,
            users: BTreeMap::new(),
            chats: BTreeMap::new(),
            usernames: BTreeMap::new(),
            phones: BTreeMap::new(),
            banned_phones: BTreeSet::new(),
            invalid_phones: BTreeSet::new(),
            login_codes: BTreeMap::new(),
            login_attempts: BTreeMap::new(),
            login_tokens: BTreeMap::new(),
            sessions: BTreeMap::new(),
            connections: BTreeMap::new(),
            invites: BTreeMap::new(),
            wrote_to: BTreeSet::new(),
            history: ConnectionHistory::default(),
            next_checkpoint: 0,
            files: BTreeMap::new(),
        };
        Self::from_state(state)
    }

    pub(crate) fn from_state(state: WorldState) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    pub fn params(&self) -> SimParams {
        self.with(|world| world.params.clone())
    }

    /// Runs `f` on the world under its lock. `f` must not block or await.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut WorldState) -> R) -> R {
        f(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, WorldState> {
        // A panic in a test thread must not turn every later call into a second, misleading panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The latency of one call, drawn from the seeded generator.
    pub(crate) fn call_latency(&self) -> Duration {
        self.with(|world| {
            let jitter = world.params.call_latency_jitter_ms;
            let extra = if jitter == 0 {
                0
            } else {
                world.rng.random_range(0..=jitter)
            };
            Duration::from_millis(world.params.call_latency_ms + extra)
        })
    }

    // ----- Creating the world -----

    pub fn create_user(&self, user: NewUser) -> ChatId {
        self.with(|world| world.insert_user(user, false))
    }

    /// A user with a logged-in session called `session` (as after `jobbot login`).
    pub fn create_account(&self, session: &str, user: NewUser) -> ChatId {
        let id = self.create_user(user);
        self.with(|world| {
            let Some(spread) = world.params.account_limits else {
                return;
            };
            // Seeded by the world's seed and the account, not by the shared generator, so an
            // account's limits do not depend on how many calls were jittered before it existed.
            let mut rng = StdRng::seed_from_u64(
                world.params.seed ^ (id.get() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let drawn = spread.draw(&world.params.send_messages, &mut rng);
            let record = world.user_mut(id);
            record.send_limit = Some(drawn.send_messages);
            record.cold_dm_budget = Some(drawn.cold_dm_daily_budget);
        });
        self.log_in_session(session, id);
        id
    }

    /// The limits `account` is held to: its own where drawn or set, else the world's.
    pub fn account_limits(&self, account: ChatId) -> AccountLimitDraw {
        self.with(|world| {
            let record = world.user(account);
            AccountLimitDraw {
                send_messages: record.send_limit.unwrap_or(world.params.send_messages),
                cold_dm_daily_budget: record
                    .cold_dm_budget
                    .unwrap_or(world.params.cold_dm_daily_budget),
            }
        })
    }

    /// Puts a fresh, logged-in key for `user` into the session `session`.
    pub fn log_in_session(&self, session: &str, user: ChatId) {
        let session = SessionName::parse(session).expect("test session name");
        self.with(|world| world.log_in(&session, user));
    }

    pub fn create_bot(&self, username: &str, name: &str) -> ChatId {
        self.with(|world| world.insert_user(NewUser::named(name).username(username), true))
    }

    /// A broadcast channel. Admins are members and may post.
    pub fn create_channel(&self, title: &str, username: Option<&str>, admins: &[ChatId]) -> ChatId {
        self.with(|world| world.insert_chat(title, username, true, false, admins))
    }

    /// A supergroup, a forum when `forum` is set (topics enabled).
    pub fn create_group(
        &self,
        title: &str,
        username: Option<&str>,
        forum: bool,
        admins: &[ChatId],
    ) -> ChatId {
        self.with(|world| world.insert_chat(title, username, false, forum, admins))
    }

    /// Adds `user` to the chat. The update that tells the account so carries the chat, so its
    /// sessions learn it (see `peers`).
    pub fn add_member(&self, chat: ChatId, user: ChatId) {
        self.with(|world| {
            world.user(user);
            world.chat_mut(chat).members.insert(user);
            world.learn(user, &[chat]);
        })
    }

    pub fn add_admin(&self, chat: ChatId, user: ChatId) {
        self.with(|world| {
            let record = world.chat_mut(chat);
            record.members.insert(user);
            record.admins.insert(user);
            world.learn(user, &[chat]);
        })
    }

    /// `owner` saves `contact`'s number. A user accepts messages from people in their contacts
    /// even when limited or private (telegram.org/faq_spam).
    pub fn add_contact(&self, owner: ChatId, contact: ChatId) {
        self.with(|world| {
            world.user(contact);
            world.user_mut(owner).contacts.insert(contact);
        })
    }

    /// Sets the latency of every later call (its jitter stays): a control for tests of what
    /// happens while calls are slow, after the accounts have connected quickly.
    pub fn set_call_latency(&self, latency: Duration) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.with(|world| world.params.call_latency_ms = millis)
    }

    /// Gives one account its own daily budget of chats with strangers (see
    /// [`SimParams::cold_dm_daily_budget`]); past it the account gets `PEER_FLOOD`.
    pub fn set_cold_dm_budget(&self, account: ChatId, budget: u32) {
        self.with(|world| world.user_mut(account).cold_dm_budget = Some(budget))
    }

    /// Gives `account` a flood wait of `seconds` on sending messages, starting now: its next
    /// sends get `FLOOD_WAIT_X` with the remaining time, as Telegram punishes an account after a
    /// burst it judged too fast. A control for tests and the demo (to show a flood wait on
    /// demand); the simulator's own limits still apply afterwards.
    pub fn impose_flood_wait(&self, account: ChatId, seconds: u32) {
        self.with(|world| {
            let until = Instant::now() + Duration::from_secs(u64::from(seconds));
            world.user_mut(account).limits.send.block_until(until);
        })
    }

    /// Makes the next `updates.getChannelDifference` of `channel` by `account` (at its next
    /// connection's catch-up) answer `FLOOD_WAIT_X` with `seconds`: that channel's catch-up then
    /// waits, the others do not (see `updates`).
    pub fn flood_channel_catch_up(&self, account: ChatId, channel: ChatId, seconds: u32) {
        self.with(|world| {
            world.chat(channel);
            world
                .user_mut(account)
                .limits
                .catch_up_floods
                .insert(channel, seconds);
        })
    }

    /// Empties a session's peer cache (its usernames stay), as for a session imported without
    /// its entities or a cache lost some other way: the session can address only what it sees
    /// again (see `peers`). Panics if there is no such session.
    pub fn forget_session_peers(&self, session: &SessionName) {
        self.with(|world| {
            world
                .sessions
                .get_mut(session)
                .unwrap_or_else(|| panic!("no session {session}"))
                .known_peers = Some(BTreeSet::new());
        })
    }

    /// Starts the deferred channel catch-ups of a new connection: each is released when its
    /// flood wait is over. Call it inside a tokio runtime.
    pub(crate) fn schedule_deferred(&self, connection: ConnectionId) {
        let deferred: Vec<(ChatId, Instant)> = self.with(|world| {
            world
                .connections
                .get(&connection)
                .map(|record| {
                    record
                        .position
                        .deferred
                        .iter()
                        .map(|(chat, deferred)| (*chat, deferred.until))
                        .collect()
                })
                .unwrap_or_default()
        });
        for (chat, until) in deferred {
            let world = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(until).await;
                world.with(|state| state.release_deferred(connection, chat));
            });
        }
    }

    /// Makes the account's next sends (the calls with a `random_id`: messages, posts, topics)
    /// fail with `errors`, one send each, in order, before the send does anything (replacing
    /// what was queued before; an empty list clears it). For the errors Telegram answers that the world has no rule of its own for
    /// (core.telegram.org/api/errors: 500 `INTERNAL` and -503 `Timeout` "may or may not have
    /// been executed" — here they are the "not executed" case —, 303 `*_MIGRATE`, 401
    /// `AUTH_KEY_INVALID`, paid messages, `YOU_BLOCKED_USER`, closed topics …), so tests can
    /// show what the engine does with each. An injected `AccountDead` kills the session's key
    /// like Telegram's 401s do: every later call fails the same way.
    pub fn fail_next_sends(
        &self,
        account: ChatId,
        errors: impl IntoIterator<Item = TelegramError>,
    ) {
        self.with(|world| world.user_mut(account).limits.injected = errors.into_iter().collect())
    }

    /// Makes the account's next chat-administration call of kind `call` fail with `error`
    /// before it does anything (each injection answers one call; several queue up in order): for
    /// tests of what a setup does when Telegram refuses one of its steps
    /// (core.telegram.org/api/errors; a 500 `INTERNAL` "may or may not have been executed" —
    /// here, not executed).
    pub fn fail_next_chat_call(&self, account: ChatId, call: ChatCall, error: TelegramError) {
        self.with(|world| {
            world
                .user_mut(account)
                .limits
                .injected_chat_calls
                .push((call, error))
        })
    }

    /// Whether the chat exists (a deleted one does not).
    pub fn chat_exists(&self, chat: ChatId) -> bool {
        self.with(|world| world.chats.contains_key(&chat))
    }

    /// The chats `creator` created that still exist, in id order.
    pub fn chats_created_by(&self, creator: ChatId) -> Vec<ChatId> {
        self.with(|world| {
            world
                .chats
                .values()
                .filter(|record| record.creator == Some(creator))
                .map(|record| record.id)
                .collect()
        })
    }

    /// Whether `user` is a member of `chat`.
    pub fn is_member(&self, chat: ChatId, user: ChatId) -> bool {
        self.with(|world| {
            world
                .chats
                .get(&chat)
                .is_some_and(|record| record.members.contains(&user))
        })
    }

    /// A new invite link hash for `chat` (the part after `t.me/+`).
    pub fn create_invite(&self, chat: ChatId) -> String {
        self.with(|world| world.new_invite(chat))
    }

    pub fn revoke_invite(&self, hash: &str) {
        self.with(|world| {
            if let Some(invite) = world.invites.get_mut(hash) {
                invite.revoked = true;
            }
        })
    }

    // ----- Making things happen -----

    /// The channel publishes a post (as a channel does: from the channel, no author shown).
    /// Every member account's stream gets it.
    pub fn channel_post(&self, channel: ChatId, text: &str) -> i32 {
        self.with(|world| {
            let now = Instant::now();
            world
                .post_in_chat(channel, None, None, text, Post::Text, now)
                .message_id
        })
    }

    /// `author` writes in a supergroup, into `topic` when given. Fails like Telegram would if the
    /// topic was deleted or the author is not a member.
    pub fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: &str,
    ) -> Result<i32, jobbot_core::telegram::TelegramError> {
        self.with(|world| {
            let now = Instant::now();
            world.check_may_post(author, group)?;
            if let Some(topic) = topic {
                world.check_topic_alive(group, topic)?;
            }
            Ok(world
                .post_in_chat(group, Some(author), topic, text, Post::Text, now)
                .message_id)
        })
    }

    /// `author` creates a forum topic (as an admin of `group`), returning its id.
    pub fn create_topic(&self, group: ChatId, author: ChatId, title: &str) -> TopicId {
        self.with(|world| world.insert_topic(group, Some(author), title, Instant::now()))
    }

    /// An admin deletes a forum topic and its history (`channels.deleteTopicHistory`).
    pub fn delete_topic(&self, group: ChatId, topic: TopicId) {
        self.with(|world| {
            let chat = world.chat_mut(group);
            if let Some(record) = chat.topics.get_mut(&topic) {
                record.deleted = true;
            }
            chat.messages
                .retain(|message| message.topic != Some(topic) && message.message_id != topic.0);
        })
    }

    /// `from` sends a private message to `to` (usually an account). Returns the message id in
    /// the recipient's box.
    pub fn send_direct(&self, from: ChatId, to: ChatId, text: &str) -> i32 {
        self.with(|world| {
            world
                .deliver_private(from, to, text, None, Instant::now())
                .1
        })
    }

    /// `from` sends a file with `caption` to `to` privately (see `media`: a file over the upload
    /// limit fails the way Telegram refuses it). Returns the message id in the recipient's box.
    pub fn send_direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: crate::media::SimMedia,
        caption: &str,
    ) -> Result<i32, jobbot_core::telegram::TelegramError> {
        self.with(|world| {
            let file = world.upload_file(media)?;
            Ok(world
                .deliver_private(from, to, caption, Some(file), Instant::now())
                .1)
        })
    }

    /// `author` posts a file with `caption` in a supergroup, into `topic` when given.
    pub fn group_post_media(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        media: crate::media::SimMedia,
        caption: &str,
    ) -> Result<i32, jobbot_core::telegram::TelegramError> {
        self.with(|world| {
            let now = Instant::now();
            world.check_may_post(author, group)?;
            if let Some(topic) = topic {
                world.check_topic_alive(group, topic)?;
            }
            let file = world.upload_file(media)?;
            Ok(world
                .post_in_chat(group, Some(author), topic, caption, Post::File(file), now)
                .message_id)
        })
    }

    /// A stored file, by the id a [`MessageRecord`] names.
    pub fn file(&self, id: i64) -> Option<crate::media::SimMedia> {
        self.with(|world| world.files.get(&id).map(|file| file.media.clone()))
    }

    /// Every reference to the file handed out so far expires (core.telegram.org/api/file_reference:
    /// references expire; the holder must fetch the message again).
    pub fn expire_file_references(&self, id: i64) {
        self.with(|world| world.expire_file_references(id));
    }

    /// A private message leaves `owner`'s box, as when its sender deletes it for both sides
    /// (`messages.deleteMessages` with `revoke`, core.telegram.org/method/messages.deleteMessages);
    /// fetched again it is `messageEmpty`. The port has no deletion event, so none is delivered.
    pub fn delete_private_message(&self, owner: ChatId, message_id: i32) {
        self.with(|world| {
            world
                .user_mut(owner)
                .private_box
                .retain(|message| message.message_id != message_id);
        });
    }

    /// Edits a chat message; members receive `MessageEdited`.
    pub fn edit_chat_message(&self, chat: ChatId, message_id: i32, text: &str) {
        self.with(|world| {
            let record = world.chat_mut(chat);
            let Some(message) = record
                .messages
                .iter_mut()
                .find(|message| message.message_id == message_id)
            else {
                panic!("chat {chat} has no message {message_id}");
            };
            message.text = text.to_owned();
            message.edited = true;
            let message = message.clone();
            let members: Vec<ChatId> = record.members.iter().copied().collect();
            for member in members {
                let incoming = world.chat_incoming(member, &message);
                world.deliver_event(member, AccountEvent::MessageEdited(incoming));
            }
        })
    }

    // ----- Ending accounts (core.telegram.org/api/errors, 401 and 406) -----

    /// `USER_DEACTIVATED_BAN` on every session; the phone number is banned for new logins
    /// (`PHONE_NUMBER_BANNED`) and the username disappears.
    pub fn ban(&self, user: ChatId) {
        self.with(|world| {
            world.kill_user(user, DeadReason::Banned);
            if let Some(phone) = world.user(user).phone.clone() {
                world.banned_phones.insert(phone);
            }
        })
    }

    /// A frozen account (`FROZEN_METHOD_INVALID`): every call of the port is refused. Real
    /// Telegram still allows a few read-only methods, none of which the port uses.
    pub fn freeze(&self, user: ChatId) {
        self.with(|world| world.kill_user(user, DeadReason::Frozen))
    }

    /// The person deleted the account (`USER_DEACTIVATED`): the number is free again, so a new
    /// login with it needs a sign-up.
    pub fn deactivate(&self, user: ChatId) {
        self.with(|world| {
            world.kill_user(user, DeadReason::Deactivated);
            if let Some(phone) = world.user(user).phone.clone() {
                world.phones.remove(&phone);
            }
        })
    }

    /// The session was terminated from another device (`SESSION_REVOKED`).
    pub fn revoke(&self, session: &SessionName) {
        self.with(|world| world.kill_session(session, DeadReason::Revoked))
    }

    /// The key was logged out elsewhere (`AUTH_KEY_UNREGISTERED`).
    pub fn unregister(&self, session: &SessionName) {
        self.with(|world| world.kill_session(session, DeadReason::Unregistered))
    }

    /// `auth.sendCode` answers `PHONE_NUMBER_BANNED` for this number.
    pub fn ban_phone(&self, phone: &PhoneNumber) {
        self.with(|world| world.banned_phones.insert(phone.clone()));
    }

    /// `auth.sendCode` answers `PHONE_NUMBER_INVALID` for this number.
    pub fn mark_phone_invalid(&self, phone: &PhoneNumber) {
        self.with(|world| world.invalid_phones.insert(phone.clone()));
    }

    /// Drops every live connection of `session`: its stream gets `ConnectionLost`, calls fail with
    /// `Network`, and after `reconnect_delay_ms` the stream gets `ConnectionRestored` followed by
    /// the updates missed meanwhile (what `updates.getDifference` returns after a reconnect).
    /// Call it inside a tokio runtime: the reconnect is a spawned task on tokio time.
    pub fn drop_connection(&self, session: &SessionName) {
        let dropped: Vec<ConnectionId> = self.with(|world| {
            let ids: Vec<ConnectionId> = world
                .connections
                .iter()
                .filter(|(_, connection)| &connection.session == session && !connection.down)
                .map(|(id, _)| *id)
                .collect();
            for id in &ids {
                let connection = world.connections.get_mut(id).expect("listed above");
                connection.down = true;
                let _ = connection.events.try_send(AccountEvent::ConnectionLost);
            }
            ids
        });
        if dropped.is_empty() {
            return;
        }
        let world = self.clone();
        let delay = Duration::from_millis(self.params().reconnect_delay_ms);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            world.with(|world| {
                for id in dropped {
                    let Some(connection) = world.connections.get_mut(&id) else {
                        continue;
                    };
                    connection.down = false;
                    let _ = connection.events.try_send(AccountEvent::ConnectionRestored);
                    let (user, delivered) = (connection.user, connection.position.delivered);
                    let missed: Vec<(u64, AccountEvent)> =
                        world.user(user).updates.after(delivered).cloned().collect();
                    for (pts, event) in missed {
                        world.send_event_on(id, user, pts, event);
                    }
                }
            });
        });
    }

    // ----- Inspecting -----

    /// The last login code sent to `phone` (what the person would read in their Telegram app).
    pub fn last_login_code(&self, phone: &PhoneNumber) -> Option<String> {
        self.with(|world| {
            world
                .login_codes
                .get(phone)
                .map(|issued| issued.code.clone())
        })
    }

    /// How many connections of `session` are open now (a logged-in session held by one owner has
    /// one; two would burn the key on Telegram).
    pub fn open_connections(&self, session: &SessionName) -> usize {
        self.with(|world| {
            world
                .sessions
                .get(session)
                .map_or(0, |record| record.live_connections.len())
        })
    }

    /// Every connection the world has had, in the order they opened (kept across restarts of a
    /// saved world).
    pub fn connection_history(&self) -> Vec<crate::history::ConnectionEntry> {
        self.with(|world| world.history.entries().to_vec())
    }

    /// How many connections opened while their session already had one open: each is a session
    /// used twice at once (0 unless a session was copied, see `duplicate_connect`).
    pub fn duplicate_connections(&self) -> u64 {
        self.with(|world| world.history.duplicates())
    }

    pub fn user_of_session(&self, session: &SessionName) -> Option<ChatId> {
        self.with(|world| world.sessions.get(session).and_then(|record| record.user))
    }

    pub fn find_username(&self, username: &str) -> Option<ChatId> {
        let username = Username::parse(username).ok()?;
        self.with(|world| world.usernames.get(&username).copied())
    }

    /// Every message in a channel or group, in order.
    pub fn chat_messages(&self, chat: ChatId) -> Vec<MessageRecord> {
        self.with(|world| world.chat(chat).messages.clone())
    }

    /// Every private message `user` sent or received, in order, with `user`'s own ids.
    pub fn private_messages(&self, user: ChatId) -> Vec<MessageRecord> {
        self.with(|world| world.user(user).private_box.clone())
    }

    /// The private messages `recipient` received from `sender`.
    pub fn received_from(&self, recipient: ChatId, sender: ChatId) -> Vec<MessageRecord> {
        self.private_messages(recipient)
            .into_iter()
            .filter(|message| message.chat == sender && message.sender == Some(sender))
            .collect()
    }

    pub fn counters(&self, user: ChatId) -> AccountCounters {
        self.with(|world| {
            let record = world.user(user);
            let limits = &record.limits;
            AccountCounters {
                flood_violations: limits.send.violations
                    + limits.resolve.violations
                    + limits.create_topic.violations
                    + limits.join.violations
                    + limits.create_channel.violations
                    + limits.invite.violations,
                ..record.counters
            }
        })
    }

    /// Whether `account` is currently limited from writing to strangers (`PEER_FLOOD`).
    pub fn is_peer_flooded(&self, account: ChatId) -> bool {
        self.with(|world| {
            world
                .user(account)
                .limits
                .cold_dm
                .is_limited(Instant::now())
        })
    }

    /// Simulated Unix time now.
    pub fn now_unix(&self) -> i64 {
        self.with(|world| world.unix_time(Instant::now()))
    }
}

impl WorldState {
    pub(crate) fn unix_time(&self, now: Instant) -> i64 {
        self.params.start_unix_time + now.duration_since(self.started_at).as_secs() as i64
    }

    pub(crate) fn unix_millis(&self, now: Instant) -> i64 {
        self.params.start_unix_time * 1_000 + now.duration_since(self.started_at).as_millis() as i64
    }

    pub(crate) fn next_handle(&mut self) -> ConnectionId {
        let id = self.next_handle_id;
        self.next_handle_id += 1;
        id
    }

    fn insert_user(&mut self, user: NewUser, is_bot: bool) -> ChatId {
        let id = ChatId::user(self.next_user_id).expect("positive");
        self.next_user_id += 1 + self.rng.random_range(0..1_000);
        if let Some(username) = &user.username {
            assert!(
                !self.usernames.contains_key(username),
                "username {username} is taken"
            );
            self.usernames.insert(username.clone(), id);
        }
        if let Some(phone) = &user.phone {
            assert!(!self.phones.contains_key(phone), "phone {phone} is taken");
            self.phones.insert(phone.clone(), id);
        }
        self.users.insert(
            id,
            UserRecord {
                first_name: user.first_name,
                last_name: user.last_name,
                username: user.username,
                phone: user.phone,
                is_bot,
                refuses_strangers: user.refuses_strangers,
                refuses_voice_messages: user.refuses_voice_messages,
                refuses_group_invites: user.refuses_group_invites,
                two_factor: user.two_factor,
                dead: None,
                contacts: BTreeSet::new(),
                private_box: Vec::new(),
                next_private_message_id: 1,
                limits: AccountLimits::default(),
                counters: AccountCounters::default(),
                updates: UpdateLog::default(),
                cold_dm_budget: None,
                send_limit: None,
            },
        );
        id
    }

    pub(crate) fn insert_chat(
        &mut self,
        title: &str,
        username: Option<&str>,
        broadcast: bool,
        forum: bool,
        admins: &[ChatId],
    ) -> ChatId {
        let id = ChatId::channel(self.next_channel_id).expect("in the Bot API range");
        self.next_channel_id += 1 + self.rng.random_range(0..1_000);
        let username = username.map(|name| Username::parse(name).expect("test username"));
        if let Some(username) = &username {
            assert!(
                !self.usernames.contains_key(username),
                "username {username} is taken"
            );
            self.usernames.insert(username.clone(), id);
        }
        for admin in admins {
            self.user(*admin);
        }
        self.chats.insert(
            id,
            ChatRecord {
                id,
                title: title.to_owned(),
                username,
                broadcast,
                forum,
                creator: admins.first().copied(),
                members_create_topics: false,
                admins: admins.iter().copied().collect(),
                members: admins.iter().copied().collect(),
                messages: Vec::new(),
                next_message_id: 1,
                topics: BTreeMap::new(),
            },
        );
        // The creator and the admins see the new chat in an update.
        for admin in admins {
            self.learn(*admin, &[id]);
        }
        id
    }

    /// A new invite link hash for `chat` (the part after `t.me/+`).
    pub(crate) fn new_invite(&mut self, chat: ChatId) -> String {
        self.chat(chat);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
        let hash: String = (0..16)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        self.invites.insert(
            hash.clone(),
            InviteRecord {
                chat,
                revoked: false,
            },
        );
        hash
    }

    pub(crate) fn log_in(&mut self, session: &SessionName, user: ChatId) {
        self.user(user);
        let record = self
            .sessions
            .entry(session.clone())
            .or_insert_with(SessionRecord::empty);
        record.user = Some(user);
        record.dead = None;
        // A new login starts from the account's current position, as grammers' sign-in does.
        record.saved_position = None;
        // A new session has an empty cache, then loads its newest dialogs.
        record.usernames = Default::default();
        record.channel_marks = Default::default();
        self.warm_up(session, user);
    }

    fn kill_user(&mut self, user: ChatId, reason: DeadReason) {
        let record = self.user_mut(user);
        record.dead = Some(reason);
        if matches!(reason, DeadReason::Banned | DeadReason::Deactivated)
            && let Some(username) = record.username.clone()
        {
            // A deleted or banned account's username is released ("Deleted Account").
            self.usernames.remove(&username);
        }
    }

    fn kill_session(&mut self, session: &SessionName, reason: DeadReason) {
        let record = self
            .sessions
            .get_mut(session)
            .unwrap_or_else(|| panic!("no session {session}"));
        record.dead = Some(reason);
    }

    pub(crate) fn user(&self, id: ChatId) -> &UserRecord {
        self.users
            .get(&id)
            .unwrap_or_else(|| panic!("{id} is not a user of this world"))
    }

    pub(crate) fn user_mut(&mut self, id: ChatId) -> &mut UserRecord {
        self.users
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{id} is not a user of this world"))
    }

    pub(crate) fn chat(&self, id: ChatId) -> &ChatRecord {
        self.chats
            .get(&id)
            .unwrap_or_else(|| panic!("{id} is not a chat of this world"))
    }

    pub(crate) fn chat_mut(&mut self, id: ChatId) -> &mut ChatRecord {
        self.chats
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{id} is not a chat of this world"))
    }

    /// The access hash `account` gets for `peer`: stable per pair, different for every account
    /// ("Access hashes may not be reused across different accounts", core.telegram.org/api/peers).
    pub(crate) fn access_hash(&self, account: ChatId, peer: ChatId) -> i64 {
        let mixed = self.access_hash_salt
            ^ (account.get() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (peer.get() as u64).rotate_left(29);
        split_mix(mixed) as i64
    }

    /// A peer as `viewer` sees it, or `None` when `id` is not in the world.
    pub(crate) fn peer_seen_by(&self, viewer: ChatId, id: ChatId) -> Option<Peer> {
        let peer = PeerRef {
            id,
            access_hash: self.access_hash(viewer, id),
        };
        if let Some(user) = self.users.get(&id) {
            return Some(Peer {
                peer,
                kind: if user.is_bot {
                    PeerKind::Bot
                } else {
                    PeerKind::User
                },
                username: user.username.clone(),
                name: user.first_name.clone(),
                last_name: user.last_name.clone(),
            });
        }
        let chat = self.chats.get(&id)?;
        Some(Peer {
            peer,
            kind: if chat.broadcast {
                PeerKind::Channel
            } else {
                PeerKind::Group
            },
            username: chat.username.clone(),
            name: chat.title.clone(),
            last_name: None,
        })
    }

    pub(crate) fn me_of(&self, user: ChatId) -> Me {
        let record = self.user(user);
        Me {
            user_id: user,
            username: record.username.clone(),
            first_name: record.first_name.clone(),
            last_name: record.last_name.clone(),
            phone: record.phone.clone(),
        }
    }

    /// The author of a message as `viewer` receives it: in a private chat the full user, with
    /// `viewer`'s access hash; in a group or channel a `min` user, without one
    /// (core.telegram.org/api/min).
    fn sender_of(&self, viewer: ChatId, id: ChatId, private: bool) -> Sender {
        let peer = self
            .peer_seen_by(viewer, id)
            .unwrap_or_else(|| panic!("{id} is not in this world"));
        Sender {
            id,
            kind: peer.kind,
            username: peer.username,
            first_name: peer.name,
            last_name: peer.last_name,
            peer: private.then_some(peer.peer),
        }
    }

    pub(crate) fn check_may_post(
        &self,
        author: ChatId,
        chat: ChatId,
    ) -> Result<(), jobbot_core::telegram::TelegramError> {
        use jobbot_core::telegram::TelegramError;
        let Some(record) = self.chats.get(&chat) else {
            return Err(TelegramError::ChatForbidden {
                code: "CHANNEL_INVALID".to_owned(),
            });
        };
        if !record.members.contains(&author) {
            // A private chat is invisible to non-members; a public one refuses the write.
            let code = if record.username.is_some() {
                "CHAT_WRITE_FORBIDDEN"
            } else {
                "CHANNEL_PRIVATE"
            };
            return Err(TelegramError::ChatForbidden {
                code: code.to_owned(),
            });
        }
        if record.broadcast && !record.admins.contains(&author) {
            return Err(TelegramError::ChatForbidden {
                code: "CHAT_ADMIN_REQUIRED".to_owned(),
            });
        }
        Ok(())
    }

    /// What `account` may do in `chat`, by the rules `check_may_post` and topic creation
    /// enforce. A private chat the account is not in is invisible (`CHANNEL_PRIVATE`, as
    /// `channels.getChannels` answers with `channelForbidden`); an id that is no chat is
    /// `CHANNEL_INVALID` (core.telegram.org/method/channels.getChannels).
    pub(crate) fn chat_access(
        &self,
        account: ChatId,
        chat: ChatId,
    ) -> Result<jobbot_core::telegram::ChatAccess, jobbot_core::telegram::TelegramError> {
        use jobbot_core::telegram::{ChatAccess, PeerKind, TelegramError};
        let Some(record) = self.chats.get(&chat) else {
            return Err(TelegramError::ChatForbidden {
                code: "CHANNEL_INVALID".to_owned(),
            });
        };
        let member = record.members.contains(&account);
        if !member && record.username.is_none() {
            return Err(TelegramError::ChatForbidden {
                code: "CHANNEL_PRIVATE".to_owned(),
            });
        }
        let admin = record.admins.contains(&account);
        Ok(ChatAccess {
            chat,
            kind: if record.broadcast {
                PeerKind::Channel
            } else {
                PeerKind::Group
            },
            title: record.title.clone(),
            public: record.username.is_some(),
            forum: record.forum,
            member,
            admin,
            can_post: self.check_may_post(account, chat).is_ok(),
            // Topic creation needs an admin unless the default rights allow it (see
            // `create_forum_topic`).
            can_create_topics: record.forum && member && (admin || record.members_create_topics),
        })
    }

    pub(crate) fn check_topic_alive(
        &self,
        group: ChatId,
        topic: TopicId,
    ) -> Result<(), jobbot_core::telegram::TelegramError> {
        use jobbot_core::telegram::TelegramError;
        let record = self.chat(group);
        if !record.forum {
            return Err(TelegramError::Other {
                message: "CHANNEL_FORUM_MISSING".to_owned(),
            });
        }
        match record.topics.get(&topic) {
            Some(topic) if !topic.deleted => Ok(()),
            // A deleted topic and an id that never was one both fail (TOPIC_DELETED /
            // MESSAGE_THREAD_INVALID); the port maps both to TopicDeleted.
            _ => Err(TelegramError::TopicDeleted),
        }
    }

    /// Stores a message in a chat and delivers it to every member's connections. Broadcast posts
    /// come from the channel; the author (if any) sees them as outgoing.
    pub(crate) fn post_in_chat(
        &mut self,
        chat: ChatId,
        author: Option<ChatId>,
        topic: Option<TopicId>,
        text: &str,
        post: Post,
        now: Instant,
    ) -> MessageRecord {
        let (file, is_service) = match post {
            Post::Text => (None, false),
            Post::File(file) => (Some(file), false),
            Post::Service => (None, true),
        };
        let date = self.unix_time(now);
        let record = self.chat_mut(chat);
        let message_id = record.next_message_id;
        record.next_message_id += 1;
        let sender = if record.broadcast { Some(chat) } else { author };
        let message = MessageRecord {
            chat,
            message_id,
            sender,
            author,
            text: text.to_owned(),
            file,
            topic,
            date,
            is_service,
            edited: false,
        };
        record.messages.push(message.clone());
        let members: Vec<ChatId> = record.members.iter().copied().collect();
        for member in members {
            let incoming = self.chat_incoming(member, &message);
            self.deliver_event(member, AccountEvent::NewMessage(incoming));
        }
        message
    }

    pub(crate) fn insert_topic(
        &mut self,
        group: ChatId,
        author: Option<ChatId>,
        title: &str,
        now: Instant,
    ) -> TopicId {
        assert!(self.chat(group).forum, "{group} is not a forum");
        // A topic's id is the id of its creation service message (core.telegram.org/api/forum).
        let topic = TopicId(self.chat(group).next_message_id);
        self.chat_mut(group).topics.insert(
            topic,
            TopicRecord {
                deleted: false,
                title: title.to_owned(),
            },
        );
        self.post_in_chat(
            group,
            author,
            Some(topic),
            &format!("Topic created: {title}"),
            Post::Service,
            now,
        );
        topic
    }

    pub(crate) fn chat_incoming(&self, viewer: ChatId, message: &MessageRecord) -> IncomingMessage {
        let chat = self.chat(message.chat);
        IncomingMessage {
            chat: chat.id,
            chat_kind: if chat.broadcast {
                PeerKind::Channel
            } else {
                PeerKind::Group
            },
            chat_title: Some(chat.title.clone()),
            chat_username: chat.username.clone(),
            message_id: message.message_id,
            sender: message
                .sender
                .map(|sender| self.sender_of(viewer, sender, false)),
            text: message.text.clone(),
            media: self.media_kind_of(message.file),
            file: message
                .file
                .and_then(|file| self.media_file_for(viewer, file))
                .map(Box::new),
            date: message.date,
            outgoing: message.author == Some(viewer),
            is_service: message.is_service,
            topic_id: message.topic,
        }
    }

    /// Stores a private message in both boxes (each with its own id) and delivers it to both
    /// sides' connections. Returns `(sender's id, recipient's id)`.
    pub(crate) fn deliver_private(
        &mut self,
        from: ChatId,
        to: ChatId,
        text: &str,
        file: Option<i64>,
        now: Instant,
    ) -> (i32, i32) {
        let date = self.unix_time(now);
        self.wrote_to.insert((from, to));
        let mut ids = [0; 2];
        for (index, (owner, other)) in [(from, to), (to, from)].into_iter().enumerate() {
            if index == 1 && from == to {
                ids[1] = ids[0];
                break;
            }
            let record = self.user_mut(owner);
            let message_id = record.next_private_message_id;
            record.next_private_message_id += 1;
            ids[index] = message_id;
            let message = MessageRecord {
                chat: other,
                message_id,
                sender: Some(from),
                author: Some(from),
                text: text.to_owned(),
                file,
                topic: None,
                date,
                is_service: false,
                edited: false,
            };
            record.private_box.push(message.clone());
            let incoming = IncomingMessage {
                chat: other,
                chat_kind: self.peer_seen_by(owner, other).expect("in the world").kind,
                chat_title: None,
                chat_username: self.user(other).username.clone(),
                message_id,
                sender: Some(self.sender_of(owner, from, true)),
                text: text.to_owned(),
                media: self.media_kind_of(file),
                file: file
                    .and_then(|file| self.media_file_for(owner, file))
                    .map(Box::new),
                date,
                outgoing: owner == from,
                is_service: false,
                topic_id: None,
            };
            self.deliver_event(owner, AccountEvent::NewMessage(incoming));
        }
        (ids[0], ids[1])
    }

    /// Logs an update to `user` and sends it to every live connection. A dropped connection gets
    /// it from the log when it is back; a connection of a dead session gets nothing (Telegram
    /// closes it).
    pub(crate) fn deliver_event(&mut self, user: ChatId, event: AccountEvent) {
        self.learn(user, &Self::peers_shown_by(&event));
        let limit = self.params.update_log_limit;
        let pts = self.user_mut(user).updates.append(event.clone(), limit);
        let targets: Vec<ConnectionId> = self
            .connections
            .iter()
            .filter(|(_, connection)| connection.user == user)
            .map(|(id, _)| *id)
            .collect();
        for id in targets {
            let session = &self.connections[&id].session;
            if self
                .sessions
                .get(session)
                .is_none_or(|record| record.dead.is_some())
                || self.user(user).dead.is_some()
            {
                continue;
            }
            if self.connections[&id].down {
                continue;
            }
            self.send_event_on(id, user, pts, event.clone());
        }
    }

    /// Puts update `pts` into a connection's stream. A full stream drops it (counted), as
    /// grammers drops updates past its channel's capacity; the position moves on either way.
    fn send_event_on(&mut self, id: ConnectionId, user: ChatId, pts: u64, event: AccountEvent) {
        if self.held_back(id, &event) {
            // Its channel's catch-up is waiting: it comes with it, in order.
            if let Some(connection) = self.connections.get_mut(&id) {
                connection.position.delivered = connection.position.delivered.max(pts);
            }
            return;
        }
        let delivered = match self.connections.get_mut(&id) {
            Some(connection) => {
                connection.position.delivered = connection.position.delivered.max(pts);
                connection.events.try_send(event).is_ok()
            }
            None => false,
        };
        let counters = &mut self.user_mut(user).counters;
        if delivered {
            counters.events_delivered += 1;
        } else {
            counters.events_dropped += 1;
        }
    }

    /// Opens a connection record `id` for `session` (already checked to be logged in, or opened
    /// on purpose without the lock by `duplicate_connect`).
    pub(crate) fn open_connection(
        &mut self,
        id: ConnectionId,
        session: &SessionName,
        user: ChatId,
    ) -> mpsc::Receiver<AccountEvent> {
        let (events, receiver) = mpsc::channel(self.params.event_buffer.max(1));
        let catch_up = self.catch_up(session, user, Instant::now());
        let delivered = catch_up.delivered;
        for event in catch_up.events {
            // The same capacity rule as live updates.
            if events.try_send(event).is_ok() {
                self.user_mut(user).counters.events_delivered += 1;
            } else {
                self.user_mut(user).counters.events_dropped += 1;
            }
        }
        self.connections.insert(
            id,
            ConnectionRecord {
                session: session.clone(),
                user,
                events,
                down: false,
                position: StreamPosition {
                    delivered,
                    deferred: catch_up.deferred,
                    ..StreamPosition::default()
                },
            },
        );
        let live = &mut self
            .sessions
            .get_mut(session)
            .expect("checked by the caller")
            .live_connections;
        let others = live.iter().copied().collect();
        live.insert(id);
        let now = self.unix_millis(Instant::now());
        self.history.opened(id, session, user, others, now);
        receiver
    }

    /// Closes a connection and releases the session lock if this connection held it. Dropping the
    /// event sender ends the owner's stream.
    pub(crate) fn close_connection(&mut self, id: ConnectionId) {
        let Some(connection) = self.connections.remove(&id) else {
            return;
        };
        let now = self.unix_millis(Instant::now());
        self.history.closed(id, now);
        if let Some(session) = self.sessions.get_mut(&connection.session) {
            session.live_connections.remove(&id);
            if session.lock == Some(id) {
                session.lock = None;
            }
        }
    }

    pub(crate) fn connection_is_down(&self, id: ConnectionId) -> Option<bool> {
        self.connections.get(&id).map(|connection| connection.down)
    }
}

/// SplitMix64's finaliser: a good bijective scramble for derived ids.
fn split_mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}
