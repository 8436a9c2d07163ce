//! [`GrammersAccount`]: one connected, logged-in account behind the port.
//!
//! Sends use raw TL (`messages.sendMessage` and friends) so that the caller's `random_id` is the
//! one Telegram deduplicates by, and entities go out exactly as given. Responses still reach
//! grammers' update machinery: the sender feeds every `Updates` result into the updates channel.
//!
//! Not verified offline (needs real Telegram): the shape of answers to a repeated `random_id`,
//! forum-topic creation answers, and join results; they follow the layer-230 schema.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use grammers_client::peer::Peer as GrammersPeer;
use grammers_client::{Client, InvocationError, tl};
use grammers_mtsender::SenderPoolHandle;
use grammers_session::Session;
use grammers_session::types::{ChannelState, PeerId, PeerInfo, UpdatesState};
use grammers_session::updates::{MessageBox, State, UpdatesLike};
use jobbot_core::catch_up::{ChannelMarks, GapStep};
use jobbot_core::ids::{ChatId, ChatKind, SessionName, Username};
use jobbot_core::telegram::{
    AccountEvent, ChatAccess, Checkpoint, IncomingMessage, JoinTarget, Me, MediaFile,
    MessageAuthor, MessageContent, NewChatKind, Peer, PeerKind, PeerRef, RandomId, Sender,
    SentMessage, TelegramAccount, TelegramError, TopicId,
};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::connector::{Connection, get_me};
use crate::convert::{
    ChatInfo, chat_access_of, chat_id_of, chat_id_of_chat, chats_of, created_chat, file_of_message,
    incoming_message, input_peer, input_user, invite_link_of, message_author_in,
    message_author_request, message_id_for_random_id, missing_invitees_of, peer_from_chat,
    peer_from_user, peer_id_of, tl_entities,
};
use crate::errors::map_invocation_error;
use crate::session_store::SessionStore;
use crate::updates::{DifferenceSource, Holds, Receiver, starting_position};

/// After a gap fill failed for another reason than a flood wait, it is tried again at the
/// channel's first message after this many seconds.
const FILL_RETRY_SECS: u32 = 60;
/// A chat missing from the cache is looked for in the dialogs at most this often.
const DIALOG_RESCAN: Duration = Duration::from_secs(15 * 60);
/// `messages.getDialogs` answers at most 100 dialogs per call
/// (core.telegram.org/method/messages.getDialogs).
const DIALOG_PAGE: i32 = 100;
/// A bound on one scan, whatever Telegram answers.
const MAX_DIALOG_PAGES: usize = 100;

/// `updates.getChannelDifference` answers at most this many messages per call to a user account,
/// and this many to a bot (core.telegram.org/method/updates.getChannelDifference).
const USER_CHANNEL_DIFFERENCE_LIMIT: i32 = 100;
const BOT_CHANNEL_DIFFERENCE_LIMIT: i32 = 100_000;

/// Puts peers from a raw answer into the session's cache, as grammers does for its own
/// high-level calls: later posts, answers and update gaps need their access hashes.
async fn cache_peers_in(
    store: &SessionStore,
    session: &SessionName,
    users: &[tl::enums::User],
    chats: &[tl::enums::Chat],
) {
    let peers: Vec<PeerInfo> = users
        .iter()
        .map(PeerInfo::from)
        .chain(chats.iter().map(PeerInfo::from))
        .collect();
    if let Err(error) = store.cache_peers(peers).await {
        tracing::warn!(target: "telegram", %session, %error, "could not cache peers");
    }
}

/// Unix seconds now, for the username cache's age.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Where the next page of dialogs starts: the date and id of the oldest top message on this page
/// (`offset_date`, `offset_id` of messages.getDialogs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct DialogOffset {
    date: i32,
    id: i32,
}

impl DialogOffset {
    fn after(dialogs: &[tl::enums::Dialog], messages: &[tl::enums::Message]) -> Option<Self> {
        let (peer, top) = dialogs.iter().rev().find_map(|dialog| match dialog {
            tl::enums::Dialog::Dialog(dialog) => Some((dialog.peer.clone(), dialog.top_message)),
            _ => None,
        })?;
        let date = messages.iter().find_map(|message| match message {
            tl::enums::Message::Message(m) if m.id == top && m.peer_id == peer => Some(m.date),
            tl::enums::Message::Service(m) if m.id == top && m.peer_id == peer => Some(m.date),
            _ => None,
        })?;
        Some(Self { date, id: top })
    }
}

/// Events wait here for the owner task; when it lags, the update stream waits too (it is not
/// dropped), and grammers buffers behind it.
const EVENT_CHANNEL_CAPACITY: usize = 256;
/// Back-off between failed polls of the update stream, so an unreachable Telegram is not
/// hammered; reset by the first success.
const POLL_RETRY_FIRST: Duration = Duration::from_secs(1);
const POLL_RETRY_MAX: Duration = Duration::from_secs(60);

pub struct GrammersAccount {
    session: SessionName,
    client: Client,
    store: Arc<SessionStore>,
    handle: SenderPoolHandle,
    runner: Mutex<Option<JoinHandle<()>>>,
    updates: Mutex<Option<mpsc::Receiver<UpdatesLike>>>,
    event_task: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    /// Asks the event loop for a checkpoint (see [`Positions`]).
    checkpoint_requests: mpsc::UnboundedSender<()>,
    checkpoint_requests_rx: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
    positions: Arc<Positions>,
    /// When the dialogs were last scanned in full for a chat missing from the cache: a chat not
    /// found then is not looked for there again for [`DIALOG_RESCAN`] (`messages.getDialogs` is
    /// flood-limited, and a send retried against an unknown chat would repeat the scan).
    last_dialog_scan: Mutex<Option<tokio::time::Instant>>,
    disconnected: AtomicBool,
    /// The session's channels whose catch-up waits out a flood wait (kept by the connector
    /// across connections).
    holds: Holds,
}

impl GrammersAccount {
    pub(crate) fn new(session: SessionName, connection: Connection, holds: Holds) -> Self {
        let (checkpoint_requests, checkpoint_requests_rx) = mpsc::unbounded_channel();
        Self {
            session,
            client: connection.client,
            store: connection.store,
            handle: connection.handle,
            runner: Mutex::new(Some(connection.runner)),
            updates: Mutex::new(Some(connection.updates)),
            event_task: Mutex::new(None),
            checkpoint_requests,
            checkpoint_requests_rx: Mutex::new(Some(checkpoint_requests_rx)),
            positions: Arc::new(Positions::default()),
            last_dialog_scan: Mutex::new(None),
            disconnected: AtomicBool::new(false),
            holds,
        }
    }

    fn resolved_as_bot(&self, id: ChatId) -> bool {
        self.store.resolved_as_bot(id)
    }

    /// `contacts.resolveUsername`, whatever the cache holds; the answer is cached in the session
    /// (peers and the username, which the session file keeps).
    async fn resolve_uncached(&self, username: &Username) -> Result<Peer, TelegramError> {
        let request = tl::functions::contacts::ResolveUsername {
            username: username.as_str().to_owned(),
            referer: None,
        };
        let tl::enums::contacts::ResolvedPeer::Peer(resolved) = self.invoke(&request).await?;
        self.cache_peers(&resolved.users, &resolved.chats).await;
        let target = PeerId::from(&resolved.peer);
        let peer = match target.kind() {
            grammers_session::types::PeerKind::User => {
                resolved.users.iter().find_map(|user| match user {
                    tl::enums::User::User(user) if PeerId::user(user.id) == Some(target) => {
                        peer_from_user(user)
                    }
                    _ => None,
                })
            }
            _ => resolved
                .chats
                .iter()
                .filter(|chat| PeerInfo::from(*chat).id() == target)
                .find_map(peer_from_chat),
        }
        .ok_or(TelegramError::UsernameNotFound)?;
        if let Err(error) = self
            .store
            .remember_username(username, peer.clone(), unix_now())
            .await
        {
            tracing::warn!(target: "telegram", session = %self.session, %error, "could not save a resolved username");
        }
        Ok(peer)
    }

    async fn invoke<R: tl::RemoteCall>(&self, request: &R) -> Result<R::Return, TelegramError> {
        self.client
            .invoke(request)
            .await
            .map_err(|error| map_invocation_error(&error))
    }

    /// Puts peers from a raw answer into the session's cache, as grammers does for its own
    /// high-level calls: later `post_to_chat` and update gaps need their access hashes.
    async fn cache_peers(&self, users: &[tl::enums::User], chats: &[tl::enums::Chat]) {
        cache_peers_in(&self.store, &self.session, users, chats).await;
    }

    /// The input peer for a chat this account has seen. Basic groups need no access hash;
    /// channels and users need this account's, from the session cache.
    async fn input_peer_for_chat(
        &self,
        chat: ChatId,
    ) -> Result<tl::enums::InputPeer, TelegramError> {
        if chat.kind() == ChatKind::BasicGroup {
            return Ok(input_peer(PeerRef {
                id: chat,
                access_hash: 0,
            }));
        }
        if let Some(peer) = self.cached_peer(chat).await? {
            return Ok(peer);
        }
        // Not in the session's cache (a session older than the chat, more than the warm-up's
        // dialogs, an update that never came): look for it before failing, cheapest first.
        tracing::info!(target: "telegram", session = %self.session, %chat, "chat not in the session's cache; looking for it");
        if self.find_in_dialogs(chat).await?
            && let Some(peer) = self.cached_peer(chat).await?
        {
            return Ok(peer);
        }
        if chat.kind() == ChatKind::Channel
            && self.get_channel_without_hash(chat).await
            && let Some(peer) = self.cached_peer(chat).await?
        {
            return Ok(peer);
        }
        for username in self.store.usernames_of(chat) {
            match self.resolve_uncached(&username).await {
                Ok(peer) if peer.id() == chat => return Ok(input_peer(peer.peer)),
                Ok(_) | Err(TelegramError::UsernameNotFound) => {}
                Err(error) => return Err(error),
            }
        }
        Err(TelegramError::ChatForbidden {
            code: "CHAT_NOT_KNOWN_TO_ACCOUNT".into(),
        })
    }

    async fn cached_peer(
        &self,
        chat: ChatId,
    ) -> Result<Option<tl::enums::InputPeer>, TelegramError> {
        match self.store.peer_ref(peer_id_of(chat)).await {
            Ok(peer) => Ok(peer.map(Into::into)),
            Err(error) => Err(TelegramError::Other {
                message: error.to_string(),
            }),
        }
    }

    /// Pages through the dialogs (`messages.getDialogs`, caching every peer they show) until
    /// `chat` is among them. Raw calls rather than grammers' `iter_dialogs`, which also writes
    /// each channel's current `pts` into the session's update state: that would move the saved
    /// position past updates never delivered. At most one full scan per [`DIALOG_RESCAN`].
    async fn find_in_dialogs(&self, chat: ChatId) -> Result<bool, TelegramError> {
        let now = tokio::time::Instant::now();
        let recent = self
            .last_dialog_scan
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|last| now.duration_since(last) < DIALOG_RESCAN);
        if recent {
            return Ok(false);
        }
        let target = peer_id_of(chat);
        let mut offset = DialogOffset::default();
        for _ in 0..MAX_DIALOG_PAGES {
            let page = self
                .invoke(&tl::functions::messages::GetDialogs {
                    exclude_pinned: false,
                    folder_id: None,
                    offset_date: offset.date,
                    offset_id: offset.id,
                    offset_peer: tl::enums::InputPeer::Empty,
                    limit: DIALOG_PAGE,
                    hash: 0,
                })
                .await?;
            let (dialogs, messages, chats, users, last_page) = match page {
                tl::enums::messages::Dialogs::Dialogs(page) => {
                    (page.dialogs, page.messages, page.chats, page.users, true)
                }
                tl::enums::messages::Dialogs::Slice(page) => {
                    let last = page.dialogs.len() < DIALOG_PAGE as usize;
                    (page.dialogs, page.messages, page.chats, page.users, last)
                }
                tl::enums::messages::Dialogs::NotModified(_) => break,
            };
            self.cache_peers(&users, &chats).await;
            let found = dialogs.iter().any(|dialog| match dialog {
                tl::enums::Dialog::Dialog(dialog) => PeerId::from(&dialog.peer) == target,
                _ => false,
            });
            if found {
                return Ok(true);
            }
            match DialogOffset::after(&dialogs, &messages) {
                Some(next) if !last_page && next != offset => offset = next,
                _ => break,
            }
        }
        if let Ok(mut last) = self.last_dialog_scan.lock() {
            *last = Some(now);
        }
        Ok(false)
    }

    /// `channels.getChannels` with no access hash: answers only where Telegram grants "ambient"
    /// access (grammers' `PeerAuth::default`: bots, and channels the account may see without a
    /// hash); one call, so worth a try before resolving. Caches what it finds.
    async fn get_channel_without_hash(&self, chat: ChatId) -> bool {
        let request = tl::functions::channels::GetChannels {
            id: vec![
                tl::types::InputChannel {
                    channel_id: chat.bare(),
                    access_hash: 0,
                }
                .into(),
            ],
        };
        match self.client.invoke(&request).await {
            Ok(tl::enums::messages::Chats::Chats(found)) => {
                self.cache_peers(&[], &found.chats).await;
                true
            }
            Ok(tl::enums::messages::Chats::Slice(found)) => {
                self.cache_peers(&[], &found.chats).await;
                true
            }
            Err(_) => false,
        }
    }

    async fn send(
        &self,
        chat: ChatId,
        peer: tl::enums::InputPeer,
        content: &MessageContent,
        random_id: RandomId,
        topic: Option<TopicId>,
    ) -> Result<SentMessage, TelegramError> {
        let updates = match &content.media {
            Some(_) => {
                self.invoke(&send_media_request(peer, content, random_id, topic))
                    .await?
            }
            None => {
                self.invoke(&send_message_request(peer, content, random_id, topic))
                    .await?
            }
        };
        let message_id =
            message_id_for_random_id(&updates, random_id.0).ok_or(TelegramError::Other {
                message: "Telegram's answer did not name the sent message".into(),
            })?;
        Ok(SentMessage { chat, message_id })
    }

    async fn join_by_invite(&self, hash: &str) -> Result<Peer, TelegramError> {
        let joined = match self
            .client
            .invoke(&tl::functions::messages::ImportChatInvite {
                hash: hash.to_owned(),
            })
            .await
        {
            Ok(tl::enums::messages::ChatInviteJoinResult::Ok(result)) => Some(result.updates),
            Ok(tl::enums::messages::ChatInviteJoinResult::WebView(_)) => {
                return Err(TelegramError::Other {
                    message: "this invite asks for a bot's web view; join it in an official app"
                        .into(),
                });
            }
            Err(error) if error.is("USER_ALREADY_PARTICIPANT") => None,
            Err(error) => return Err(map_invocation_error(&error)),
        };
        let chat = match joined {
            Some(updates) => {
                self.cache_peers(&[], chats_of(&updates)).await;
                chats_of(&updates).iter().find_map(peer_from_chat)
            }
            None => match self
                .invoke(&tl::functions::messages::CheckChatInvite {
                    hash: hash.to_owned(),
                })
                .await?
            {
                tl::enums::ChatInvite::Already(already) => {
                    self.cache_peers(&[], std::slice::from_ref(&already.chat))
                        .await;
                    peer_from_chat(&already.chat)
                }
                tl::enums::ChatInvite::Peek(peek) => peer_from_chat(&peek.chat),
                tl::enums::ChatInvite::Invite(_) => None,
            },
        };
        chat.ok_or(TelegramError::Other {
            message: "Telegram's answer to the join did not name the chat".into(),
        })
    }

    /// The input channel for a channel or supergroup this account has seen (see
    /// [`Self::input_peer_for_chat`]); anything else is `CHANNEL_INVALID`.
    async fn input_channel(&self, chat: ChatId) -> Result<tl::enums::InputChannel, TelegramError> {
        match self.input_peer_for_chat(chat).await? {
            tl::enums::InputPeer::Channel(channel) => Ok(tl::types::InputChannel {
                channel_id: channel.channel_id,
                access_hash: channel.access_hash,
            }
            .into()),
            _ => Err(TelegramError::ChatForbidden {
                code: "CHANNEL_INVALID".into(),
            }),
        }
    }

    async fn join_by_username(&self, username: &Username) -> Result<Peer, TelegramError> {
        let peer = self.resolve_username(username).await?;
        if peer.id().kind() != ChatKind::Channel {
            return Err(TelegramError::Other {
                message: format!("{username} is not a public channel or group"),
            });
        }
        let channel = tl::types::InputChannel {
            channel_id: peer.id().bare(),
            access_hash: peer.peer.access_hash,
        };
        match self
            .client
            .invoke(&tl::functions::channels::JoinChannel {
                channel: channel.into(),
            })
            .await
        {
            Ok(_) => Ok(peer),
            Err(error) if error.is("USER_ALREADY_PARTICIPANT") => Ok(peer),
            Err(error) => Err(map_invocation_error(&error)),
        }
    }
}

impl Drop for GrammersAccount {
    fn drop(&mut self) {
        // Without `disconnect`, still stop the tasks: the runner then ends, drops its handle on
        // the session, and the session's lock is released.
        if let Ok(mut task) = self.event_task.lock()
            && let Some((stop, _task)) = task.take()
        {
            let _ = stop.send(());
        }
        self.handle.quit();
    }
}

/// `messages.sendMessage` with the caller's `random_id`. Posting into a forum topic replies to
/// the topic's creation message (core.telegram.org/api/forum).
pub fn send_message_request(
    peer: tl::enums::InputPeer,
    content: &MessageContent,
    random_id: RandomId,
    topic: Option<TopicId>,
) -> tl::functions::messages::SendMessage {
    tl::functions::messages::SendMessage {
        no_webpage: !content.link_preview,
        silent: false,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer,
        reply_to: topic.map(|topic| {
            tl::types::InputReplyToMessage {
                reply_to_msg_id: topic.0,
                top_msg_id: None,
                reply_to_peer_id: None,
                quote_text: None,
                quote_entities: None,
                quote_offset: None,
                monoforum_peer_id: None,
                todo_item_id: None,
                poll_option: None,
            }
            .into()
        }),
        message: content.text.clone(),
        random_id: random_id.0,
        reply_markup: None,
        entities: tl_entities(&content.entities),
        schedule_date: None,
        schedule_repeat_period: None,
        send_as: None,
        quick_reply_shortcut: None,
        effect: None,
        allow_paid_stars: None,
        suggested_post: None,
        rich_message: None,
    }
}

/// `channels.createChannel` for a broadcast channel, or a supergroup with topics enabled (the
/// `forum` flag, so no `channels.toggleForum` is needed afterwards).
pub fn create_channel_request(
    kind: NewChatKind,
    title: &str,
    about: &str,
) -> tl::functions::channels::CreateChannel {
    tl::functions::channels::CreateChannel {
        broadcast: kind == NewChatKind::Broadcast,
        megagroup: kind == NewChatKind::Forum,
        for_import: false,
        forum: kind == NewChatKind::Forum,
        title: title.to_owned(),
        about: about.to_owned(),
        geo_point: None,
        address: None,
        ttl_period: None,
    }
}

/// `messages.exportChatInvite`: a link without expiry, usage limit or join approval, since
/// every agent added to the channel later joins with the same link.
pub fn export_invite_request(
    peer: tl::enums::InputPeer,
) -> tl::functions::messages::ExportChatInvite {
    tl::functions::messages::ExportChatInvite {
        legacy_revoke_permanent: false,
        request_needed: false,
        peer,
        expire_date: None,
        usage_limit: None,
        title: Some("jobbot agents".into()),
        subscription_pricing: None,
    }
}

/// `messages.editChatDefaultBannedRights` for a CRM group: members may write, send files and
/// create topics (`manage_topics` not banned); changing the group's info, pinning and inviting
/// are banned for them, so they stay with the admins.
pub fn members_create_topics_request(
    peer: tl::enums::InputPeer,
) -> tl::functions::messages::EditChatDefaultBannedRights {
    tl::functions::messages::EditChatDefaultBannedRights {
        peer,
        banned_rights: tl::types::ChatBannedRights {
            view_messages: false,
            send_messages: false,
            send_media: false,
            send_stickers: false,
            send_gifs: false,
            send_games: false,
            send_inline: false,
            embed_links: false,
            send_polls: false,
            change_info: true,
            invite_users: true,
            pin_messages: true,
            manage_topics: false,
            send_photos: false,
            send_videos: false,
            send_roundvideos: false,
            send_audios: false,
            send_voices: false,
            send_docs: false,
            send_plain: false,
            edit_rank: false,
            send_reactions: false,
            manage_linked_peers: true,
            until_date: 0,
        }
        .into(),
    }
}

/// `messages.sendMedia` re-sending the received file of `content.media` by its reference
/// (`inputMediaPhoto` / `inputMediaDocument`), with the text as its caption, the caller's
/// `random_id`, and into a forum topic the same reply header as a text post.
///
/// Panics if `content` has no media (the caller chooses this request for media only).
pub fn send_media_request(
    peer: tl::enums::InputPeer,
    content: &MessageContent,
    random_id: RandomId,
    topic: Option<TopicId>,
) -> tl::functions::messages::SendMedia {
    let file = content
        .media
        .as_ref()
        .expect("send_media_request is called for a message with media");
    let text = send_message_request(peer, content, random_id, topic);
    tl::functions::messages::SendMedia {
        silent: false,
        background: false,
        clear_draft: false,
        noforwards: false,
        update_stickersets_order: false,
        invert_media: false,
        allow_paid_floodskip: false,
        peer: text.peer,
        reply_to: text.reply_to,
        media: crate::convert::input_media(file),
        message: text.message,
        random_id: text.random_id,
        reply_markup: None,
        entities: text.entities,
        schedule_date: None,
        schedule_repeat_period: None,
        send_as: None,
        quick_reply_shortcut: None,
        effect: None,
        allow_paid_stars: None,
        suggested_post: None,
    }
}

#[async_trait]
impl TelegramAccount for GrammersAccount {
    async fn get_me(&self) -> Result<Me, TelegramError> {
        get_me(&self.client).await
    }

    async fn resolve_username(&self, username: &Username) -> Result<Peer, TelegramError> {
        // The session's cache first: it outlives the connection (see `jobbot_core::peer_cache`).
        if let Some(peer) = self.store.cached_username(username, unix_now()) {
            return Ok(peer);
        }
        self.resolve_uncached(username).await
    }

    async fn resolve_message_author(&self, author: &MessageAuthor) -> Result<Peer, TelegramError> {
        // The group as this account knows it; a public one it never saw by its username (one
        // resolve, then kept with the session) rather than a scan of the dialogs it is not in.
        let chat = match (self.cached_peer(author.chat).await?, &author.chat_username) {
            (Some(chat), _) => chat,
            (None, Some(username)) if author.chat.kind() == ChatKind::Channel => {
                let peer = self.resolve_username(username).await?;
                if peer.id() != author.chat {
                    // The username has moved to another chat since the message.
                    return Err(TelegramError::ChatForbidden {
                        code: "CHAT_NOT_KNOWN_TO_ACCOUNT".into(),
                    });
                }
                input_peer(peer.peer)
            }
            (None, _) => self.input_peer_for_chat(author.chat).await?,
        };
        let users = self.invoke(&message_author_request(chat, author)).await?;
        self.cache_peers(&users, &[]).await;
        message_author_in(&users, author.user)
    }

    async fn send_direct(
        &self,
        to: PeerRef,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        // The port sends private messages to people only. Telegram itself would deliver to a bot
        // (the original system sent its template to `@…bot` mentions that way), so the kind is
        // checked here: channels by their id, bots by what this account resolved.
        if to.id.kind() != ChatKind::User || self.resolved_as_bot(to.id) {
            return Err(TelegramError::NotAUser);
        }
        self.send(to.id, input_peer(to), content, random_id, None)
            .await
    }

    async fn send_typing(&self, to: PeerRef) -> Result<(), TelegramError> {
        let request = tl::functions::messages::SetTyping {
            peer: input_peer(to),
            top_msg_id: None,
            action: tl::enums::SendMessageAction::SendMessageTypingAction,
        };
        self.invoke(&request).await.map(|_| ())
    }

    async fn post_to_chat(
        &self,
        chat: ChatId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        let peer = self.input_peer_for_chat(chat).await?;
        self.send(chat, peer, content, random_id, None).await
    }

    async fn create_forum_topic(
        &self,
        group: ChatId,
        title: &str,
        random_id: RandomId,
    ) -> Result<TopicId, TelegramError> {
        let request = tl::functions::messages::CreateForumTopic {
            title_missing: false,
            peer: self.input_peer_for_chat(group).await?,
            title: title.to_owned(),
            icon_color: None,
            icon_emoji_id: None,
            random_id: random_id.0,
            send_as: None,
        };
        let updates = self.invoke(&request).await?;
        // The topic id is the id of its creation service message, named by updateMessageID.
        message_id_for_random_id(&updates, random_id.0)
            .map(TopicId)
            .ok_or(TelegramError::Other {
                message: "Telegram's answer did not name the new topic".into(),
            })
    }

    async fn post_to_topic(
        &self,
        group: ChatId,
        topic: TopicId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError> {
        let peer = self.input_peer_for_chat(group).await?;
        self.send(group, peer, content, random_id, Some(topic))
            .await
    }

    async fn join_chat(&self, target: &JoinTarget) -> Result<Peer, TelegramError> {
        match target {
            JoinTarget::InviteHash(hash) => self.join_by_invite(hash).await,
            JoinTarget::Username(username) => self.join_by_username(username).await,
        }
    }

    async fn refetch_file(
        &self,
        chat: ChatId,
        message_id: i32,
    ) -> Result<Option<MediaFile>, TelegramError> {
        let id = vec![tl::enums::InputMessage::Id(tl::types::InputMessageId {
            id: message_id,
        })];
        // A channel's or supergroup's messages are its own (`channels.getMessages`); private
        // chats and basic groups share the account's message box (`messages.getMessages`).
        let answer = if chat.kind() == ChatKind::Channel {
            let tl::enums::InputPeer::Channel(channel) = self.input_peer_for_chat(chat).await?
            else {
                return Err(TelegramError::ChatForbidden {
                    code: "CHANNEL_INVALID".into(),
                });
            };
            self.invoke(&tl::functions::channels::GetMessages {
                channel: tl::types::InputChannel {
                    channel_id: channel.channel_id,
                    access_hash: channel.access_hash,
                }
                .into(),
                id,
            })
            .await?
        } else {
            self.invoke(&tl::functions::messages::GetMessages { id })
                .await?
        };
        let (users, chats) = match &answer {
            tl::enums::messages::Messages::Messages(answer) => (&answer.users, &answer.chats),
            tl::enums::messages::Messages::Slice(answer) => (&answer.users, &answer.chats),
            tl::enums::messages::Messages::ChannelMessages(answer) => {
                (&answer.users, &answer.chats)
            }
            tl::enums::messages::Messages::NotModified(_) => return Ok(None),
        };
        self.cache_peers(users, chats).await;
        Ok(file_of_message(&answer, message_id))
    }

    async fn chat_access(&self, chat: ChatId) -> Result<ChatAccess, TelegramError> {
        let chats = if chat.kind() == ChatKind::BasicGroup {
            self.invoke(&tl::functions::messages::GetChats {
                id: vec![chat.bare()],
            })
            .await?
        } else {
            let peer = match self.store.peer_ref(peer_id_of(chat)).await {
                Ok(Some(peer)) => peer,
                Ok(None) => {
                    return Err(TelegramError::ChatForbidden {
                        code: "CHAT_NOT_KNOWN_TO_ACCOUNT".into(),
                    });
                }
                Err(error) => {
                    return Err(TelegramError::Other {
                        message: error.to_string(),
                    });
                }
            };
            self.invoke(&tl::functions::channels::GetChannels {
                id: vec![peer.into()],
            })
            .await?
        };
        let chats = match chats {
            tl::enums::messages::Chats::Chats(chats) => chats.chats,
            tl::enums::messages::Chats::Slice(slice) => slice.chats,
        };
        match chats
            .iter()
            .find(|found| chat_id_of_chat(found) == Some(chat))
        {
            Some(found) => chat_access_of(found),
            None => Err(TelegramError::ChatForbidden {
                code: "CHANNEL_INVALID".into(),
            }),
        }
    }

    async fn create_channel(
        &self,
        kind: NewChatKind,
        title: &str,
        about: &str,
    ) -> Result<Peer, TelegramError> {
        let updates = self
            .invoke(&create_channel_request(kind, title, about))
            .await?;
        // The new chat's access hash goes into the session at once: every later call names it.
        self.cache_peers(&[], chats_of(&updates)).await;
        created_chat(&updates).ok_or(TelegramError::Other {
            message: "Telegram's answer did not name the new chat".into(),
        })
    }

    async fn export_invite_link(&self, chat: ChatId) -> Result<String, TelegramError> {
        let peer = self.input_peer_for_chat(chat).await?;
        let invite = self.invoke(&export_invite_request(peer)).await?;
        invite_link_of(&invite).ok_or(TelegramError::Other {
            message: "Telegram's answer carried no invite link".into(),
        })
    }

    async fn invite_to_channel(
        &self,
        chat: ChatId,
        users: &[PeerRef],
    ) -> Result<Vec<ChatId>, TelegramError> {
        let request = tl::functions::channels::InviteToChannel {
            channel: self.input_channel(chat).await?,
            users: users.iter().copied().map(input_user).collect(),
        };
        match self.client.invoke(&request).await {
            Ok(invited) => Ok(missing_invitees_of(&invited)),
            // Everyone asked for is in already: nobody is missing.
            Err(error) if error.is("USER_ALREADY_PARTICIPANT") => Ok(Vec::new()),
            Err(error) => Err(map_invocation_error(&error)),
        }
    }

    async fn allow_members_to_create_topics(&self, group: ChatId) -> Result<(), TelegramError> {
        let peer = self.input_peer_for_chat(group).await?;
        match self
            .client
            .invoke(&members_create_topics_request(peer))
            .await
        {
            // The rights were so already.
            Err(error) if error.is("CHAT_NOT_MODIFIED") => Ok(()),
            Err(error) => Err(map_invocation_error(&error)),
            Ok(_) => Ok(()),
        }
    }

    async fn delete_channel(&self, chat: ChatId) -> Result<(), TelegramError> {
        let request = tl::functions::channels::DeleteChannel {
            channel: self.input_channel(chat).await?,
        };
        self.invoke(&request).await.map(|_| ())
    }

    fn take_events(&self) -> Option<mpsc::Receiver<AccountEvent>> {
        let updates = self.updates.lock().ok()?.take()?;
        let requests = self.checkpoint_requests_rx.lock().ok()?.take()?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run_event_loop(
            EventLoop {
                session: self.session.clone(),
                client: self.client.clone(),
                store: Arc::clone(&self.store),
                positions: Arc::clone(&self.positions),
                requests,
                holds: self.holds.clone(),
            },
            updates,
            events_tx,
            stop_rx,
        ));
        if let Ok(mut slot) = self.event_task.lock() {
            *slot = Some((stop_tx, task));
        }
        Some(events_rx)
    }

    fn request_checkpoint(&self) {
        // The loop is gone once disconnected; then there is nothing to mark.
        let _ = self.checkpoint_requests.send(());
    }

    async fn commit_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), TelegramError> {
        let Some(position) = self.positions.take(checkpoint) else {
            return Ok(());
        };
        self.store
            .save_position(position.updates.clone(), position.marks.clone())
            .await
            .map_err(|error| TelegramError::Other {
                message: format!("could not save the update position: {error}"),
            })?;
        self.positions.saved(position);
        Ok(())
    }

    async fn disconnect(&self) {
        if self.disconnected.swap(true, Ordering::SeqCst) {
            return;
        }
        let event_task = self.event_task.lock().ok().and_then(|mut slot| slot.take());
        if let Some((stop, task)) = event_task {
            let _ = stop.send(());
            // The update position stays the last committed checkpoint: grammers' own state is
            // ahead of what the engine has handled durably, so it is never saved.
            if let Err(error) = task.await {
                tracing::warn!(target: "telegram", session = %self.session, %error, "event task failed");
            }
        }
        let runner = self.runner.lock().ok().and_then(|mut slot| slot.take());
        match runner {
            Some(runner) => Connection::shut_down(&self.store, &self.handle, runner).await,
            None => {
                self.handle.quit();
            }
        }
        tracing::info!(target: "telegram", session = %self.session, "disconnected");
    }
}

/// Update positions handed out as checkpoints, waiting for their commit. The position of a
/// checkpoint is that of the last update delivered before it, tracked from the `State` grammers
/// gives each update (never grammers' own message-box state, which runs ahead of delivery: it
/// includes updates still buffered, and saving it could skip them after a crash).
#[derive(Default)]
struct Positions {
    next: std::sync::atomic::AtomicU64,
    pending: Mutex<BTreeMap<u64, SavedPosition>>,
    /// The position last written, so an idle account does not rewrite its session file at every
    /// checkpoint.
    saved: Mutex<Option<SavedPosition>>,
}

/// What a committed checkpoint saves: the update state and the channel marks
/// ([`jobbot_core::catch_up`]), in one write.
#[derive(Debug, Clone, PartialEq)]
struct SavedPosition {
    updates: UpdatesState,
    marks: BTreeMap<i64, i32>,
}

impl Positions {
    /// Hands out a checkpoint for `position`.
    fn checkpoint(&self, position: SavedPosition) -> Checkpoint {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id, position);
        }
        Checkpoint(id)
    }

    /// The position of `checkpoint`, forgetting it and every earlier one (a later commit covers
    /// them). `None` for a checkpoint this connection did not hand out, or one committed already.
    fn take(&self, checkpoint: Checkpoint) -> Option<SavedPosition> {
        let mut pending = self.pending.lock().ok()?;
        let position = pending.remove(&checkpoint.0)?;
        pending.retain(|id, _| *id > checkpoint.0);
        let unchanged = self
            .saved
            .lock()
            .ok()
            .is_some_and(|saved| saved.as_ref() == Some(&position));
        (!unchanged).then_some(position)
    }

    fn saved(&self, position: SavedPosition) {
        if let Ok(mut saved) = self.saved.lock() {
            *saved = Some(position);
        }
    }
}

/// Moves a tracked position past one delivered update. Every counter only moves forward.
fn advance(position: &mut UpdatesState, state: &State) {
    position.date = position.date.max(state.date);
    position.seq = position.seq.max(state.seq);
    match state.message_box {
        Some(MessageBox::Common { pts }) => position.pts = position.pts.max(pts),
        Some(MessageBox::Secondary { qts }) => position.qts = position.qts.max(qts),
        Some(MessageBox::Channel { channel_id, pts }) => {
            match position
                .channels
                .iter_mut()
                .find(|channel| channel.id == channel_id)
            {
                Some(channel) => channel.pts = channel.pts.max(pts),
                None => position.channels.push(ChannelState {
                    id: channel_id,
                    pts,
                }),
            }
        }
        None => {}
    }
}

/// What the event loop works with besides its channels.
struct EventLoop {
    session: SessionName,
    client: Client,
    store: Arc<SessionStore>,
    positions: Arc<Positions>,
    requests: mpsc::UnboundedReceiver<()>,
    holds: Holds,
}

impl EventLoop {
    /// The position delivered so far, first read from the session (where grammers writes the
    /// starting state of a fresh session before the first update). `None` while the session has
    /// no position at all: a checkpoint of nothing would make the next start skip the catch-up.
    async fn position<'a>(
        &self,
        tracked: &'a mut Option<UpdatesState>,
    ) -> Option<&'a mut UpdatesState> {
        if tracked.is_none() {
            match self.store.updates_state().await {
                Ok(state) if state.pts > 0 || !state.channels.is_empty() => *tracked = Some(state),
                Ok(_) => return None,
                Err(error) => {
                    tracing::warn!(target: "telegram", session = %self.session, %error, "could not read the update position");
                    return None;
                }
            }
        }
        tracked.as_mut()
    }
}

/// The peers that came with a batch of updates, by id (grammers' `PeerMap`, which it builds only
/// inside its own update stream).
type Peers = HashMap<PeerId, GrammersPeer>;

/// The account's updates one at a time, each with its position and the peers sent with it; the
/// peers are put into the session's cache, as grammers' stream does (`auto_cache_peers`).
struct Stream {
    receiver: Receiver<ClientSource>,
    client: Client,
    store: Arc<SessionStore>,
    session: SessionName,
    pending: VecDeque<(tl::enums::Update, State, Arc<Peers>)>,
}

impl Stream {
    /// Cancel-safe between awaits: a batch is queued before its peers are cached, so a stop or a
    /// checkpoint request taken meanwhile loses nothing.
    async fn next(&mut self) -> Result<(tl::enums::Update, State, Arc<Peers>), InvocationError> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Ok(next);
            }
            let (updates, users, chats) = self.receiver.next().await?;
            let peers: Peers = users
                .iter()
                .cloned()
                .map(|user| {
                    GrammersPeer::User(grammers_client::peer::User::from_raw(&self.client, user))
                })
                .chain(
                    chats
                        .iter()
                        .cloned()
                        .map(|chat| GrammersPeer::from_raw(&self.client, chat)),
                )
                .map(|peer| (peer.id(), peer))
                .collect();
            let peers = Arc::new(peers);
            self.pending.extend(
                updates
                    .into_iter()
                    .map(|(update, state)| (update, state, peers.clone())),
            );
            cache_peers_in(&self.store, &self.session, &users, &chats).await;
        }
    }
}

/// What the update receiver asks Telegram through the account's client.
struct ClientSource {
    client: Client,
    store: Arc<SessionStore>,
    session: SessionName,
}

#[async_trait]
impl DifferenceSource for ClientSource {
    async fn fresh_state(&self) -> Option<tl::types::updates::State> {
        let tl::enums::updates::State::State(state) = self
            .client
            .invoke(&tl::functions::updates::GetState {})
            .await
            .ok()?;
        let saved = self.store.set_update_state(starting_position(&state)).await;
        if let Err(error) = saved {
            tracing::warn!(target: "telegram", session = %self.session, %error, "could not save the starting update position");
        }
        Some(state)
    }

    async fn difference(
        &self,
        request: &tl::functions::updates::GetDifference,
    ) -> Result<tl::enums::updates::Difference, InvocationError> {
        self.client.invoke(request).await
    }

    async fn channel_difference(
        &self,
        mut request: tl::functions::updates::GetChannelDifference,
    ) -> Result<Option<tl::enums::updates::ChannelDifference>, InvocationError> {
        let tl::enums::InputChannel::Channel(channel) = &request.channel else {
            return Ok(None);
        };
        // A store that cannot answer is not a channel without a hash (which would drop the
        // channel's catch-up): the receiver holds the channel and asks again later.
        let Some(reference) = self
            .store
            .peer_ref(PeerId::channel_unchecked(channel.channel_id))
            .await
            .map_err(|error| InvocationError::Session(Box::new(error)))?
        else {
            return Ok(None);
        };
        request.channel = tl::types::InputChannel {
            channel_id: channel.channel_id,
            access_hash: reference.auth.hash(),
        }
        .into();
        let bot = matches!(
            self.store.peer(PeerId::self_user()).await,
            Ok(Some(PeerInfo::User {
                bot: Some(true),
                ..
            }))
        );
        request.limit = if bot {
            BOT_CHANNEL_DIFFERENCE_LIMIT
        } else {
            USER_CHANNEL_DIFFERENCE_LIMIT
        };
        self.client.invoke(&request).await.map(Some)
    }
}

/// Keeps the update stream polled for the account's lifetime: polling is what reconnects the
/// account and fetches missed updates (the receiver, [`crate::updates`], resolves gaps only while
/// `next` is awaited). Errors are logged and retried with back-off, never the end of the loop;
/// only a stop request or the end of the sender pool ends it. Checkpoints asked for meanwhile go
/// into the event stream after every update delivered before the request.
async fn run_event_loop(
    mut context: EventLoop,
    updates: mpsc::Receiver<UpdatesLike>,
    events: mpsc::Sender<AccountEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let session = context.session.clone();
    let position = match context.store.updates_state().await {
        Ok(position) => position,
        Err(error) => {
            tracing::error!(target: "telegram", session = %session, %error, "cannot start the update stream: the saved update position is unreadable");
            return;
        }
    };
    let logged_in = matches!(context.store.peer(PeerId::self_user()).await, Ok(Some(_)));
    let source = ClientSource {
        client: context.client.clone(),
        store: context.store.clone(),
        session: session.clone(),
    };
    let mut stream = Stream {
        receiver: Receiver::new(source, position, logged_in, updates, context.holds.clone()),
        client: context.client.clone(),
        store: context.store.clone(),
        session: session.clone(),
        pending: VecDeque::new(),
    };
    let mut tracked: Option<UpdatesState> = None;
    let mut marks = ChannelMarks::from_stored(context.store.channel_marks());
    let mut connection_lost = false;
    let mut retry_delay = POLL_RETRY_FIRST;
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(()) = context.requests.recv() => {
                if let Some(position) = context.position(&mut tracked).await {
                    let checkpoint = context.positions.checkpoint(SavedPosition {
                        updates: position.clone(),
                        marks: marks.stored().clone(),
                    });
                    if !deliver(&events, AccountEvent::Checkpoint(checkpoint), &mut stop).await {
                        break;
                    }
                }
                continue;
            }
            () = connection_back(&context.client, connection_lost) => {
                connection_lost = false;
                retry_delay = POLL_RETRY_FIRST;
                tracing::info!(target: "telegram", session = %session, "connection restored");
                if !deliver(&events, AccountEvent::ConnectionRestored, &mut stop).await {
                    break;
                }
                continue;
            }
            next = stream.next() => next,
        };
        match next {
            Ok((update, state, peers)) => {
                retry_delay = POLL_RETRY_FIRST;
                if connection_lost {
                    connection_lost = false;
                    tracing::info!(target: "telegram", session = %session, "connection restored");
                    if !deliver(&events, AccountEvent::ConnectionRestored, &mut stop).await {
                        break;
                    }
                }
                let channel_message = channel_message_of(&update);
                if let Some((channel, id, peer)) = channel_message
                    && let GapStep::FillAfter(mark) = marks.on_message(channel, id, unix_now())
                {
                    match fill_gap(&context, peer, mark, id, &events, &mut stop).await {
                        Fill::Done => marks.filled(channel, id - 1),
                        Fill::Stopped { up_to, retry_after } => {
                            marks.filled(channel, up_to);
                            marks.fill_blocked(channel, unix_now() + i64::from(retry_after));
                        }
                        Fill::Ended => break,
                    }
                }
                let event = event_of(&update, &peers);
                // Delivered (or skipped) before the position moves past it: a checkpoint taken
                // after this point covers it.
                if let Some(event) = event
                    && !deliver(&events, event, &mut stop).await
                {
                    break;
                }
                if let Some((channel, id, _)) = channel_message {
                    marks.delivered(channel, id);
                }
                if let Some(position) = context.position(&mut tracked).await {
                    advance(position, &state);
                }
            }
            // The sender pool has ended (disconnect or drop): nothing is left to poll.
            Err(InvocationError::Dropped(reason)) => {
                tracing::debug!(target: "telegram", session = %session, reason, "update stream ended");
                break;
            }
            Err(error) => {
                let mapped = map_invocation_error(&error);
                // Telegram refuses the account (banned, logged out, key revoked): polling again
                // would be refused forever. Ending the stream tells the engine now, which
                // reconnects once, learns the session is dead and stops.
                if let TelegramError::AccountDead { reason } = mapped {
                    tracing::warn!(target: "telegram", session = %session, %reason, "Telegram refuses the account; the update stream ends");
                    break;
                }
                tracing::warn!(target: "telegram", session = %session, error = %mapped, "polling updates failed; retrying");
                if matches!(mapped, TelegramError::Network { .. }) && !connection_lost {
                    connection_lost = true;
                    if !deliver(&events, AccountEvent::ConnectionLost, &mut stop).await {
                        break;
                    }
                }
                // A flood wait here comes from the account-wide difference (a channel's own holds
                // that channel only, in the receiver): asking again before it is over only
                // extends it.
                let pause = match mapped {
                    TelegramError::FloodWait { seconds } => {
                        retry_delay.max(Duration::from_secs(u64::from(seconds)))
                    }
                    _ => retry_delay,
                };
                tokio::select! {
                    biased;
                    _ = &mut stop => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                retry_delay = (retry_delay * 2).min(POLL_RETRY_MAX);
            }
        }
    }
}

/// Resolves once a call goes through again after the connection was lost; never while it was
/// not. The update stream alone would say so only with the next update, which a quiet account
/// may not get for hours, and meanwhile the engine would keep the account "disconnected".
/// `updates.getState` is the cheapest call that needs the account's own connection.
async fn connection_back(client: &Client, lost: bool) {
    if !lost {
        return std::future::pending().await;
    }
    let mut delay = POLL_RETRY_FIRST;
    loop {
        tokio::time::sleep(delay).await;
        if client
            .invoke(&tl::functions::updates::GetState {})
            .await
            .is_ok()
        {
            return;
        }
        delay = (delay * 2).min(POLL_RETRY_MAX);
    }
}

/// Sends one event unless a stop comes first; `false` means "stop now". A consumer that went
/// away is not a reason to stop: the stream must stay polled to keep the account connected.
async fn deliver(
    events: &mpsc::Sender<AccountEvent>,
    event: AccountEvent,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    tokio::select! {
        biased;
        _ = stop => false,
        _ = events.send(event) => true,
    }
}

/// A new message in a channel or supergroup: (its bare id, the message id, the peer).
fn channel_message_of(update: &tl::enums::Update) -> Option<(i64, i32, PeerId)> {
    let (message, false) = message_of(update)? else {
        return None;
    };
    let peer = peer_id_of_message(message)?;
    (peer.kind() == grammers_session::types::PeerKind::Channel)
        .then(|| Some((peer.bare_id()?, message_id_of(message), peer)))?
}

/// The message a new-message or edit update carries, and whether it is an edit (as grammers'
/// `Update::from_raw` tells them apart).
fn message_of(update: &tl::enums::Update) -> Option<(&tl::enums::Message, bool)> {
    match update {
        tl::enums::Update::NewMessage(new) => Some((&new.message, false)),
        tl::enums::Update::NewChannelMessage(new) => Some((&new.message, false)),
        tl::enums::Update::EditMessage(edit) => Some((&edit.message, true)),
        tl::enums::Update::EditChannelMessage(edit) => Some((&edit.message, true)),
        _ => None,
    }
}

fn message_id_of(message: &tl::enums::Message) -> i32 {
    match message {
        tl::enums::Message::Message(message) => message.id,
        tl::enums::Message::Service(message) => message.id,
        tl::enums::Message::Empty(message) => message.id,
    }
}

/// The chat a message is in (grammers' `Message::peer_id`); an empty message may name none.
fn peer_id_of_message(message: &tl::enums::Message) -> Option<PeerId> {
    match message {
        tl::enums::Message::Message(message) => Some(PeerId::from(message.peer_id.clone())),
        tl::enums::Message::Service(message) => Some(PeerId::from(message.peer_id.clone())),
        tl::enums::Message::Empty(message) => message.peer_id.clone().map(PeerId::from),
    }
}

/// Who sent a message (grammers' `Message::sender_id`): `from_id`, or in a private chat, which
/// has none since layer 119, the chat's user — or the account itself for its own message.
fn sender_id_of_message(message: &tl::enums::Message, peer: PeerId) -> Option<PeerId> {
    let (from_id, outgoing) = match message {
        tl::enums::Message::Message(message) => (message.from_id.clone(), message.out),
        tl::enums::Message::Service(message) => (message.from_id.clone(), message.out),
        tl::enums::Message::Empty(_) => (None, false),
    };
    from_id.map(PeerId::from).or_else(|| {
        (peer.kind() == grammers_session::types::PeerKind::User)
            .then(|| if outgoing { PeerId::self_user() } else { peer })
    })
}

/// How a gap fill ended.
enum Fill {
    /// Every message before the new one is delivered.
    Done,
    /// Messages up to `up_to` are delivered; the rest waits `retry_after` seconds.
    Stopped { up_to: i32, retry_after: u32 },
    /// The loop must stop.
    Ended,
}

/// Fills a channel's gap from its history (`messages.getHistory` after `mark`, oldest first)
/// up to the message `before`, delivering each message (see [`jobbot_core::catch_up`]).
async fn fill_gap(
    context: &EventLoop,
    peer: PeerId,
    mark: i32,
    before: i32,
    events: &mpsc::Sender<AccountEvent>,
    stop: &mut oneshot::Receiver<()>,
) -> Fill {
    let session = &context.session;
    tracing::info!(target: "telegram", %session, channel = ?peer, after = mark, before, "filling a channel's gap from its history");
    let Ok(Some(reference)) = context.store.peer_ref(peer).await else {
        tracing::warn!(target: "telegram", %session, channel = ?peer, "cannot fill a gap: the channel is not in the session's cache");
        return Fill::Stopped {
            up_to: mark,
            retry_after: FILL_RETRY_SECS,
        };
    };
    let mut history = context
        .client
        .iter_messages(reference)
        .offset_id(mark)
        .reverse(true);
    let mut up_to = mark;
    loop {
        match history.next().await {
            Ok(Some(message)) if message.id() < before => {
                if let Some(incoming) = incoming_of(&message)
                    && !deliver(events, AccountEvent::NewMessage(incoming), stop).await
                {
                    return Fill::Ended;
                }
                up_to = message.id();
            }
            Ok(_) => return Fill::Done,
            Err(error) => {
                let mapped = map_invocation_error(&error);
                tracing::warn!(target: "telegram", %session, channel = ?peer, error = %mapped, "filling a gap stopped; trying again later");
                let retry_after = match mapped {
                    TelegramError::FloodWait { seconds } => seconds,
                    _ => FILL_RETRY_SECS,
                };
                return Fill::Stopped { up_to, retry_after };
            }
        }
    }
}

fn event_of(update: &tl::enums::Update, peers: &Peers) -> Option<AccountEvent> {
    let (message, edited) = message_of(update)?;
    let chat = peer_id_of_message(message)?;
    let sender = sender_id_of_message(message, chat);
    let incoming = incoming_with(
        message,
        chat,
        sender,
        peers.get(&chat),
        sender.and_then(|sender| peers.get(&sender)),
    )?;
    Some(if edited {
        AccountEvent::MessageEdited(incoming)
    } else {
        AccountEvent::NewMessage(incoming)
    })
}

fn incoming_of(message: &grammers_client::message::Message) -> Option<IncomingMessage> {
    incoming_with(
        &message.raw,
        message.peer_id(),
        message.sender_id(),
        message.peer(),
        message.sender(),
    )
}

/// A message in jobbot's form from its raw form, its chat and sender, and those peers' objects
/// when Telegram sent them along.
fn incoming_with(
    raw: &tl::enums::Message,
    chat: PeerId,
    sender_id: Option<PeerId>,
    chat_peer: Option<&GrammersPeer>,
    sender_peer: Option<&GrammersPeer>,
) -> Option<IncomingMessage> {
    let chat_id = chat_id_of(chat)?;
    let chat = chat_peer.map(chat_info_of);
    let sender = sender_id.and_then(|sender_id| sender_of(sender_id, sender_peer));
    incoming_message(raw, chat_id, chat, sender)
}

fn chat_info_of(peer: &GrammersPeer) -> ChatInfo {
    let username = peer.username().and_then(|name| Username::parse(name).ok());
    match peer {
        GrammersPeer::User(user) => ChatInfo {
            kind: if user.is_bot() {
                PeerKind::Bot
            } else {
                PeerKind::User
            },
            title: Some(user.full_name()).filter(|name| !name.is_empty()),
            username,
        },
        GrammersPeer::Channel(channel) => ChatInfo {
            kind: PeerKind::Channel,
            title: Some(channel.title().to_owned()),
            username,
        },
        GrammersPeer::Group(_) | GrammersPeer::Community(_) => ChatInfo {
            kind: PeerKind::Group,
            title: peer.name().map(str::to_owned),
            username,
        },
    }
}

/// The sender, or `None` for the self-user sentinel grammers uses for our own private messages.
fn sender_of(sender_id: PeerId, sender: Option<&GrammersPeer>) -> Option<Sender> {
    let id = chat_id_of(sender_id)?;
    let username = sender
        .and_then(|peer| peer.username())
        .and_then(|name| Username::parse(name).ok());
    Some(match sender {
        Some(GrammersPeer::User(user)) => Sender {
            id,
            kind: if user.is_bot() {
                PeerKind::Bot
            } else {
                PeerKind::User
            },
            username,
            first_name: user.first_name().unwrap_or_default().to_owned(),
            last_name: user
                .last_name()
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            // The full user's hash; a `min` one cannot address them (core.telegram.org/api/min).
            peer: match &user.raw {
                tl::enums::User::User(raw) => peer_from_user(raw).map(|peer| peer.peer),
                tl::enums::User::Empty(_) => None,
            },
        },
        Some(peer) => Sender {
            id,
            kind: if matches!(peer, GrammersPeer::Channel(_)) {
                PeerKind::Channel
            } else {
                PeerKind::Group
            },
            username,
            first_name: peer.name().unwrap_or_default().to_owned(),
            last_name: None,
            peer: None,
        },
        None => Sender {
            id,
            kind: if id.kind() == ChatKind::User {
                PeerKind::User
            } else {
                PeerKind::Group
            },
            username: None,
            first_name: String::new(),
            last_name: None,
            peer: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use jobbot_core::telegram::{EntityKind, TextEntity};

    use super::*;

    /// A plain message as Telegram sends it.
    fn text_message(
        id: i32,
        peer: tl::enums::Peer,
        from: Option<tl::enums::Peer>,
        out: bool,
        text: &str,
    ) -> tl::enums::Message {
        tl::types::Message {
            out,
            mentioned: false,
            media_unread: false,
            silent: false,
            post: false,
            from_scheduled: false,
            legacy: false,
            edit_hide: false,
            pinned: false,
            noforwards: false,
            invert_media: false,
            offline: false,
            video_processing_pending: false,
            paid_suggested_post_stars: false,
            paid_suggested_post_ton: false,
            id,
            from_id: from,
            from_boosts_applied: None,
            from_rank: None,
            peer_id: peer,
            saved_peer_id: None,
            fwd_from: None,
            via_bot_id: None,
            via_business_bot_id: None,
            guestchat_via_from: None,
            reply_to: None,
            date: 1_700_000_000,
            message: text.into(),
            media: None,
            reply_markup: None,
            entities: None,
            views: None,
            forwards: None,
            replies: None,
            edit_date: None,
            post_author: None,
            grouped_id: None,
            reactions: None,
            restriction_reason: None,
            ttl_period: None,
            quick_reply_shortcut_id: None,
            effect: None,
            factcheck: None,
            report_delivery_until_date: None,
            paid_message_stars: None,
            suggested_post: None,
            schedule_repeat_period: None,
            summary_from_language: None,
            rich_message: None,
        }
        .into()
    }

    /// The update stream's raw updates become events as grammers' `Update` made them: new and
    /// edited messages of channels and private chats, the sender from `from_id` or, in a private
    /// chat, the chat's user (the account itself for its own message, which names no sender), the
    /// sender's username and access hash from the peers sent along, and a channel message's
    /// (channel, id) for the gap marks.
    #[test]
    fn raw_updates_become_events_with_their_senders() {
        // Not `SenderPool::new`: its default parameters spawn `lsb_release`, which would hold
        // other tests' session locks for a moment (see `connection_params`).
        let pool = grammers_mtsender::SenderPool::with_configuration(
            Arc::new(grammers_session::storages::MemorySession::default()),
            1,
            crate::connector::connection_params(None),
        );
        let client = Client::new(pool.handle);
        let user = crate::convert::tests::user(42, Some(5), false, false);
        let peers: Peers = [GrammersPeer::User(grammers_client::peer::User::from_raw(
            &client,
            user.into(),
        ))]
        .into_iter()
        .map(|peer| (peer.id(), peer))
        .collect();
        let channel: tl::enums::Peer = tl::types::PeerChannel {
            channel_id: 1234567890,
        }
        .into();
        let private: tl::enums::Peer = tl::types::PeerUser { user_id: 42 }.into();

        let in_channel: tl::enums::Update = tl::types::UpdateNewChannelMessage {
            message: text_message(7, channel.clone(), Some(private.clone()), false, "vacancy"),
            pts: 3,
            pts_count: 1,
        }
        .into();
        let Some(AccountEvent::NewMessage(message)) = event_of(&in_channel, &peers) else {
            panic!("a new channel message is a new message");
        };
        let sender = message.sender.expect("from_id names the sender");
        assert_eq!(
            (message.chat, message.message_id, message.text.as_str()),
            (ChatId::channel(1234567890).unwrap(), 7, "vacancy")
        );
        assert_eq!(sender.id, ChatId::user(42).unwrap());
        assert_eq!(
            sender.username.map(|name| name.to_string()),
            Some("@Recruiter_Ivan".into())
        );
        assert_eq!(sender.peer.map(|peer| peer.access_hash), Some(5));
        assert_eq!(
            channel_message_of(&in_channel).map(|(channel, id, _)| (channel, id)),
            Some((1234567890, 7))
        );

        let edited: tl::enums::Update = tl::types::UpdateEditMessage {
            message: text_message(9, private.clone(), None, false, "edited"),
            pts: 4,
            pts_count: 1,
        }
        .into();
        let Some(AccountEvent::MessageEdited(message)) = event_of(&edited, &peers) else {
            panic!("an edit is an edit");
        };
        assert_eq!(
            message.sender.map(|sender| sender.id),
            Some(ChatId::user(42).unwrap()),
            "a private chat's incoming message is from the chat's user"
        );
        assert_eq!(channel_message_of(&edited), None);

        let own: tl::enums::Update = tl::types::UpdateNewMessage {
            message: text_message(10, private, None, true, "hello"),
            pts: 5,
            pts_count: 1,
        }
        .into();
        let Some(AccountEvent::NewMessage(message)) = event_of(&own, &peers) else {
            panic!("an outgoing message is a new message");
        };
        assert!(message.outgoing && message.sender.is_none());
        let other: tl::enums::Update = tl::types::UpdateReadChannelInbox {
            folder_id: None,
            channel_id: 1234567890,
            max_id: 7,
            still_unread_count: 0,
            pts: 6,
        }
        .into();
        assert!(event_of(&other, &peers).is_none());
    }

    /// A received document goes out again as `messages.sendMedia` with `inputMediaDocument`
    /// carrying the file's own id, access hash and reference, the caption, the caller's
    /// `random_id` and the topic's reply header; a photo as `inputMediaPhoto`.
    #[test]
    fn media_is_resent_by_its_reference_with_caption_and_topic() {
        use jobbot_core::telegram::{MediaFile, MediaKind};
        let document = MediaFile {
            kind: MediaKind::Document,
            id: 11,
            access_hash: 22,
            file_reference: vec![1, 2, 3],
            file_name: Some("cv.pdf".into()),
            mime_type: Some("application/pdf".into()),
            size: Some(1000),
            duration_seconds: None,
        };
        let peer = input_peer(PeerRef {
            id: ChatId::channel(1234567890).unwrap(),
            access_hash: 9,
        });
        let content = MessageContent::with_media(document.clone(), "my CV");
        let request = send_media_request(peer.clone(), &content, RandomId(-5), Some(TopicId(7)));
        assert_eq!((request.random_id, request.message.as_str()), (-5, "my CV"));
        match &request.media {
            tl::enums::InputMedia::Document(media) => match &media.id {
                tl::enums::InputDocument::Document(input) => assert_eq!(
                    (input.id, input.access_hash, input.file_reference.clone()),
                    (11, 22, vec![1, 2, 3])
                ),
                other => panic!("expected an input document, got {other:?}"),
            },
            other => panic!("expected inputMediaDocument, got {other:?}"),
        }
        match request.reply_to {
            Some(tl::enums::InputReplyTo::Message(reply)) => assert_eq!(reply.reply_to_msg_id, 7),
            other => panic!("expected a reply to the topic, got {other:?}"),
        }
        let photo = MediaFile {
            kind: MediaKind::Photo,
            ..document
        };
        let request = send_media_request(
            peer,
            &MessageContent::with_media(photo, ""),
            RandomId(1),
            None,
        );
        assert!(request.reply_to.is_none());
        match request.media {
            tl::enums::InputMedia::Photo(media) => match media.id {
                tl::enums::InputPhoto::Photo(input) => {
                    assert_eq!((input.id, input.access_hash), (11, 22));
                }
                other => panic!("expected an input photo, got {other:?}"),
            },
            other => panic!("expected inputMediaPhoto, got {other:?}"),
        }
    }

    #[test]
    fn send_requests_carry_the_callers_random_id_entities_and_topic() {
        let content = MessageContent {
            text: "hello".into(),
            entities: vec![TextEntity {
                kind: EntityKind::Bold,
                offset: 0,
                length: 5,
            }],
            link_preview: false,
            media: None,
        };
        let peer = input_peer(PeerRef {
            id: ChatId::channel(1234567890).unwrap(),
            access_hash: 9,
        });
        let request = send_message_request(peer, &content, RandomId(-42), Some(TopicId(7)));
        assert_eq!(request.random_id, -42);
        assert!(request.no_webpage);
        assert_eq!(request.message, "hello");
        assert_eq!(request.entities.as_ref().map(Vec::len), Some(1));
        match request.reply_to {
            Some(tl::enums::InputReplyTo::Message(reply)) => {
                assert_eq!((reply.reply_to_msg_id, reply.top_msg_id), (7, None));
            }
            other => panic!("expected a reply to the topic, got {other:?}"),
        }

        let with_preview = MessageContent {
            link_preview: true,
            ..MessageContent::plain("https://example.org")
        };
        let request = send_message_request(
            input_peer(PeerRef {
                id: ChatId::user(42).unwrap(),
                access_hash: 1,
            }),
            &with_preview,
            RandomId(1),
            None,
        );
        assert!(!request.no_webpage);
        assert!(request.reply_to.is_none());
        assert!(request.entities.is_none());
    }

    #[test]
    fn chat_creation_asks_for_a_broadcast_channel_or_a_forum() {
        let channel = create_channel_request(NewChatKind::Broadcast, "Jobs", "Vacancies");
        assert!(channel.broadcast && !channel.megagroup && !channel.forum);
        assert_eq!(
            (channel.title.as_str(), channel.about.as_str()),
            ("Jobs", "Vacancies")
        );
        let forum = create_channel_request(NewChatKind::Forum, "Jobs - CRM", "");
        assert!(!forum.broadcast && forum.megagroup && forum.forum);
        assert!(!forum.for_import && forum.geo_point.is_none() && forum.ttl_period.is_none());
        let tl::enums::ChatBannedRights::Rights(rights) =
            members_create_topics_request(tl::enums::InputPeer::Empty).banned_rights;
        assert!(!rights.manage_topics && !rights.send_messages && !rights.send_docs);
        assert!(rights.change_info && rights.pin_messages && rights.invite_users);
        assert_eq!(rights.until_date, 0, "for good");
        let invite = export_invite_request(tl::enums::InputPeer::Empty);
        assert!(!invite.request_needed, "agents join without approval");
        assert_eq!((invite.expire_date, invite.usage_limit), (None, None));
    }

    #[test]
    fn senders_without_peer_details_fall_back_to_their_id() {
        let sender = sender_of(PeerId::user(42).unwrap(), None).unwrap();
        assert_eq!(sender.id, ChatId::user(42).unwrap());
        assert_eq!(sender.kind, PeerKind::User);
        assert_eq!(sender_of(PeerId::self_user(), None), None);
    }

    fn state(date: i32, seq: i32, message_box: Option<MessageBox>) -> State {
        State {
            date,
            seq,
            message_box,
        }
    }

    /// The tracked position moves past each delivered update, per box, and never back (updates
    /// of a box arrive in order, but a channel's may interleave with the common box's).
    #[test]
    fn a_position_moves_past_each_delivered_update() {
        let mut position = UpdatesState {
            pts: 10,
            qts: 2,
            date: 100,
            seq: 5,
            channels: vec![ChannelState { id: 7, pts: 40 }],
        };
        advance(
            &mut position,
            &state(101, 6, Some(MessageBox::Common { pts: 11 })),
        );
        advance(
            &mut position,
            &state(
                102,
                0,
                Some(MessageBox::Channel {
                    channel_id: 7,
                    pts: 41,
                }),
            ),
        );
        advance(
            &mut position,
            &state(
                103,
                0,
                Some(MessageBox::Channel {
                    channel_id: 9,
                    pts: 3,
                }),
            ),
        );
        advance(
            &mut position,
            &state(99, 0, Some(MessageBox::Secondary { qts: 4 })),
        );
        advance(
            &mut position,
            &state(0, 0, Some(MessageBox::Common { pts: 9 })),
        );
        assert_eq!(
            (position.pts, position.qts, position.date, position.seq),
            (11, 4, 103, 6)
        );
        assert_eq!(
            position.channels,
            vec![
                ChannelState { id: 7, pts: 41 },
                ChannelState { id: 9, pts: 3 }
            ]
        );
    }

    #[test]
    fn a_checkpoint_is_committed_once_and_covers_the_earlier_ones() {
        let positions = Positions::default();
        let at = |pts: i32| SavedPosition {
            updates: UpdatesState {
                pts,
                ..UpdatesState::default()
            },
            marks: BTreeMap::from([(7, pts * 10)]),
        };
        let first = positions.checkpoint(at(1));
        let second = positions.checkpoint(at(2));
        let third = positions.checkpoint(at(3));
        assert_eq!(positions.take(second).map(|p| p.updates.pts), Some(2));
        positions.saved(at(2));
        assert_eq!(positions.take(first), None, "covered by the later commit");
        assert_eq!(positions.take(second), None, "committed once");
        assert_eq!(positions.take(Checkpoint(99)), None, "not handed out");
        assert_eq!(positions.take(third).map(|p| p.updates.pts), Some(3));
        positions.saved(at(3));
        // Nothing new since: nothing to write.
        let idle = positions.checkpoint(at(3));
        assert_eq!(positions.take(idle), None);
    }
}
