//! The Telegram port: what one logged-in account can do, in jobbot's own types.
//!
//! Two back-ends implement it: `jobbot-telegram` (real MTProto accounts through grammers) and
//! `jobbot-sim` (an in-process Telegram world for tests, benchmarks and the demo). No Telegram
//! library type crosses this boundary, and every failure is a [`TelegramError`] value the
//! scheduler can act on, never a string to parse.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use std::sync::Arc;

use crate::ids::{ChatId, ChatKind, PhoneNumber, SessionName, Username};

/// The caller-chosen `random_id` of a send. MTProto deduplicates sends by `random_id` per account
/// (core.telegram.org/constructor/updateMessageID, "random ID deduplication"), so a retry of the
/// same send on the same account with the same id cannot create a second message. The outbox
/// stores it before the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RandomId(pub i64);

/// A forum topic: the id of the topic's creation service message (core.telegram.org/api/forum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopicId(pub i32);

/// What kind of peer a username resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    User,
    Bot,
    /// A broadcast channel.
    Channel,
    /// A supergroup (forums are supergroups) or a basic group.
    Group,
}

/// A peer as one account sees it. The access hash belongs to that account: Telegram refuses it
/// from any other account or session ("Access hashes may not be reused across different accounts",
/// core.telegram.org/api/peers), so a `PeerRef` must never be handed from one agent to another.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerRef {
    pub id: ChatId,
    pub access_hash: i64,
}

impl fmt::Debug for PeerRef {
    // The access hash is an account's credential for a peer; keep it out of debug logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerRef")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A resolved peer: who it is and how this account may address it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub peer: PeerRef,
    pub kind: PeerKind,
    pub username: Option<Username>,
    /// First name of a user, or the title of a chat.
    pub name: String,
    pub last_name: Option<String>,
}

impl Peer {
    pub fn id(&self) -> ChatId {
        self.peer.id
    }

    pub fn full_name(&self) -> String {
        match &self.last_name {
            Some(last) if !last.is_empty() => format!("{} {}", self.name, last),
            _ => self.name.clone(),
        }
    }
}

/// The logged-in account itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user_id: ChatId,
    pub username: Option<Username>,
    pub first_name: String,
    pub last_name: Option<String>,
    /// Masked in `Display`; kept so the UI can show which number an agent is.
    pub phone: Option<PhoneNumber>,
}

/// Formatting of a run of text. Offsets and lengths are in UTF-16 code units, as MTProto counts
/// them (core.telegram.org/api/entities).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextEntity {
    pub kind: EntityKind,
    pub offset: u32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "url")]
pub enum EntityKind {
    Bold,
    Italic,
    Code,
    Pre,
    Url,
    TextUrl(String),
    Blockquote,
}

/// The text of an outgoing message with its formatting, sent as entities rather than markup so
/// user text never needs escaping and cannot break the formatting. With `media`, the text is the
/// file's caption (at most [`MAX_CAPTION_UTF16`] units, and it may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MessageContent {
    pub text: String,
    pub entities: Vec<TextEntity>,
    pub link_preview: bool,
    /// A file this account received, re-sent by its reference (`messages.sendMedia` with
    /// `inputMediaPhoto` / `inputMediaDocument`): nothing is downloaded or uploaded. Only the
    /// account that received it can send it (see [`MediaFile`]).
    /// Boxed: most messages have none, and every content moves through the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Box<MediaFile>>,
}

/// The longest caption a non-premium account may send: `caption_length_limit_default`, 1,024
/// UTF-16 units (core.telegram.org/api/config); longer is `MEDIA_CAPTION_TOO_LONG`. Whether an
/// account is premium is not known beforehand, so jobbot keeps to the default.
pub const MAX_CAPTION_UTF16: usize = 1024;

impl MessageContent {
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            entities: Vec::new(),
            link_preview: false,
            media: None,
        }
    }

    /// A file re-sent with `caption` (plain text).
    pub fn with_media(media: impl Into<Box<MediaFile>>, caption: impl Into<String>) -> Self {
        Self {
            media: Some(media.into()),
            ..Self::plain(caption)
        }
    }
}

impl From<&str> for MessageContent {
    fn from(text: &str) -> Self {
        Self::plain(text)
    }
}

/// A message the account sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    pub chat: ChatId,
    pub message_id: i32,
}

/// What one account may do in a channel or group, as Telegram describes the chat to it
/// (`channels.getChannels` / `messages.getChats`: the `left`, `creator`, `admin_rights`,
/// `banned_rights` and `default_banned_rights` of the chat object). Reading it changes nothing,
/// so `jobbot doctor` can ask it of every account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatAccess {
    pub chat: ChatId,
    pub kind: PeerKind,
    pub title: String,
    /// It has a public username (anyone may read it without joining).
    pub public: bool,
    /// A supergroup with topics enabled (core.telegram.org/api/forum).
    pub forum: bool,
    /// The account is in the chat (`left` is not set).
    pub member: bool,
    /// The creator, or an admin.
    pub admin: bool,
    /// It may post: in a broadcast channel the creator or an admin with `post_messages`; in a
    /// group a member whose own and default banned rights leave `send_messages`.
    pub can_post: bool,
    /// It may create forum topics: a forum, and the creator, an admin with `manage_topics`, or a
    /// member whose banned rights leave `manage_topics`.
    pub can_create_topics: bool,
}

/// How to join a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinTarget {
    /// The hash of an invite link (`t.me/+HASH` or `t.me/joinchat/HASH`).
    InviteHash(String),
    /// A public chat by username.
    Username(Username),
}

/// What [`TelegramAccount::create_channel`] creates (`channels.createChannel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewChatKind {
    /// A broadcast channel (the `broadcast` flag): only admins post; jobbot's output channels.
    Broadcast,
    /// A supergroup with topics enabled (the `megagroup` and `forum` flags,
    /// core.telegram.org/api/forum): a CRM group.
    Forum,
}

/// The longest chat title: 128 characters (Bot API `setChatTitle`: "New chat title, 1-128
/// characters"), counted here in UTF-16 units as MTProto counts text, so a title cut to it fits.
pub const MAX_CHAT_TITLE_UTF16: usize = 128;
/// The longest chat description (`about`): 255 characters (Bot API `setChatDescription`: "New
/// chat description, 0-255 characters"); longer is `CHAT_ABOUT_TOO_LONG`
/// (core.telegram.org/method/channels.createChannel).
pub const MAX_CHAT_ABOUT_UTF16: usize = 255;

/// Who wrote an incoming message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    pub id: ChatId,
    pub kind: PeerKind,
    pub username: Option<Username>,
    pub first_name: String,
    pub last_name: Option<String>,
    /// How this account may write to the sender: its own full reference (id and access hash),
    /// as a private message always carries it. `None` when the sender came only as a `min`
    /// constructor, as people in groups and channels usually do ("the provided access_hash may be
    /// absent, or otherwise can't be used to generate a typical inputPeerUser constructor",
    /// core.telegram.org/api/min): they are reached through their username, or by this account
    /// once they wrote to it. Valid only with the account (and session) that received it.
    #[serde(default)]
    pub peer: Option<PeerRef>,
}

/// The author of a message in a group, by the message: how an account reaches a person who has
/// no public username and never wrote to it. Telegram shows such a person in a group as a `min`
/// user, whose access hash cannot address them; the client names them instead by the message it
/// saw them in (`inputUserFromMessage`, core.telegram.org/api/min), and `users.getUsers` answers
/// the full user with the caller's own access hash. Any account that can see the message may do
/// it: a member of the group, or anyone for a public group (found by `chat_username`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageAuthor {
    /// The group the message is in.
    pub chat: ChatId,
    /// The group's public username, when it has one: how an account that is not a member finds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_username: Option<Username>,
    pub message_id: i32,
    /// The person who wrote it.
    pub user: ChatId,
}

impl fmt::Display for MessageAuthor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the author ({}) of message {} in {}",
            self.user, self.message_id, self.chat
        )
    }
}

/// Kinds of media the port reports. Photos and documents (files, voice messages, videos, video
/// notes, stickers) come with a [`MediaFile`] the receiving account can re-send; the rest (a
/// poll, a location, a contact card, …) is only named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Photo,
    Video,
    /// A round video message (`documentAttributeVideo` with `round_message`).
    VideoNote,
    Document,
    Voice,
    Sticker,
    Other,
}

/// A photo or a document as one account received it, with what it takes to send it again.
///
/// The `file_reference` belongs to the account (and context) that received it: Telegram hands
/// out file references with each object and refuses a stale or foreign one with
/// `FILE_REFERENCE_EXPIRED` (core.telegram.org/api/file_reference), and the access hash, like a
/// peer's, is the receiving account's own (core.telegram.org/api/peers). So a `MediaFile` is sent
/// again only by the account it came to, and `Debug` keeps both out of logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFile {
    pub kind: MediaKind,
    /// Telegram's photo or document id.
    pub id: i64,
    pub access_hash: i64,
    pub file_reference: Vec<u8>,
    /// `documentAttributeFilename`, for documents that have one.
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    /// Bytes (a document's `size`; a photo's largest size), when known.
    #[serde(default)]
    pub size: Option<u64>,
    /// Seconds, for voice messages, videos and video notes.
    #[serde(default)]
    pub duration_seconds: Option<u32>,
}

impl fmt::Debug for MediaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaFile")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("file_name", &self.file_name)
            .field("mime_type", &self.mime_type)
            .field("size", &self.size)
            .field("duration_seconds", &self.duration_seconds)
            .finish_non_exhaustive()
    }
}

/// A message that reached this account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncomingMessage {
    pub chat: ChatId,
    pub chat_kind: PeerKind,
    pub chat_title: Option<String>,
    pub chat_username: Option<Username>,
    pub message_id: i32,
    pub sender: Option<Sender>,
    /// Message text or media caption.
    pub text: String,
    pub media: Option<MediaKind>,
    /// The photo or document, as this account may send it again (`None` for text and for media
    /// that are not files). Boxed: most messages have none.
    #[serde(default)]
    pub file: Option<Box<MediaFile>>,
    /// Unix seconds.
    pub date: i64,
    pub outgoing: bool,
    /// A service message (join, pin, topic created, …), never a vacancy.
    pub is_service: bool,
    /// For a message in a forum supergroup: the topic it belongs to. `None` in the General topic
    /// and everywhere else.
    pub topic_id: Option<TopicId>,
}

impl IncomingMessage {
    /// A private message to this account from someone else.
    pub fn is_private(&self) -> bool {
        self.chat.kind() == ChatKind::User && !self.outgoing
    }
}

/// What an account's event stream delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum AccountEvent {
    /// A new message in a chat this account is in: a watched channel, a private chat, or a forum
    /// group (then `topic_id` says which topic).
    NewMessage(IncomingMessage),
    MessageEdited(IncomingMessage),
    /// The connection dropped; the back-end is reconnecting.
    ConnectionLost,
    /// The connection is back: sent as soon as a call goes through again, whether or not an
    /// update has arrived; the updates missed meanwhile follow, where the back-end can fetch them.
    ConnectionRestored,
    /// A mark in the stream, asked for with [`TelegramAccount::request_checkpoint`]: every event
    /// before it was delivered before it. Once the consumer has handled all of them durably, it
    /// commits the checkpoint ([`TelegramAccount::commit_checkpoint`]) and the session's next
    /// connection catches up from there.
    Checkpoint(Checkpoint),
}

/// A position in an account's event stream, as the back-end that delivered it knows it. Valid
/// only with the connection that produced it: a checkpoint of an earlier connection is ignored.
/// On the wire, `{"event": "checkpoint", "checkpoint": N}` (an internally tagged variant needs
/// a map, not a bare number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "CheckpointFields", from = "CheckpointFields")]
pub struct Checkpoint(pub u64);

#[derive(Serialize, Deserialize)]
struct CheckpointFields {
    checkpoint: u64,
}

impl From<Checkpoint> for CheckpointFields {
    fn from(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint: checkpoint.0,
        }
    }
}

impl From<CheckpointFields> for Checkpoint {
    fn from(fields: CheckpointFields) -> Self {
        Self(fields.checkpoint)
    }
}

/// Why an account can no longer be used. Each comes from a Telegram RPC error
/// (core.telegram.org/api/errors): 401 `AUTH_KEY_UNREGISTERED`, `SESSION_REVOKED`,
/// `USER_DEACTIVATED`, `USER_DEACTIVATED_BAN`, 406 `AUTH_KEY_DUPLICATED`, and the frozen-account
/// `FROZEN_METHOD_INVALID` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    Unregistered,
    Revoked,
    Deactivated,
    Banned,
    Frozen,
    AuthKeyDuplicated,
    /// 401 `AUTH_KEY_INVALID`: Telegram no longer knows the session's key.
    AuthKeyInvalid,
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unregistered => "the session's key is not registered (logged out elsewhere)",
            Self::Revoked => "the session was revoked",
            Self::Deactivated => "the account is deactivated",
            Self::Banned => "the account is banned",
            Self::Frozen => "the account is frozen",
            Self::AuthKeyDuplicated => {
                "the session was used from two connections at once and Telegram invalidated it"
            }
            Self::AuthKeyInvalid => "Telegram no longer knows the session's key",
        })
    }
}

/// A failed Telegram call, as a value the scheduler can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum TelegramError {
    /// 420 `FLOOD_WAIT_X` / `FLOOD_PREMIUM_WAIT_X`: this account must not repeat the call for X s.
    #[error("flood wait of {seconds} s")]
    FloodWait { seconds: u32 },
    /// 420 `SLOWMODE_WAIT_X`: the chat's slow mode; other chats are not affected.
    #[error("slow mode: wait {seconds} s in this chat")]
    SlowMode { seconds: u32 },
    /// 400 `PEER_FLOOD`: the account is limited from writing to people it has no chat with
    /// (telegram.org/faq_spam); it may still answer people who wrote first.
    #[error("the account is limited from writing first to strangers (PEER_FLOOD)")]
    PeerFlood,
    /// 403 `USER_PRIVACY_RESTRICTED` (or `PRIVACY_PREMIUM_REQUIRED`): the user refuses messages.
    #[error("the user's privacy settings refuse this message")]
    PrivacyRestricted,
    /// `USERNAME_NOT_OCCUPIED` / `USERNAME_INVALID`: nobody has that username.
    #[error("no Telegram account has this username")]
    UsernameNotFound,
    /// The peer is a bot, a channel or a group where a person was expected.
    #[error("the peer is not a user")]
    NotAUser,
    /// The account is unusable until a new login.
    #[error("account unusable: {reason}")]
    AccountDead { reason: DeadReason },
    /// `TOPIC_DELETED` / `MESSAGE_THREAD_INVALID`: the forum topic no longer exists.
    #[error("the forum topic was deleted")]
    TopicDeleted,
    /// `TOPIC_CLOSED`: an admin closed the forum topic; only admins post in it. A post there
    /// ends (it is not moved to an account that may still post: closing is the operator's
    /// "no more here").
    #[error("the forum topic is closed")]
    TopicClosed,
    /// `CHAT_WRITE_FORBIDDEN`, `CHANNEL_PRIVATE`, `USER_BANNED_IN_CHANNEL`, not a participant …:
    /// this account may not post in that chat.
    #[error("this account may not write in that chat ({code})")]
    ChatForbidden { code: String },
    /// `INVITE_HASH_EXPIRED` / `INVITE_HASH_INVALID`.
    #[error("the invite link is invalid or expired")]
    InvalidInvite,
    /// The connection failed or dropped; the same call may succeed after reconnecting.
    #[error("network error: {message}")]
    Network { message: String },
    /// 500 `RANDOM_ID_DUPLICATE`: a send with this `random_id` is already being processed on
    /// this account (core.telegram.org/api/updates, "random ID deduplication": a repeat of a
    /// finished send returns the first message instead). The message was delivered, or is being
    /// delivered: it must never be sent again, from this account or any other.
    #[error("a send with this random_id is already on its way (RANDOM_ID_DUPLICATE)")]
    RandomIdDuplicate,
    /// 403 `ALLOW_PAYMENT_REQUIRED_X`: the user accepts messages only for X Telegram Stars
    /// (core.telegram.org/api/paid-messages); jobbot never pays.
    #[error("the user accepts messages only for {stars} Telegram Stars")]
    PaymentRequired { stars: u32 },
    /// 400 `PEER_ID_INVALID`: this peer does not exist for this account (or the access hash is not
    /// this account's own).
    #[error("the peer is unknown to this account (PEER_ID_INVALID)")]
    PeerInvalid,
    /// 400 `INPUT_USER_DEACTIVATED`: the recipient deleted their account.
    #[error("the recipient's account was deleted")]
    RecipientDeactivated,
    /// 400 `YOU_BLOCKED_USER`: this account has blocked the recipient; other accounts have not.
    #[error("this account has blocked the recipient")]
    YouBlockedUser,
    /// 400 `MESSAGE_TOO_LONG`: the text exceeds 4,096 UTF-16 code units; no account can send it.
    #[error("the message is too long (MESSAGE_TOO_LONG)")]
    MessageTooLong,
    /// 400 `MEDIA_EMPTY` (or `MEDIA_INVALID`, `PHOTO_INVALID`, `DOCUMENT_INVALID`): the file does
    /// not exist (any more) or is not this account's to send.
    #[error("the file cannot be sent: Telegram does not know it (MEDIA_EMPTY)")]
    MediaEmpty,
    /// 400 `FILE_REFERENCE_EXPIRED` (`FILE_REFERENCE_0_EXPIRED`, … for the n-th file of a
    /// request) / `FILE_REFERENCE_INVALID`: the file reference is stale, or another account's
    /// (core.telegram.org/api/file_reference); the message must be fetched again by the account
    /// that received it ([`TelegramAccount::refetch_file`]).
    #[error("the file's reference has expired (FILE_REFERENCE_EXPIRED)")]
    FileReferenceExpired,
    /// 403 `CHAT_SEND_MEDIA_FORBIDDEN` (and its `_PHOTOS_`, `_DOCS_`, `_VOICES_`, `_ROUNDVIDEOS_`
    /// … forms), 400 `VOICE_MESSAGES_FORBIDDEN`: the chat or the recipient accepts no such file.
    #[error("the recipient does not accept this kind of file ({code})")]
    MediaForbidden { code: String },
    /// 400 `CHANNELS_TOO_MUCH`: this account is in too many channels and supergroups to join one
    /// more (core.telegram.org/api/config, `channels_limit_default`).
    #[error("this account is in too many channels to join another (CHANNELS_TOO_MUCH)")]
    TooManyChannels,
    /// 400 `USER_CHANNELS_TOO_MUCH`: the user being added is in too many channels.
    #[error("the user is in too many channels to be added (USER_CHANNELS_TOO_MUCH)")]
    UserInTooManyChannels,
    /// 400 `INVITE_REQUEST_SENT`: the chat approves new members by hand; the request is waiting.
    #[error("the chat's admins must approve the join request (INVITE_REQUEST_SENT)")]
    JoinRequestSent,
    /// 5xx (`INTERNAL`, `*_CALL_ERROR` …) or -503 `Timeout`: Telegram failed inside; the call may
    /// or may not have been executed (core.telegram.org/api/errors, 500 and -503).
    #[error("Telegram server error {code}; the call may or may not have been executed")]
    ServerError { code: i32 },
    /// 303 `*_MIGRATE_X` outside login: the call belongs to DC X and was not executed.
    #[error("the call must be made on data center {dc} (303 *_MIGRATE)")]
    WrongDc { dc: u32 },
    /// Anything else, with Telegram's error name where there is one.
    #[error("telegram error: {message}")]
    Other { message: String },
}

/// Whom a failure is about, which decides what may be tried next. Every [`TelegramError`] has
/// one; the scheduling policy and the outbox act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorScope {
    /// The message went out (`RANDOM_ID_DUPLICATE`).
    Delivered,
    /// Permanent for this recipient or this message: every account would fail the same way, so
    /// failing over only wastes accounts.
    Recipient,
    /// Passing: the same call may succeed later (the network, Telegram's servers, a wrong DC, a
    /// chat's slow mode).
    Temporary,
    /// About this account (a flood wait, `PEER_FLOOD`, a dead session, a block it made, its
    /// channel count): another account may succeed.
    Account,
    /// The chat refuses this post (no right to write, closed topic, unknown chat, …).
    Chat,
}

impl TelegramError {
    /// Whom this failure is about (see [`ErrorScope`]).
    pub fn scope(&self) -> ErrorScope {
        match self {
            Self::RandomIdDuplicate => ErrorScope::Delivered,
            Self::PrivacyRestricted
            | Self::UsernameNotFound
            | Self::NotAUser
            | Self::PaymentRequired { .. }
            | Self::PeerInvalid
            | Self::RecipientDeactivated
            | Self::MessageTooLong
            | Self::MediaEmpty
            | Self::FileReferenceExpired
            | Self::MediaForbidden { .. }
            | Self::UserInTooManyChannels
            | Self::InvalidInvite => ErrorScope::Recipient,
            Self::Network { .. }
            | Self::ServerError { .. }
            | Self::WrongDc { .. }
            | Self::SlowMode { .. } => ErrorScope::Temporary,
            Self::FloodWait { .. }
            | Self::PeerFlood
            | Self::AccountDead { .. }
            | Self::YouBlockedUser
            | Self::TooManyChannels => ErrorScope::Account,
            Self::TopicDeleted
            | Self::TopicClosed
            | Self::ChatForbidden { .. }
            | Self::JoinRequestSent => ErrorScope::Chat,
            // Unclassified: treated as the chat's, so it ends the message without burning every
            // agent on it (the outbox can re-queue it by hand).
            Self::Other { .. } => ErrorScope::Chat,
        }
    }
}

impl TelegramError {
    /// Errors that say something about this account or the moment rather than about the
    /// recipient: another account, or a later try, may succeed.
    pub fn is_account_level(&self) -> bool {
        matches!(self.scope(), ErrorScope::Account | ErrorScope::Temporary)
    }

    /// Errors that will fail the same way on every account: do not fail over on them.
    pub fn is_permanent_for_recipient(&self) -> bool {
        self.scope() == ErrorScope::Recipient
    }
}

/// What one logged-in Telegram account can do. Implementations are cheap to share behind an
/// `Arc`; each account has exactly one owner task in the engine (one connection per account).
#[async_trait]
pub trait TelegramAccount: Send + Sync {
    /// Who this account is (also the health check: fails with `AccountDead` for a dead session).
    async fn get_me(&self) -> Result<Me, TelegramError>;

    /// Resolves a public username to a peer with this account's own access hash. Telegram punishes
    /// this call hardest (`contacts.resolveUsername`), so implementations cache per account.
    async fn resolve_username(&self, username: &Username) -> Result<Peer, TelegramError>;

    /// The author of a group message, with this account's own access hash (see
    /// [`MessageAuthor`]): the group as this account knows it (its cache, its dialogs, or the
    /// group's username), then `users.getUsers` with `inputUserFromMessage`. A group this account
    /// cannot see is `ChatForbidden`; a message that is gone, or not by that user, `PeerInvalid`.
    async fn resolve_message_author(&self, author: &MessageAuthor) -> Result<Peer, TelegramError>;

    /// Sends a private message to a user. A repeat with the same `random_id` returns the first
    /// message instead of sending a second one.
    async fn send_direct(
        &self,
        to: PeerRef,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError>;

    /// Shows "typing…" to a user (`messages.setTyping`); it lasts about 5 s or until a message.
    async fn send_typing(&self, to: PeerRef) -> Result<(), TelegramError>;

    /// Posts to a channel or group this account may write in, by its id. The account must have
    /// seen the chat (it is a member), so no access hash is needed from the caller.
    async fn post_to_chat(
        &self,
        chat: ChatId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError>;

    /// Creates a forum topic in a supergroup with topics enabled (`messages.createForumTopic`).
    async fn create_forum_topic(
        &self,
        group: ChatId,
        title: &str,
        random_id: RandomId,
    ) -> Result<TopicId, TelegramError>;

    /// Posts into a forum topic (a reply to the topic's creation message, core.telegram.org/api/forum).
    async fn post_to_topic(
        &self,
        group: ChatId,
        topic: TopicId,
        content: &MessageContent,
        random_id: RandomId,
    ) -> Result<SentMessage, TelegramError>;

    /// The file of message `message_id` in `chat` (a private chat or a group this account is
    /// in), fetched again with a fresh file reference of this account's
    /// (`messages.getMessages` / `channels.getMessages`): the way to send a file again whose
    /// reference expired (core.telegram.org/api/file_reference). `None` when the message is gone
    /// or carries no file.
    async fn refetch_file(
        &self,
        chat: ChatId,
        message_id: i32,
    ) -> Result<Option<MediaFile>, TelegramError>;

    /// What this account may do in a channel or group (see [`ChatAccess`]); nothing is changed.
    /// A chat the account cannot see (private and not joined, or no such chat) is
    /// `ChatForbidden`.
    async fn chat_access(&self, chat: ChatId) -> Result<ChatAccess, TelegramError>;

    /// Joins a chat. Joining a chat the account is already in succeeds (`USER_ALREADY_PARTICIPANT`
    /// is not an error here), so callers may call it idempotently.
    async fn join_chat(&self, target: &JoinTarget) -> Result<Peer, TelegramError>;

    /// Creates a broadcast channel or a forum supergroup with this account as its creator
    /// (`channels.createChannel`; `title` at most [`MAX_CHAT_TITLE_UTF16`], `about` at most
    /// [`MAX_CHAT_ABOUT_UTF16`] units). The answer carries the new chat, so the account can
    /// address it at once. `CHANNELS_TOO_MUCH` when the account is in too many chats already.
    async fn create_channel(
        &self,
        kind: NewChatKind,
        title: &str,
        about: &str,
    ) -> Result<Peer, TelegramError>;

    /// A new invite link to a channel or supergroup this account administers
    /// (`messages.exportChatInvite`), as `https://t.me/+HASH`: whoever has it may join
    /// ([`JoinTarget::InviteHash`]).
    async fn export_invite_link(&self, chat: ChatId) -> Result<String, TelegramError>;

    /// Adds users to a channel or supergroup this account administers
    /// (`channels.inviteToChannel`). Each `PeerRef` must be this account's own reference to
    /// the user. Answers the users Telegram did not add because their privacy settings refuse
    /// invitations from this account (`missing_invitees`, core.telegram.org/api/invites): they
    /// can still join by an invite link. A user already in the chat counts as added.
    async fn invite_to_channel(
        &self,
        chat: ChatId,
        users: &[PeerRef],
    ) -> Result<Vec<ChatId>, TelegramError>;

    /// Lets every member of a forum this account administers create topics
    /// (`messages.editChatDefaultBannedRights` leaving `manage_topics` allowed,
    /// core.telegram.org/api/forum); changing the chat's info, pinning and inviting stay with the
    /// admins. Without it only admins may, and agents could not open their contacts' topics.
    async fn allow_members_to_create_topics(&self, group: ChatId) -> Result<(), TelegramError>;

    /// Deletes a channel or supergroup this account created, with its history, for everyone
    /// (`channels.deleteChannel`). Deleting a chat that no longer exists fails
    /// (`CHANNEL_INVALID`).
    async fn delete_channel(&self, chat: ChatId) -> Result<(), TelegramError>;

    /// The account's event stream. There is one stream per account and one consumer (its owner
    /// task): the first call returns it, later calls return `None`.
    fn take_events(&self) -> Option<mpsc::Receiver<AccountEvent>>;

    /// Asks for a [`AccountEvent::Checkpoint`] in the event stream after every event delivered
    /// so far. Nothing happens if the stream is gone or full; the next request makes another.
    fn request_checkpoint(&self);

    /// Saves the position of `checkpoint` (delivered by this connection's stream) as the one the
    /// session's next connection catches up from. Call it only once every event before the
    /// checkpoint was handled durably: events after it are delivered again after a restart (at
    /// least once), and none before it is. A checkpoint this connection did not deliver is
    /// ignored.
    async fn commit_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), TelegramError>;

    /// Closes the connection and releases the session so another owner may open it. The update
    /// position is the last committed checkpoint, never a later one: events delivered after it are
    /// delivered again next time. Dropping the last handle releases the session too.
    async fn disconnect(&self);
}

/// How to connect one session.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `socks5://[user:pass@]host:port` (the only proxy scheme MTProto clients support here).
    /// It may hold a password: never log it (`Debug` shows it masked).
    pub proxy: Option<String>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::config::mask_proxy),
            )
            .finish()
    }
}

/// Why a session could not be opened. Serialisable so a remote back-end (the simulator in its own
/// process) hands it over as this type, never as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum ConnectError {
    /// Another owner (another process, or another pool in this one) holds the session. Telegram
    /// invalidates a key used from two connections at once (`AUTH_KEY_DUPLICATED`), so the second
    /// owner is refused before it connects.
    #[error(
        "session {session} is already in use by another jobbot process or pool; one session has exactly one owner"
    )]
    SessionBusy { session: SessionName },
    #[error("session {session} is not logged in; run `jobbot login {session} --phone +…`")]
    NotLoggedIn { session: SessionName },
    #[error(
        "session {session} can no longer be used ({reason}); log in again with `jobbot login {session} --phone +…`"
    )]
    Dead {
        session: SessionName,
        reason: DeadReason,
    },
    #[error("session {session}: {message}")]
    Storage {
        session: SessionName,
        message: String,
    },
    #[error("network error: {message}")]
    Network { message: String },
}

/// Opens sessions by name: the factory each back-end provides. The engine calls it once per
/// session and keeps the account in one owner task.
#[async_trait]
pub trait AccountConnector: Send + Sync {
    /// Opens and connects a logged-in session.
    async fn connect(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<Arc<dyn TelegramAccount>, ConnectError>;

    /// Tells a session that never logged in from one Telegram now refuses, without keeping it
    /// open. Takes the session's lock for the duration, like `connect`.
    async fn check_authorization(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<AuthorizationStatus, ConnectError>;

    /// Starts a login for `session`, holding its lock until the returned backend is dropped.
    /// On success the session is saved and can be `connect`ed.
    async fn begin_login(
        &self,
        session: &SessionName,
        options: &ConnectOptions,
    ) -> Result<Box<dyn LoginBackend>, ConnectError>;
}

/// A failed login step. Each has a message a person can act on, and the step can be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum LoginError {
    #[error("the phone number is not valid for Telegram (PHONE_NUMBER_INVALID)")]
    InvalidPhone,
    #[error("this phone number is banned by Telegram (PHONE_NUMBER_BANNED)")]
    PhoneBanned,
    #[error("no Telegram account uses this phone number; sign up in an official app first")]
    SignUpRequired,
    #[error("the code is wrong; check it and try again")]
    InvalidCode,
    #[error("the code has expired; request a new one")]
    CodeExpired,
    /// 400 `SEND_CODE_UNAVAILABLE`: every way of sending the code was used.
    #[error(
        "Telegram offers no other way to send the code (SEND_CODE_UNAVAILABLE); wait for the one sent"
    )]
    ResendUnavailable,
    #[error("the 2FA password is wrong")]
    InvalidPassword,
    #[error("too many attempts: Telegram asks to wait {seconds} s")]
    FloodWait { seconds: u32 },
    /// 400 `PHONE_NUMBER_FLOOD`: too many codes were asked for this number lately; Telegram names
    /// no wait, and asking again extends it.
    #[error(
        "too many login codes were requested for this number; try again in a few hours (PHONE_NUMBER_FLOOD)"
    )]
    PhoneNumberFlood,
    /// 400 `PHONE_PASSWORD_FLOOD`: too many wrong 2FA passwords.
    #[error("too many wrong passwords; try again later (PHONE_PASSWORD_FLOOD)")]
    PasswordFlood,
    /// 400 `SRP_ID_INVALID` / `SRP_PASSWORD_CHANGED`: the password check's parameters expired or
    /// the password changed meanwhile; entering the password again starts a fresh check.
    #[error("the password check expired; enter the password again")]
    PasswordCheckExpired,
    #[error("this account cannot be used: {reason}")]
    AccountDead { reason: DeadReason },
    #[error("network error: {message}")]
    Network { message: String },
    #[error("login failed: {message}")]
    Other { message: String },
}

/// How Telegram delivered a login code: `auth.SentCodeType` (core.telegram.org/api/auth,
/// "Sending the verification code"). Shown to the person so they know where to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeDelivery {
    /// `auth.sentCodeTypeApp`: a message from Telegram in an app already logged in.
    App,
    /// `auth.sentCodeTypeSms` (and the Firebase / word / phrase SMS variants).
    Sms,
    /// `auth.sentCodeTypeCall`: a voice call dictates the code.
    Call,
    /// `auth.sentCodeTypeFlashCall` / `MissedCall`: the code is in a calling number.
    MissedCall,
    /// `auth.sentCodeTypeEmailCode`: to the account's login e-mail.
    Email,
    /// `auth.sentCodeTypeFragmentSms`: an SMS through fragment.com (anonymous numbers).
    Fragment,
    /// A type this version does not know (or `SetUpEmailRequired`, which needs an official app).
    Other,
}

impl fmt::Display for CodeDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::App => "in the Telegram app on another device",
            Self::Sms => "by SMS",
            Self::Call => "by a phone call",
            Self::MissedCall => "as the last digits of a missed call's number",
            Self::Email => "by e-mail",
            Self::Fragment => "by SMS through fragment.com",
            Self::Other => "in a way this version of jobbot does not know",
        })
    }
}

/// Telegram's answer to `auth.sendCode` / `auth.resendCode`: where the code went, and how a
/// resend would deliver it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentCode {
    pub delivery: CodeDelivery,
    /// The code's length, when Telegram says.
    pub length: Option<u32>,
    /// `next_type`: what `auth.resendCode` would use; `None`: no other way is offered.
    pub next: Option<CodeDelivery>,
    /// `timeout`: seconds after which the next way may be asked for.
    pub resend_after_seconds: Option<u32>,
}

/// What `submit_code` led to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum CodeOutcome {
    SignedIn(Me),
    /// The account has two-step verification; ask for the password, showing the hint.
    PasswordRequired {
        hint: Option<String>,
    },
}

/// How long a QR-login token lives when Telegram's own expiry cannot be read against this
/// machine's clock: "the token expires in 30 seconds" (core.telegram.org/api/qr-login).
pub const QR_TOKEN_DOCUMENTED_LIFETIME_SECONDS: u32 = 30;

/// A QR-login token (`auth.loginToken`, core.telegram.org/api/qr-login): shown as a QR code of
/// [`LoginToken::url`] for the account's phone to scan (Settings → Devices → Link Desktop
/// Device). Its `Debug` shows no bytes: whoever holds the token can show it to a phone.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginToken {
    pub token: Vec<u8>,
    /// Seconds from Telegram's answer until the token expires; a new one must be exported then.
    pub expires_in_seconds: u32,
}

impl LoginToken {
    /// `tg://login?token=…`, the token in base64url (core.telegram.org/api/qr-login, "Exporting
    /// a login token").
    pub fn url(&self) -> String {
        use base64::Engine as _;
        format!(
            "tg://login?token={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.token)
        )
    }

    /// The token in a `tg://login?token=…` URL (what a phone reads from the QR code).
    pub fn token_of_url(url: &str) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let encoded = url.strip_prefix("tg://login?token=")?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .ok()
    }
}

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginToken")
            .field("token", &"<hidden>")
            .field("expires_in_seconds", &self.expires_in_seconds)
            .finish()
    }
}

/// What `auth.exportLoginToken` led to (after following `auth.loginTokenMigrateTo` with
/// `auth.importLoginToken` on the account's DC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "step")]
pub enum QrOutcome {
    /// Not scanned yet: show this token.
    Token(LoginToken),
    /// `auth.loginTokenSuccess`: a phone accepted the token.
    SignedIn(Me),
    /// Accepted, and the account has two-step verification (`SESSION_PASSWORD_NEEDED`): the
    /// password step follows, as after a code.
    PasswordRequired { hint: Option<String> },
}

/// The state of a session file before connecting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum AuthorizationStatus {
    Authorized(Me),
    /// Never logged in (or logged out cleanly): `jobbot login` is the way forward.
    NotLoggedIn,
    /// It was logged in, and Telegram now refuses it (from `updates.getState`'s error): a new login
    /// is needed, and the reason says why.
    Dead(DeadReason),
}

/// The Telegram side of one login attempt, in the order a person goes through it. The pure state
/// machine in [`crate::login`] drives it; the CLI and the web both use that machine.
///
/// Secrets (`code`, `password`) are passed by reference and must never be logged or stored.
#[async_trait]
pub trait LoginBackend: Send {
    async fn request_code(&mut self, phone: &PhoneNumber) -> Result<SentCode, LoginError>;
    /// `auth.resendCode`: the same code again, the way [`SentCode::next`] said.
    async fn resend_code(&mut self) -> Result<SentCode, LoginError>;
    async fn submit_code(&mut self, code: &str) -> Result<CodeOutcome, LoginError>;
    async fn submit_password(&mut self, password: &str) -> Result<Me, LoginError>;
    /// `auth.exportLoginToken`: a QR-login token to show, or the sign-in once a phone accepted
    /// the last one (core.telegram.org/api/qr-login). Replaces the code login's state.
    async fn export_login_token(&mut self) -> Result<QrOutcome, LoginError>;
    /// Waits at most `timeout` for `updateLoginToken` (a phone accepted the token shown):
    /// `true` when it came, and [`Self::export_login_token`] then finishes the login.
    async fn wait_login_token(&mut self, timeout: std::time::Duration) -> Result<bool, LoginError>;
}

#[async_trait]
impl<T: LoginBackend + ?Sized> LoginBackend for Box<T> {
    async fn request_code(&mut self, phone: &PhoneNumber) -> Result<SentCode, LoginError> {
        (**self).request_code(phone).await
    }
    async fn resend_code(&mut self) -> Result<SentCode, LoginError> {
        (**self).resend_code().await
    }
    async fn submit_code(&mut self, code: &str) -> Result<CodeOutcome, LoginError> {
        (**self).submit_code(code).await
    }
    async fn submit_password(&mut self, password: &str) -> Result<Me, LoginError> {
        (**self).submit_password(password).await
    }
    async fn export_login_token(&mut self) -> Result<QrOutcome, LoginError> {
        (**self).export_login_token().await
    }
    async fn wait_login_token(&mut self, timeout: std::time::Duration) -> Result<bool, LoginError> {
        (**self).wait_login_token(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events cross the wire to the remote back-end: every kind round-trips through JSON.
    #[test]
    fn account_events_round_trip_through_json() {
        let message = IncomingMessage {
            chat: ChatId::user(5).unwrap(),
            chat_kind: PeerKind::User,
            chat_title: None,
            chat_username: None,
            message_id: 1,
            sender: None,
            text: "hi".into(),
            media: None,
            file: None,
            date: 0,
            outgoing: false,
            is_service: false,
            topic_id: None,
        };
        for event in [
            AccountEvent::NewMessage(message.clone()),
            AccountEvent::MessageEdited(message),
            AccountEvent::ConnectionLost,
            AccountEvent::ConnectionRestored,
            AccountEvent::Checkpoint(Checkpoint(7)),
        ] {
            let text = serde_json::to_string(&event).unwrap();
            assert_eq!(
                serde_json::from_str::<AccountEvent>(&text).unwrap(),
                event,
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_string(&AccountEvent::Checkpoint(Checkpoint(7))).unwrap(),
            r#"{"event":"checkpoint","checkpoint":7}"#
        );
        let duplicate = serde_json::to_string(&TelegramError::RandomIdDuplicate).unwrap();
        assert_eq!(
            serde_json::from_str::<TelegramError>(&duplicate).unwrap(),
            TelegramError::RandomIdDuplicate
        );
    }
}
