//! The wire: two JSON-RPC interfaces, declared once as traits from which jsonrpsee generates the
//! server traits (`TelegramRpcServer`, `AdminRpcServer`, implemented in `server`) and the clients
//! (`TelegramRpcClient`, `AdminRpcClient`, extension traits on jsonrpsee's client).
//!
//! `telegram_*` is the port of `jobbot_core::telegram`, method for method. An account or a login
//! lives on the server and is named by a handle that belongs to the WebSocket connection that
//! opened it; closing that connection (a clean exit or a killed process) ends all of them. The
//! client picks the handle before it asks, so a `connect` it abandons half-way can still be
//! ended by handle (`disconnect` before `connect` has finished leaves a tombstone that ends the
//! account as soon as it exists): an abandoned connect never keeps a session locked.
//!
//! Every answer is `Result<T, E>` with the port's own error type `E` (serde), inside jsonrpsee's
//! `RpcResult`: a refused call is a typed value, and only a broken transport is a jsonrpsee error
//! (which the client maps to the port's `Network` variants).
//!
//! Adding a port method: one line here, one delegating method in `server::Connection`, and one in
//! the client's `RemoteAccount` (see ARCHITECTURE.md).

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{
    AccountEvent, AuthorizationStatus, ChatAccess, Checkpoint, CodeOutcome, ConnectError,
    JoinTarget, LoginError, Me, MediaFile, MessageAuthor, MessageContent, NewChatKind, Peer,
    PeerRef, QrOutcome, RandomId, SentCode, SentMessage, TelegramError, TopicId,
};
use jobbot_sim::admin::{AdminError, TopicView};
use jobbot_sim::scenario::DemoWorld;
use jobbot_sim::{
    AccountCounters, AccountLimitDraw, ConnectionEntry, MessageRecord, NewUser, SimMedia, SimParams,
};
use jsonrpsee::core::{RpcResult, SubscriptionResult};
use jsonrpsee::proc_macros::rpc;

/// A broken transport to the server, as the generated clients report it.
pub use jsonrpsee::core::ClientError;
use serde::{Deserialize, Serialize};

/// A connected account on the server, owned by the connection that opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountHandle(pub u64);

/// A login in progress on the server (it holds its session's lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoginHandle(pub u64);

/// How far the scripted world's activity has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptedProgress {
    pub posted: u32,
    pub posts: u32,
    /// What the next step would do (vacancies left to post, recruiter replies and operator
    /// answers due now): all zero once the world waits for nothing.
    pub due: jobbot_sim::scenario::StepReport,
}

/// The port of `jobbot_core::telegram`.
#[rpc(server, client, namespace = "telegram")]
pub trait TelegramRpc {
    // ----- AccountConnector -----
    #[method(name = "connect")]
    async fn connect(
        &self,
        session: SessionName,
        handle: AccountHandle,
    ) -> RpcResult<Result<(), ConnectError>>;

    #[method(name = "check_authorization")]
    async fn check_authorization(
        &self,
        session: SessionName,
    ) -> RpcResult<Result<AuthorizationStatus, ConnectError>>;

    #[method(name = "begin_login")]
    async fn begin_login(
        &self,
        session: SessionName,
        handle: LoginHandle,
    ) -> RpcResult<Result<(), ConnectError>>;

    // ----- TelegramAccount -----
    /// The account's event stream; one subscription per account.
    #[subscription(name = "events", unsubscribe = "events_unsubscribe", item = AccountEvent)]
    async fn events(&self, account: AccountHandle) -> SubscriptionResult;

    #[method(name = "get_me")]
    async fn get_me(&self, account: AccountHandle) -> RpcResult<Result<Me, TelegramError>>;

    #[method(name = "resolve_username")]
    async fn resolve_username(
        &self,
        account: AccountHandle,
        username: Username,
    ) -> RpcResult<Result<Peer, TelegramError>>;

    #[method(name = "resolve_message_author")]
    async fn resolve_message_author(
        &self,
        account: AccountHandle,
        author: MessageAuthor,
    ) -> RpcResult<Result<Peer, TelegramError>>;

    #[method(name = "send_direct")]
    async fn send_direct(
        &self,
        account: AccountHandle,
        to: PeerRef,
        content: MessageContent,
        random_id: RandomId,
    ) -> RpcResult<Result<SentMessage, TelegramError>>;

    #[method(name = "send_typing")]
    async fn send_typing(
        &self,
        account: AccountHandle,
        to: PeerRef,
    ) -> RpcResult<Result<(), TelegramError>>;

    #[method(name = "post_to_chat")]
    async fn post_to_chat(
        &self,
        account: AccountHandle,
        chat: ChatId,
        content: MessageContent,
        random_id: RandomId,
    ) -> RpcResult<Result<SentMessage, TelegramError>>;

    #[method(name = "create_forum_topic")]
    async fn create_forum_topic(
        &self,
        account: AccountHandle,
        group: ChatId,
        title: String,
        random_id: RandomId,
    ) -> RpcResult<Result<TopicId, TelegramError>>;

    #[method(name = "post_to_topic")]
    async fn post_to_topic(
        &self,
        account: AccountHandle,
        group: ChatId,
        topic: TopicId,
        content: MessageContent,
        random_id: RandomId,
    ) -> RpcResult<Result<SentMessage, TelegramError>>;

    #[method(name = "join_chat")]
    async fn join_chat(
        &self,
        account: AccountHandle,
        target: JoinTarget,
    ) -> RpcResult<Result<Peer, TelegramError>>;

    #[method(name = "refetch_file")]
    async fn refetch_file(
        &self,
        account: AccountHandle,
        chat: ChatId,
        message_id: i32,
    ) -> RpcResult<Result<Option<MediaFile>, TelegramError>>;

    #[method(name = "chat_access")]
    async fn chat_access(
        &self,
        account: AccountHandle,
        chat: ChatId,
    ) -> RpcResult<Result<ChatAccess, TelegramError>>;

    #[method(name = "create_channel")]
    async fn create_channel(
        &self,
        account: AccountHandle,
        kind: NewChatKind,
        title: String,
        about: String,
    ) -> RpcResult<Result<Peer, TelegramError>>;

    #[method(name = "export_invite_link")]
    async fn export_invite_link(
        &self,
        account: AccountHandle,
        chat: ChatId,
    ) -> RpcResult<Result<String, TelegramError>>;

    #[method(name = "invite_to_channel")]
    async fn invite_to_channel(
        &self,
        account: AccountHandle,
        chat: ChatId,
        users: Vec<PeerRef>,
    ) -> RpcResult<Result<Vec<ChatId>, TelegramError>>;

    #[method(name = "allow_members_to_create_topics")]
    async fn allow_members_to_create_topics(
        &self,
        account: AccountHandle,
        group: ChatId,
    ) -> RpcResult<Result<(), TelegramError>>;

    #[method(name = "delete_channel")]
    async fn delete_channel(
        &self,
        account: AccountHandle,
        chat: ChatId,
    ) -> RpcResult<Result<(), TelegramError>>;

    /// Puts a checkpoint into the account's event stream (`TelegramAccount::request_checkpoint`).
    #[method(name = "request_checkpoint")]
    async fn request_checkpoint(&self, account: AccountHandle) -> RpcResult<()>;

    #[method(name = "commit_checkpoint")]
    async fn commit_checkpoint(
        &self,
        account: AccountHandle,
        checkpoint: Checkpoint,
    ) -> RpcResult<Result<(), TelegramError>>;

    /// Closes the connection and releases the session (`TelegramAccount::disconnect`, and what
    /// dropping the last handle does in process).
    #[method(name = "disconnect")]
    async fn disconnect(&self, account: AccountHandle) -> RpcResult<()>;

    // ----- LoginBackend -----
    #[method(name = "request_code")]
    async fn request_code(
        &self,
        login: LoginHandle,
        phone: PhoneNumber,
    ) -> RpcResult<Result<SentCode, LoginError>>;

    #[method(name = "resend_code")]
    async fn resend_code(&self, login: LoginHandle) -> RpcResult<Result<SentCode, LoginError>>;

    #[method(name = "submit_code")]
    async fn submit_code(
        &self,
        login: LoginHandle,
        code: String,
    ) -> RpcResult<Result<CodeOutcome, LoginError>>;

    #[method(name = "submit_password")]
    async fn submit_password(
        &self,
        login: LoginHandle,
        password: String,
    ) -> RpcResult<Result<Me, LoginError>>;

    #[method(name = "export_login_token")]
    async fn export_login_token(
        &self,
        login: LoginHandle,
    ) -> RpcResult<Result<QrOutcome, LoginError>>;

    /// Waits at most `timeout_ms` for the login's token to be accepted.
    #[method(name = "wait_login_token")]
    async fn wait_login_token(
        &self,
        login: LoginHandle,
        timeout_ms: u64,
    ) -> RpcResult<Result<bool, LoginError>>;

    /// Ends a login (what dropping the `LoginBackend` does in process): releases its session.
    #[method(name = "end_login")]
    async fn end_login(&self, login: LoginHandle) -> RpcResult<()>;
}

/// Building, driving and reading the world: `jobbot_sim::admin::Admin`, call for call, plus the
/// server's own state file and scenario.
#[rpc(server, client, namespace = "admin")]
pub trait AdminRpc {
    // ----- Building -----
    #[method(name = "create_user")]
    fn create_user(&self, user: NewUser) -> RpcResult<Result<ChatId, AdminError>>;

    /// A user with a logged-in session.
    #[method(name = "create_account")]
    fn create_account(
        &self,
        session: SessionName,
        user: NewUser,
    ) -> RpcResult<Result<ChatId, AdminError>>;

    #[method(name = "log_in_session")]
    fn log_in_session(
        &self,
        session: SessionName,
        user: ChatId,
    ) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "create_bot")]
    fn create_bot(&self, username: String, name: String) -> RpcResult<Result<ChatId, AdminError>>;

    #[method(name = "create_channel")]
    fn create_channel(
        &self,
        title: String,
        username: Option<String>,
        admins: Vec<ChatId>,
    ) -> RpcResult<Result<ChatId, AdminError>>;

    #[method(name = "create_group")]
    fn create_group(
        &self,
        title: String,
        username: Option<String>,
        forum: bool,
        admins: Vec<ChatId>,
    ) -> RpcResult<Result<ChatId, AdminError>>;

    #[method(name = "add_member")]
    fn add_member(&self, chat: ChatId, user: ChatId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "add_admin")]
    fn add_admin(&self, chat: ChatId, user: ChatId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "add_contact")]
    fn add_contact(&self, owner: ChatId, contact: ChatId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "set_cold_dm_budget")]
    fn set_cold_dm_budget(&self, account: ChatId, budget: u32)
    -> RpcResult<Result<(), AdminError>>;

    #[method(name = "impose_flood_wait")]
    fn impose_flood_wait(&self, account: ChatId, seconds: u32)
    -> RpcResult<Result<(), AdminError>>;

    /// The account's next catch-up of `channel` gets a flood wait of `seconds`.
    #[method(name = "flood_channel_catch_up")]
    fn flood_channel_catch_up(
        &self,
        account: ChatId,
        channel: ChatId,
        seconds: u32,
    ) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "create_invite")]
    fn create_invite(&self, chat: ChatId) -> RpcResult<Result<String, AdminError>>;

    #[method(name = "revoke_invite")]
    fn revoke_invite(&self, hash: String) -> RpcResult<()>;

    // ----- Making things happen -----
    /// A source publishes a post.
    #[method(name = "channel_post")]
    fn channel_post(&self, channel: ChatId, text: String) -> RpcResult<Result<i32, AdminError>>;

    /// A member writes in a group, in a topic when given (an operator answering).
    #[method(name = "group_post")]
    fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: String,
    ) -> RpcResult<Result<i32, AdminError>>;

    /// A private message (a recruiter replying to an agent).
    #[method(name = "direct_message")]
    fn direct_message(
        &self,
        from: ChatId,
        to: ChatId,
        text: String,
    ) -> RpcResult<Result<i32, AdminError>>;

    /// A private message with a file (a recruiter sending a CV).
    #[method(name = "direct_media")]
    fn direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: SimMedia,
        caption: String,
    ) -> RpcResult<Result<i32, AdminError>>;

    /// A file posted in a group, in a topic when given (an operator sending a document).
    #[method(name = "group_post_media")]
    fn group_post_media(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        media: SimMedia,
        caption: String,
    ) -> RpcResult<Result<i32, AdminError>>;

    #[method(name = "create_topic")]
    fn create_topic(
        &self,
        group: ChatId,
        author: ChatId,
        title: String,
    ) -> RpcResult<Result<TopicId, AdminError>>;

    #[method(name = "delete_topic")]
    fn delete_topic(&self, group: ChatId, topic: TopicId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "edit_chat_message")]
    fn edit_chat_message(
        &self,
        chat: ChatId,
        message_id: i32,
        text: String,
    ) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "ban")]
    fn ban(&self, user: ChatId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "freeze")]
    fn freeze(&self, user: ChatId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "deactivate")]
    fn deactivate(&self, user: ChatId) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "revoke")]
    fn revoke(&self, session: SessionName) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "unregister")]
    fn unregister(&self, session: SessionName) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "ban_phone")]
    fn ban_phone(&self, phone: PhoneNumber) -> RpcResult<()>;

    #[method(name = "mark_phone_invalid")]
    fn mark_phone_invalid(&self, phone: PhoneNumber) -> RpcResult<()>;

    /// Drops the session's live connections for `reconnect_delay_ms`.
    #[method(name = "drop_connection")]
    fn drop_connection(&self, session: SessionName) -> RpcResult<()>;

    /// A second connection of a session that bypasses its lock (a copied session file), owned by
    /// the calling connection: for tests of `AUTH_KEY_DUPLICATED` only.
    #[method(name = "duplicate_connect")]
    fn duplicate_connect(
        &self,
        session: SessionName,
        handle: AccountHandle,
    ) -> RpcResult<Result<(), AdminError>>;

    // ----- Reading the record -----
    #[method(name = "params")]
    fn params(&self) -> RpcResult<SimParams>;

    #[method(name = "now_unix")]
    fn now_unix(&self) -> RpcResult<i64>;

    #[method(name = "find_username")]
    fn find_username(&self, username: String) -> RpcResult<Option<ChatId>>;

    #[method(name = "user_of_session")]
    fn user_of_session(&self, session: SessionName) -> RpcResult<Option<ChatId>>;

    #[method(name = "last_login_code")]
    fn last_login_code(&self, phone: PhoneNumber) -> RpcResult<Option<String>>;

    /// The account of `phone` scans a login's QR code (`tg://login?token=…`) with its phone.
    #[method(name = "accept_login_token")]
    fn accept_login_token(
        &self,
        phone: PhoneNumber,
        url: String,
    ) -> RpcResult<Result<(), AdminError>>;

    #[method(name = "chat_messages")]
    fn chat_messages(&self, chat: ChatId) -> RpcResult<Result<Vec<MessageRecord>, AdminError>>;

    #[method(name = "private_messages")]
    fn private_messages(&self, user: ChatId) -> RpcResult<Result<Vec<MessageRecord>, AdminError>>;

    /// The private messages between two users, as `user`'s box has them.
    #[method(name = "conversation")]
    fn conversation(
        &self,
        user: ChatId,
        other: ChatId,
    ) -> RpcResult<Result<Vec<MessageRecord>, AdminError>>;

    #[method(name = "received_from")]
    fn received_from(
        &self,
        recipient: ChatId,
        sender: ChatId,
    ) -> RpcResult<Result<Vec<MessageRecord>, AdminError>>;

    #[method(name = "topics")]
    fn topics(&self, group: ChatId) -> RpcResult<Result<Vec<TopicView>, AdminError>>;

    #[method(name = "counters")]
    fn counters(&self, user: ChatId) -> RpcResult<Result<AccountCounters, AdminError>>;

    /// The limits the account is held to: its own when drawn (`SimParams::account_limits`),
    /// else the world's.
    #[method(name = "account_limits")]
    fn account_limits(&self, account: ChatId) -> RpcResult<Result<AccountLimitDraw, AdminError>>;

    #[method(name = "open_connections")]
    fn open_connections(&self, session: SessionName) -> RpcResult<usize>;

    #[method(name = "connection_history")]
    fn connection_history(&self) -> RpcResult<Vec<ConnectionEntry>>;

    /// Connections opened while their session had another one open (must stay 0).
    #[method(name = "duplicate_connections")]
    fn duplicate_connections(&self) -> RpcResult<u64>;

    // ----- The server -----
    /// Writes the state file now (it is also written periodically and on shutdown).
    #[method(name = "save")]
    async fn save(&self) -> RpcResult<Result<(), String>>;

    /// The layout of the demo or scripted world, `None` for an empty one.
    #[method(name = "scenario_layout")]
    fn scenario_layout(&self) -> RpcResult<Option<DemoWorld>>;

    /// The `channels_config.json` that matches the demo or scripted world.
    #[method(name = "scenario_config")]
    fn scenario_config(&self) -> RpcResult<Option<serde_json::Value>>;

    #[method(name = "scripted_progress")]
    fn scripted_progress(&self) -> RpcResult<Option<ScriptedProgress>>;
}
