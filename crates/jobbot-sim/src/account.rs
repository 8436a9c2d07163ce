//! One connection of one session to the simulated Telegram: the port's [`TelegramAccount`].
//!
//! Every call waits the simulated round trip first (on tokio time), then decides under the world
//! lock in Telegram's order: connection, account state, per-method flood limit, `random_id`
//! deduplication, then the call's own checks.

use std::sync::Mutex;

use async_trait::async_trait;
use jobbot_core::ids::{ChatId, Username};
use jobbot_core::telegram::{
    AccountEvent, ChatAccess, Checkpoint, DeadReason, JoinTarget, MAX_CHAT_ABOUT_UTF16, Me,
    MediaFile, MessageAuthor, MessageContent, NewChatKind, Peer, PeerKind, PeerRef, RandomId,
    SentMessage, TelegramAccount, TelegramError, TopicId,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::limits::FloodBucket;
use crate::world::{
    AccountLimits, ChatCall, ConnectionId, Deduplicated, Destination, Post, SimWorld, WorldState,
};

/// Longest message text in UTF-16 code units (`MESSAGE_TOO_LONG` past it): `message_length_max`
/// = 4096 (core.telegram.org/api/config), counted in UTF-16 units as MTProto counts text
/// (core.telegram.org/api/entities), so an emoji outside the BMP counts 2.
const MAX_MESSAGE_LENGTH: usize = jobbot_core::notification::MAX_MESSAGE_UTF16;
/// `CHANNELS_TOO_MUCH`: an account may be in at most 500 channels and supergroups
/// (core.telegram.org/api/config, `channels_limit_default`).
const MAX_CHANNELS_JOINED: usize = 500;

/// A live connection. Dropping it (or calling `disconnect`) closes the connection, ends its event
/// stream and releases the session lock.
pub struct SimAccount {
    world: SimWorld,
    connection: ConnectionId,
    events: Mutex<Option<mpsc::Receiver<AccountEvent>>>,
}

impl SimAccount {
    pub(crate) fn new(
        world: SimWorld,
        connection: ConnectionId,
        events: mpsc::Receiver<AccountEvent>,
    ) -> Self {
        Self {
            world,
            connection,
            events: Mutex::new(Some(events)),
        }
    }

    async fn call<R>(
        &self,
        operation: impl FnOnce(&mut WorldState, ChatId, Instant) -> Result<R, TelegramError>,
    ) -> Result<R, TelegramError> {
        tokio::time::sleep(self.world.call_latency()).await;
        let connection = self.connection;
        self.world.with(|world| {
            let now = Instant::now();
            let account = world.begin_call(connection, now)?;
            operation(world, account, now)
        })
    }
}

impl SimAccount {
    /// A chat-administration call: the checks of every call, then a failure injected by
    /// [`crate::SimWorld::fail_next_chat_call`], then the call's own rules.
    async fn chat_call<R>(
        &self,
        call: ChatCall,
        operation: impl FnOnce(&mut WorldState, ChatId, Instant) -> Result<R, TelegramError>,
    ) -> Result<R, TelegramError> {
        self.call(|world, account, now| {
            let injected = &mut world.user_mut(account).limits.injected_chat_calls;
            if let Some(index) = injected.iter().position(|(kind, _)| *kind == call) {
                return Err(injected.remove(index).1);
            }
            operation(world, account, now)
        })
        .await
    }

    /// A call that carries a `random_id`. Once sent, the request is Telegram's: it is processed
    /// over the round trip whatever becomes of the caller (a crash, a cancelled task), and while
    /// it is, another send with the same `random_id` from the same account is refused with
    /// `RANDOM_ID_DUPLICATE`; once it is done, a repeat returns the first message
    /// (core.telegram.org/api/updates, "random ID deduplication").
    async fn send_call<R: Send + 'static>(
        &self,
        random_id: RandomId,
        operation: impl FnOnce(&mut WorldState, ChatId, Instant) -> Result<R, TelegramError>
        + Send
        + 'static,
    ) -> Result<R, TelegramError> {
        let world = self.world.clone();
        let connection = self.connection;
        let latency = world.call_latency();
        let (reply, answer) = oneshot::channel();
        tokio::spawn(async move {
            let claim = world.with(|world| world.claim_random_id(connection, random_id));
            tokio::time::sleep(latency).await;
            let result = world.with(|world| {
                let now = Instant::now();
                let result = world
                    .begin_call(connection, now)
                    .and_then(|account| world.injected_failure(connection, account))
                    .and_then(|account| match claim {
                        RandomIdClaim::InProgress => Err(TelegramError::RandomIdDuplicate),
                        RandomIdClaim::Claimed(_) | RandomIdClaim::NoConnection => {
                            operation(world, account, now)
                        }
                    });
                if let RandomIdClaim::Claimed(account) = claim {
                    world.release_random_id(account, random_id);
                }
                result
            });
            let _ = reply.send(result);
        });
        answer.await.unwrap_or_else(|_| {
            Err(TelegramError::Network {
                message: "the call was dropped".to_owned(),
            })
        })
    }
}

/// Whether a send's `random_id` was free to work on.
#[derive(Clone, Copy)]
enum RandomIdClaim {
    Claimed(ChatId),
    /// The same account is already processing a send with this `random_id`.
    InProgress,
    /// The connection is gone; the call fails on its own checks.
    NoConnection,
}

impl Drop for SimAccount {
    fn drop(&mut self) {
        let connection = self.connection;
        self.world.with(|world| world.close_connection(connection));
    }
}

#[async_trait]
impl TelegramAccount for SimAccount {
    async fn get_me(&self) -> Result<Me, TelegramError> {
        self.call(|world, account, _| Ok(world.me_of(account)))
            .await
    }

    async fn resolve_username(&self, username: &Username) -> Result<Peer, TelegramError> {
        let connection = self.connection;
        self.call(|world, account, now| {
            let id = world.resolve_with_cache(connection, account, username, now)?;
            Ok(world
                .peer_seen_by(account, id)
                .expect("usernames point into the world"))
        })
        .await
    }

    async fn resolve_message_author(&self, author: &MessageAuthor) -> Result<Peer, TelegramError> {
        let connection = self.connection;
        self.chat_call(ChatCall::FindAuthor, |world, account, now| {
            world.resolve_message_author(connection, account, author, now)
        })
        .await
    }

    async fn send_direct(
        &self,
        to: PeerRef,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        let content = content.clone();
        let connection = self.connection;
        self.send_call(random_id, move |world, account, now| {
            world.take_send(account, now)?;
            let destination = Destination::Direct(to.id);
            if let Some(first) = world.deduplicate(account, random_id, destination)? {
                return Ok(first);
            }
            let peer = world.check_access_hash(connection, account, to)?;
            // The port's send_direct is for people. Real Telegram accepts a private message to a
            // bot (that is how /start works), so the grammers adapter must check the resolved
            // peer's kind before sending; the port contract, which the sim enforces, is NotAUser.
            if peer.kind != PeerKind::User {
                return Err(TelegramError::NotAUser);
            }
            if world
                .user(to.id)
                .dead
                .is_some_and(|reason| reason != DeadReason::Frozen)
            {
                return Err(TelegramError::RecipientDeactivated);
            }
            check_content(&content)?;
            let file = match &content.media {
                Some(media) => {
                    Some(world.check_media(account, media, &content.text, Some(to.id))?)
                }
                None => None,
            };
            world.check_may_write_privately(account, to.id, now)?;
            let (message_id, _) = world.deliver_private(account, to.id, &content.text, file, now);
            Ok(world.record_sent(
                account,
                random_id,
                destination,
                SentMessage {
                    chat: to.id,
                    message_id,
                },
            ))
        })
        .await
    }

    async fn send_typing(&self, to: PeerRef) -> Result<(), TelegramError> {
        let connection = self.connection;
        self.call(|world, account, _| world.check_access_hash(connection, account, to).map(|_| ()))
            .await
    }

    async fn post_to_chat(
        &self,
        chat: ChatId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        let content = content.clone();
        let connection = self.connection;
        self.send_call(random_id, move |world, account, now| {
            world.take_send(account, now)?;
            let destination = Destination::Chat(chat);
            if let Some(first) = world.deduplicate(account, random_id, destination)? {
                return Ok(first);
            }
            world.input_chat(connection, account, chat, now)?;
            world.check_may_post(account, chat)?;
            check_content(&content)?;
            let post = match &content.media {
                Some(media) => {
                    Post::File(world.check_media(account, media, &content.text, None)?)
                }
                None => Post::Text,
            };
            let message = world.post_in_chat(chat, Some(account), None, &content.text, post, now);
            Ok(world.record_sent(
                account,
                random_id,
                destination,
                SentMessage {
                    chat,
                    message_id: message.message_id,
                },
            ))
        })
        .await
    }

    async fn create_forum_topic(
        &self,
        group: ChatId,
        title: &str,
        random_id: RandomId,
    ) -> Result<TopicId, TelegramError> {
        let title = title.to_owned();
        let connection = self.connection;
        self.send_call(random_id, move |world, account, now| {
            world.take_create_topic(account, now)?;
            let destination = Destination::NewTopic(group);
            if let Some(first) = world.deduplicate(account, random_id, destination)? {
                return Ok(TopicId(first.message_id));
            }
            world.input_chat(connection, account, group, now)?;
            world.check_may_post(account, group)?;
            let record = world.chat(group);
            if !record.forum {
                return Err(TelegramError::Other {
                    message: "CHANNEL_FORUM_MISSING".to_owned(),
                });
            }
            // Creating topics needs the `manage_topics` admin right unless the group's default
            // rights allow it (core.telegram.org/api/forum); groups start with admins only.
            if !record.admins.contains(&account) && !record.members_create_topics {
                return Err(TelegramError::ChatForbidden {
                    code: "CHAT_ADMIN_REQUIRED".to_owned(),
                });
            }
            if title.trim().is_empty() {
                return Err(TelegramError::Other {
                    message: "TOPIC_TITLE_EMPTY".to_owned(),
                });
            }
            let topic = world.insert_topic(group, Some(account), &title, now);
            world.user_mut(account).counters.topics_created += 1;
            world.record_sent(
                account,
                random_id,
                destination,
                SentMessage {
                    chat: group,
                    message_id: topic.0,
                },
            );
            Ok(topic)
        })
        .await
    }

    async fn post_to_topic(
        &self,
        group: ChatId,
        topic: TopicId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        let content = content.clone();
        let connection = self.connection;
        self.send_call(random_id, move |world, account, now| {
            world.take_send(account, now)?;
            let destination = Destination::Topic(group, topic);
            if let Some(first) = world.deduplicate(account, random_id, destination)? {
                return Ok(first);
            }
            world.input_chat(connection, account, group, now)?;
            world.check_may_post(account, group)?;
            world.check_topic_alive(group, topic)?;
            check_content(&content)?;
            let post = match &content.media {
                Some(media) => {
                    Post::File(world.check_media(account, media, &content.text, None)?)
                }
                None => Post::Text,
            };
            let message =
                world.post_in_chat(group, Some(account), Some(topic), &content.text, post, now);
            Ok(world.record_sent(
                account,
                random_id,
                destination,
                SentMessage {
                    chat: group,
                    message_id: message.message_id,
                },
            ))
        })
        .await
    }

    async fn join_chat(&self, target: &JoinTarget) -> Result<Peer, TelegramError> {
        let connection = self.connection;
        self.chat_call(ChatCall::Join, |world, account, now| {
            let chat = match target {
                JoinTarget::InviteHash(hash) => match world.invites.get(hash) {
                    Some(invite) if !invite.revoked => invite.chat,
                    _ => return Err(TelegramError::InvalidInvite),
                },
                JoinTarget::Username(username) => {
                    // Joining by username resolves it first: the same punished call.
                    let id = world.resolve_with_cache(connection, account, username, now)?;
                    if !world.chats.contains_key(&id) {
                        return Err(TelegramError::ChatForbidden {
                            code: "CHANNEL_INVALID".to_owned(),
                        });
                    }
                    id
                }
            };
            if !world.chat(chat).members.contains(&account) {
                world.take_join(account, now)?;
                if world.chats_joined(account) >= MAX_CHANNELS_JOINED {
                    return Err(TelegramError::TooManyChannels);
                }
                world.chat_mut(chat).members.insert(account);
            }
            // The join's answer carries the chat.
            world.learn(account, &[chat]);
            // USER_ALREADY_PARTICIPANT is success for the port: joining is idempotent.
            Ok(world
                .peer_seen_by(account, chat)
                .expect("chat is in the world"))
        })
        .await
    }

    async fn refetch_file(
        &self,
        chat: ChatId,
        message_id: i32,
    ) -> Result<Option<MediaFile>, TelegramError> {
        self.call(move |world, account, _| world.refetch_file(account, chat, message_id))
            .await
    }

    async fn chat_access(&self, chat: ChatId) -> Result<ChatAccess, TelegramError> {
        self.call(|world, account, _| world.chat_access(account, chat))
            .await
    }

    async fn create_channel(
        &self,
        kind: NewChatKind,
        title: &str,
        about: &str,
    ) -> Result<Peer, TelegramError> {
        self.chat_call(ChatCall::Create(kind), |world, account, now| {
            // core.telegram.org/method/channels.createChannel: CHAT_TITLE_EMPTY,
            // CHAT_ABOUT_TOO_LONG, CHANNELS_TOO_MUCH; the flood limit first, as for every method.
            world.take_create_channel(account, now)?;
            if title.trim().is_empty() {
                return Err(TelegramError::Other {
                    message: "CHAT_TITLE_EMPTY".to_owned(),
                });
            }
            if about.encode_utf16().count() > MAX_CHAT_ABOUT_UTF16 {
                return Err(TelegramError::Other {
                    message: "CHAT_ABOUT_TOO_LONG".to_owned(),
                });
            }
            if world.chats_joined(account) >= MAX_CHANNELS_JOINED {
                return Err(TelegramError::TooManyChannels);
            }
            let (broadcast, forum) = match kind {
                NewChatKind::Broadcast => (true, false),
                NewChatKind::Forum => (false, true),
            };
            // The creator is the chat's first admin; the answer's update carries the chat.
            let chat = world.insert_chat(title, None, broadcast, forum, &[account]);
            Ok(world
                .peer_seen_by(account, chat)
                .expect("the chat was just created"))
        })
        .await
    }

    async fn export_invite_link(&self, chat: ChatId) -> Result<String, TelegramError> {
        let connection = self.connection;
        self.chat_call(ChatCall::ExportInvite, |world, account, now| {
            world.input_chat(connection, account, chat, now)?;
            world.check_admin(account, chat)?;
            Ok(format!("https://t.me/+{}", world.new_invite(chat)))
        })
        .await
    }

    async fn invite_to_channel(
        &self,
        chat: ChatId,
        users: &[PeerRef],
    ) -> Result<Vec<ChatId>, TelegramError> {
        let connection = self.connection;
        self.chat_call(ChatCall::Invite, |world, account, now| {
            world.take_invite(account, now)?;
            world.input_chat(connection, account, chat, now)?;
            world.check_admin(account, chat)?;
            // Each user by this session's own reference (core.telegram.org/api/peers).
            for user in users {
                world.check_access_hash(connection, account, *user)?;
                let record = world.user(user.id);
                if record.dead.is_some() {
                    return Err(TelegramError::RecipientDeactivated);
                }
                if record.is_bot {
                    return Err(TelegramError::NotAUser);
                }
            }
            let mut missing = Vec::new();
            for user in users {
                if world.chat(chat).members.contains(&user.id) {
                    continue;
                }
                let record = world.user(user.id);
                // "Who can add me to groups: my contacts" leaves the user out
                // (`messages.invitedUsers.missing_invitees`).
                if record.refuses_group_invites && !record.contacts.contains(&account) {
                    missing.push(user.id);
                    continue;
                }
                // USER_CHANNELS_TOO_MUCH: the user is in as many chats as an account may be.
                if world.chats_joined(user.id) >= MAX_CHANNELS_JOINED {
                    return Err(TelegramError::UserInTooManyChannels);
                }
                world.chat_mut(chat).members.insert(user.id);
                // The service message that shows the join carries the chat to the new member.
                world.learn(user.id, &[chat]);
            }
            Ok(missing)
        })
        .await
    }

    async fn allow_members_to_create_topics(&self, group: ChatId) -> Result<(), TelegramError> {
        let connection = self.connection;
        self.chat_call(ChatCall::DefaultRights, |world, account, now| {
            world.input_chat(connection, account, group, now)?;
            world.check_admin(account, group)?;
            let record = world.chat_mut(group);
            if !record.forum {
                return Err(TelegramError::Other {
                    message: "CHANNEL_FORUM_MISSING".to_owned(),
                });
            }
            record.members_create_topics = true;
            Ok(())
        })
        .await
    }

    async fn delete_channel(&self, chat: ChatId) -> Result<(), TelegramError> {
        let connection = self.connection;
        self.chat_call(ChatCall::Delete, |world, account, now| {
            world.input_chat(connection, account, chat, now)?;
            // Only the creator may delete a channel or supergroup
            // (core.telegram.org/method/channels.deleteChannel: CHAT_ADMIN_REQUIRED).
            let Some(record) = world.chats.get(&chat) else {
                return Err(TelegramError::ChatForbidden {
                    code: "CHANNEL_INVALID".to_owned(),
                });
            };
            if record.creator != Some(account) {
                return Err(TelegramError::ChatForbidden {
                    code: "CHAT_ADMIN_REQUIRED".to_owned(),
                });
            }
            world.remove_chat(chat);
            Ok(())
        })
        .await
    }

    fn take_events(&self) -> Option<mpsc::Receiver<AccountEvent>> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn request_checkpoint(&self) {
        let connection = self.connection;
        self.world
            .with(|world| world.request_checkpoint(connection));
    }

    async fn commit_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), TelegramError> {
        let connection = self.connection;
        self.world
            .with(|world| world.commit_checkpoint(connection, checkpoint));
        Ok(())
    }

    async fn disconnect(&self) {
        let connection = self.connection;
        self.world.with(|world| world.close_connection(connection));
    }
}

/// `MESSAGE_EMPTY`, `MESSAGE_TOO_LONG` and `ENTITY_BOUNDS_INVALID` (entity offsets count UTF-16
/// code units, core.telegram.org/api/entities).
fn check_content(content: &MessageContent) -> Result<(), TelegramError> {
    let other = |message: &str| {
        Err(TelegramError::Other {
            message: message.to_owned(),
        })
    };
    // A file may go without a caption (its length is checked with the file, see `media`).
    if content.text.trim().is_empty() && content.media.is_none() {
        return other("MESSAGE_EMPTY");
    }
    let utf16_length = content.text.encode_utf16().count() as u64;
    if utf16_length > MAX_MESSAGE_LENGTH as u64 {
        return Err(TelegramError::MessageTooLong);
    }
    let out_of_bounds = content.entities.iter().any(|entity| {
        entity.length == 0 || u64::from(entity.offset) + u64::from(entity.length) > utf16_length
    });
    if out_of_bounds {
        return other("ENTITY_BOUNDS_INVALID");
    }
    Ok(())
}

impl WorldState {
    /// The checks every call of a connection passes first, in the order a real client meets them.
    pub(crate) fn begin_call(
        &mut self,
        connection: ConnectionId,
        _now: Instant,
    ) -> Result<ChatId, TelegramError> {
        let Some(record) = self.connections.get(&connection) else {
            return Err(TelegramError::Network {
                message: "the connection is closed".to_owned(),
            });
        };
        if self.connection_is_down(connection) == Some(true) {
            return Err(TelegramError::Network {
                message: "connection lost; reconnecting".to_owned(),
            });
        }
        let account = record.user;
        let session_name = record.session.clone();
        if let Some(reason) = self.users.get(&account).and_then(|user| user.dead) {
            return Err(TelegramError::AccountDead { reason });
        }
        let session = self
            .sessions
            .get_mut(&session_name)
            .expect("a connection's session exists");
        if let Some(reason) = session.dead {
            return Err(TelegramError::AccountDead { reason });
        }
        // 406 AUTH_KEY_DUPLICATED: "an authorized session is sending requests in parallel from two
        // separate TCP connections … the session was already invalidated by the server"
        // (core.telegram.org/api/errors). The key is dead for good, for both connections.
        if session.live_connections.len() > 1 {
            session.dead = Some(DeadReason::AuthKeyDuplicated);
            return Err(TelegramError::AccountDead {
                reason: DeadReason::AuthKeyDuplicated,
            });
        }

        self.user_mut(account).counters.calls += 1;
        Ok(account)
    }

    /// The next failure queued by [`SimWorld::fail_next_sends`] for `account`, if any.
    fn injected_failure(
        &mut self,
        connection: ConnectionId,
        account: ChatId,
    ) -> Result<ChatId, TelegramError> {
        let Some(error) = self.user_mut(account).limits.injected.pop_front() else {
            return Ok(account);
        };
        if let TelegramError::AccountDead { reason } = error {
            let session = self.connections[&connection].session.clone();
            if let Some(session) = self.sessions.get_mut(&session) {
                session.dead = Some(reason);
            }
        }
        Err(error)
    }

    fn take_send(&mut self, account: ChatId, now: Instant) -> Result<(), TelegramError> {
        let params = self
            .user(account)
            .send_limit
            .unwrap_or(self.params.send_messages);
        let user = self.user_mut(account);
        user.limits.send.take(&params, now).map_err(|seconds| {
            user.counters.send_flood_waits += 1;
            TelegramError::FloodWait { seconds }
        })
    }

    /// A join of a chat the account is not in yet (see `SimParams::join_channel`).
    fn take_join(&mut self, account: ChatId, now: Instant) -> Result<(), TelegramError> {
        let params = self.params.join_channel;
        self.take_other(account, now, params, |limits| &mut limits.join)
    }

    /// `channels.createChannel` (see `SimParams::create_channel`).
    fn take_create_channel(&mut self, account: ChatId, now: Instant) -> Result<(), TelegramError> {
        let params = self.params.create_channel;
        self.take_other(account, now, params, |limits| &mut limits.create_channel)
    }

    /// `channels.inviteToChannel` (see `SimParams::invite_to_channel`).
    fn take_invite(&mut self, account: ChatId, now: Instant) -> Result<(), TelegramError> {
        let params = self.params.invite_to_channel;
        self.take_other(account, now, params, |limits| &mut limits.invite)
    }

    /// A call of a method other than sends and resolves from its own flood bucket.
    fn take_other(
        &mut self,
        account: ChatId,
        now: Instant,
        params: crate::params::RateLimitParams,
        bucket: fn(&mut AccountLimits) -> &mut FloodBucket,
    ) -> Result<(), TelegramError> {
        let user = self.user_mut(account);
        bucket(&mut user.limits)
            .take(&params, now)
            .map_err(|seconds| {
                user.counters.other_flood_waits += 1;
                TelegramError::FloodWait { seconds }
            })
    }

    /// How many channels and supergroups `account` is in (`CHANNELS_TOO_MUCH` at the limit).
    fn chats_joined(&self, account: ChatId) -> usize {
        self.chats
            .values()
            .filter(|record| record.members.contains(&account))
            .count()
    }

    /// Exporting an invite or inviting people needs an admin (`CHAT_ADMIN_REQUIRED`; our chats
    /// give members no `invite_users` right).
    fn check_admin(&self, account: ChatId, chat: ChatId) -> Result<(), TelegramError> {
        let Some(record) = self.chats.get(&chat) else {
            return Err(TelegramError::ChatForbidden {
                code: "CHANNEL_INVALID".to_owned(),
            });
        };
        if record.admins.contains(&account) {
            Ok(())
        } else {
            Err(TelegramError::ChatForbidden {
                code: "CHAT_ADMIN_REQUIRED".to_owned(),
            })
        }
    }

    /// A deleted chat is gone for everyone: its id is `CHANNEL_INVALID` from then on, its
    /// username free and its invite links dead.
    fn remove_chat(&mut self, chat: ChatId) {
        if let Some(record) = self.chats.remove(&chat)
            && let Some(username) = record.username
        {
            self.usernames.remove(&username);
        }
        self.invites.retain(|_, invite| invite.chat != chat);
    }

    fn take_create_topic(&mut self, account: ChatId, now: Instant) -> Result<(), TelegramError> {
        let params = self.params.create_forum_topic;
        self.take_other(account, now, params, |limits| &mut limits.create_topic)
    }

    /// Marks `random_id` as being processed for the connection's account (see
    /// [`SimAccount::send_call`]).
    fn claim_random_id(&mut self, connection: ConnectionId, random_id: RandomId) -> RandomIdClaim {
        let Some(account) = self.connections.get(&connection).map(|record| record.user) else {
            return RandomIdClaim::NoConnection;
        };
        if self
            .user_mut(account)
            .limits
            .in_progress
            .insert(random_id.0)
        {
            RandomIdClaim::Claimed(account)
        } else {
            RandomIdClaim::InProgress
        }
    }

    fn release_random_id(&mut self, account: ChatId, random_id: RandomId) {
        self.user_mut(account)
            .limits
            .in_progress
            .remove(&random_id.0);
    }

    /// A repeat of a `random_id` to the same place returns the first message; reusing it for
    /// another place is `RANDOM_ID_DUPLICATE` (core.telegram.org/method/messages.sendMessage).
    fn deduplicate(
        &mut self,
        account: ChatId,
        random_id: RandomId,
        destination: Destination,
    ) -> Result<Option<SentMessage>, TelegramError> {
        let user = self.user_mut(account);
        match user.limits.by_random_id.get(&random_id.0) {
            None => Ok(None),
            Some(first) if first.destination == destination => {
                user.counters.deduplicated_sends += 1;
                Ok(Some(first.sent))
            }
            Some(_) => Err(TelegramError::RandomIdDuplicate),
        }
    }

    fn record_sent(
        &mut self,
        account: ChatId,
        random_id: RandomId,
        destination: Destination,
        sent: SentMessage,
    ) -> SentMessage {
        let user = self.user_mut(account);
        user.limits
            .by_random_id
            .insert(random_id.0, Deduplicated { destination, sent });
        user.counters.messages_sent += 1;
        sent
    }

    /// Privacy and the spam limit for a private message from `account` to `recipient`.
    ///
    /// telegram.org/faq_spam: a limited account "can send messages to people who have their number
    /// saved as a contact" and "can also always reply to anyone who messages you first"; tdlib#797:
    /// `PEER_FLOOD` comes from writing to "too much non-mutual contacts". Only the start of a new
    /// chat with a stranger spends the daily budget; while limited, every message to a stranger
    /// is refused, including follow-ups to strangers written to before.
    fn check_may_write_privately(
        &mut self,
        account: ChatId,
        recipient: ChatId,
        now: Instant,
    ) -> Result<(), TelegramError> {
        let recipient_record = self.user(recipient);
        let known = account == recipient
            || recipient_record.contacts.contains(&account)
            || self.wrote_to.contains(&(recipient, account));
        if known {
            return Ok(());
        }
        if recipient_record.refuses_strangers {
            self.user_mut(account).counters.privacy_refusals += 1;
            return Err(TelegramError::PrivacyRestricted);
        }
        let already_wrote = self.wrote_to.contains(&(account, recipient));
        let budget = self
            .user(account)
            .cold_dm_budget
            .unwrap_or(self.params.cold_dm_daily_budget);
        let limit_hours = self.params.peer_flood_hours;
        let user = self.user_mut(account);
        let allowed = if user.limits.cold_dm.is_limited(now) {
            false
        } else if already_wrote {
            true
        } else {
            let started = user
                .limits
                .cold_dm
                .start_cold_chat(budget, limit_hours, now)
                .is_ok();
            if started {
                user.counters.cold_chats_started += 1;
            }
            started
        };
        if allowed {
            Ok(())
        } else {
            user.counters.peer_floods += 1;
            Err(TelegramError::PeerFlood)
        }
    }
}
