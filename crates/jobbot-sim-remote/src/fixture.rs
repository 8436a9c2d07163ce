//! The contract suite against a simulator in another process: [`RemoteWorld`] is
//! `jobbot_sim::fixture::FixtureWorld` over the admin interface, so `SimFixture` builds the same
//! world there and the checks run through [`RemoteConnector`].
//!
//! `FixtureWorld` is synchronous (the in-process fixture runs on a paused current-thread
//! runtime); here each call blocks its worker thread on the RPC (`block_in_place`), so the checks
//! must run on a multi-threaded runtime.

use std::future::Future;
use std::sync::Arc;

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName};
use jobbot_core::telegram::{TelegramAccount, TopicId};
use jobbot_sim::fixture::{FixtureWorld, SimFixture};
use jobbot_sim::{MessageRecord, NewUser, SimMedia, SimParams};
use tokio::time::Duration;

use crate::client::RemoteConnector;
use crate::rpc::AdminRpcClient;

/// The contract fixture over a remote simulator.
pub type RemoteFixture = SimFixture<RemoteWorld>;

/// Parameters for running the contract suite on real time in seconds: fast calls, short flood
/// waits, a small cold-DM budget, and margins wide enough for a busy machine (a login code and a
/// QR-login token live 3 s, a dropped connection stays down 2 s). [`CONTRACT_PACING`] stays within these limits.
pub fn contract_params() -> SimParams {
    let fast = jobbot_sim::RateLimitParams {
        per_minute: 600,
        burst: 5,
        first_wait_seconds: 1,
        max_wait_seconds: 4,
        violation_memory_seconds: 60,
    };
    SimParams {
        call_latency_ms: 1,
        call_latency_jitter_ms: 1,
        send_messages: fast,
        resolve_username: fast,
        create_forum_topic: fast,
        join_channel: fast,
        cold_dm_daily_budget: 3,
        reconnect_delay_ms: 2_000,
        login_code_lifetime_seconds: 3,
        login_token_lifetime_seconds: 3,
        ..SimParams::default()
    }
}

/// One call every 150 ms: under [`contract_params`]' 10 calls a second, so a paced check never
/// meets a flood wait, while calls made back to back (a round trip on loopback takes well under
/// 100 ms) do.
pub const CONTRACT_PACING: jobbot_sim::contract::Pacing = jobbot_sim::contract::Pacing {
    resolve: Duration::from_millis(150),
    send: Duration::from_millis(150),
};

/// Builds the contract fixture in the (empty) world of the simulator behind `connector`.
/// Must run on a multi-threaded tokio runtime.
pub fn remote_fixture(connector: RemoteConnector) -> RemoteFixture {
    let world = RemoteWorld {
        connector: connector.clone(),
    };
    SimFixture::build(world, Arc::new(connector), CONTRACT_PACING)
}

/// `FixtureWorld` over the admin interface.
pub struct RemoteWorld {
    connector: RemoteConnector,
}

impl RemoteWorld {
    /// Runs an admin call to completion on this worker thread.
    fn call<T, F>(&self, call: impl FnOnce(Arc<crate::client::RpcClient>) -> F) -> T
    where
        F: Future<Output = Result<T, jsonrpsee::core::client::Error>>,
    {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let client = self
                    .connector
                    .client()
                    .await
                    .unwrap_or_else(|error| panic!("the simulator: {error}"));
                call(client)
                    .await
                    .unwrap_or_else(|error| panic!("an admin call failed: {error}"))
            })
        })
    }
}

fn session(raw: &str) -> SessionName {
    SessionName::parse(raw).expect("fixture session")
}

impl FixtureWorld for RemoteWorld {
    fn create_user(&self, user: NewUser) -> ChatId {
        self.call(|c| async move { c.create_user(user).await })
            .expect("fixture user")
    }
    fn create_account(&self, name: &str, user: NewUser) -> ChatId {
        let name = session(name);
        self.call(|c| async move { c.create_account(name, user).await })
            .expect("fixture account")
    }
    fn create_bot(&self, username: &str, name: &str) -> ChatId {
        let (username, name) = (username.to_owned(), name.to_owned());
        self.call(|c| async move { c.create_bot(username, name).await })
            .expect("fixture bot")
    }
    fn create_channel(&self, title: &str, username: Option<&str>, admins: &[ChatId]) -> ChatId {
        let (title, username, admins) = (
            title.to_owned(),
            username.map(str::to_owned),
            admins.to_vec(),
        );
        self.call(|c| async move { c.create_channel(title, username, admins).await })
            .expect("fixture channel")
    }
    fn create_group(
        &self,
        title: &str,
        username: Option<&str>,
        forum: bool,
        admins: &[ChatId],
    ) -> ChatId {
        let (title, username, admins) = (
            title.to_owned(),
            username.map(str::to_owned),
            admins.to_vec(),
        );
        self.call(|c| async move { c.create_group(title, username, forum, admins).await })
            .expect("fixture group")
    }
    fn add_member(&self, chat: ChatId, user: ChatId) {
        self.call(|c| async move { c.add_member(chat, user).await })
            .expect("fixture member")
    }
    fn create_invite(&self, chat: ChatId) -> String {
        self.call(|c| async move { c.create_invite(chat).await })
            .expect("fixture invite")
    }
    fn ban_phone(&self, phone: &PhoneNumber) {
        let phone = phone.clone();
        self.call(|c| async move { c.ban_phone(phone).await })
    }
    fn params(&self) -> SimParams {
        self.call(|c| async move { c.params().await })
    }
    fn find_username(&self, username: &str) -> Option<ChatId> {
        let username = username.to_owned();
        self.call(|c| async move { c.find_username(username).await })
    }
    fn user_of_session(&self, session: &SessionName) -> Option<ChatId> {
        let session = session.clone();
        self.call(|c| async move { c.user_of_session(session).await })
    }
    fn send_direct(&self, from: ChatId, to: ChatId, text: &str) -> Result<(), String> {
        let text = text.to_owned();
        self.call(|c| async move { c.direct_message(from, to, text).await })
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
    fn send_direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: SimMedia,
        caption: &str,
    ) -> Result<(), String> {
        let caption = caption.to_owned();
        self.call(|c| async move { c.direct_media(from, to, media, caption).await })
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
    fn channel_post(&self, channel: ChatId, text: &str) -> Result<(), String> {
        let text = text.to_owned();
        self.call(|c| async move { c.channel_post(channel, text).await })
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
    fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: &str,
    ) -> Result<(), String> {
        let text = text.to_owned();
        self.call(|c| async move { c.group_post(group, author, topic, text).await })
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
    fn delete_topic(&self, group: ChatId, topic: TopicId) -> Result<(), String> {
        self.call(|c| async move { c.delete_topic(group, topic).await })
            .map_err(|error| error.to_string())
    }
    fn received_from(&self, recipient: ChatId, sender: ChatId) -> Vec<MessageRecord> {
        self.call(|c| async move { c.received_from(recipient, sender).await })
            .unwrap_or_default()
    }
    fn ban(&self, user: ChatId) {
        self.call(|c| async move { c.ban(user).await })
            .expect("ban a fixture account")
    }
    fn flood_channel_catch_up(
        &self,
        account: ChatId,
        channel: ChatId,
        seconds: u32,
    ) -> Result<(), String> {
        self.call(|c| async move { c.flood_channel_catch_up(account, channel, seconds).await })
            .map_err(|error| error.to_string())
    }
    fn drop_connection(&self, session: &SessionName) {
        let session = session.clone();
        self.call(|c| async move { c.drop_connection(session).await })
    }
    fn duplicate_connect(&self, session: &SessionName) -> Arc<dyn TelegramAccount> {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.connector.duplicate_connect(session))
        })
        .unwrap_or_else(|error| panic!("duplicate connect {session}: {error}"))
    }
    fn last_login_code(&self, phone: &PhoneNumber) -> Option<String> {
        let phone = phone.clone();
        self.call(|c| async move { c.last_login_code(phone).await })
    }
    fn accept_login_token(&self, phone: &PhoneNumber, url: &str) -> Result<(), String> {
        let (phone, url) = (phone.clone(), url.to_owned());
        self.call(|c| async move { c.accept_login_token(phone, url).await })
            .map_err(|error| error.to_string())
    }
}
