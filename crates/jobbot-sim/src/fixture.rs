//! A ready-made world for the [`crate::contract`] suite (and a small demo world): two agent
//! accounts, people with and without strict privacy, a bot, channels, a forum, and login phones.
//!
//! The fixture builds and drives its world only through [`FixtureWorld`], so the same fixture
//! runs the suite against the in-process [`SimWorld`] and against a simulator in another process
//! (`jobbot-sim-remote` implements [`FixtureWorld`] over its admin interface).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{AccountConnector, TelegramAccount, TopicId};
use tokio::time::Duration;

use crate::admin::Admin;
use crate::contract::{ContractFixture, LoginPhones, Pacing, WorldControls};
use crate::{MessageRecord, NewUser, SimConnector, SimMedia, SimParams, SimWorld};

/// What the fixture needs from a world: building it, making things happen, and reading what
/// arrived. Set-up failures panic (they are test set-up); the controls' failures are text for
/// the check's report.
pub trait FixtureWorld: Send + Sync + 'static {
    fn create_user(&self, user: NewUser) -> ChatId;
    fn create_account(&self, session: &str, user: NewUser) -> ChatId;
    fn create_bot(&self, username: &str, name: &str) -> ChatId;
    fn create_channel(&self, title: &str, username: Option<&str>, admins: &[ChatId]) -> ChatId;
    fn create_group(
        &self,
        title: &str,
        username: Option<&str>,
        forum: bool,
        admins: &[ChatId],
    ) -> ChatId;
    fn add_member(&self, chat: ChatId, user: ChatId);
    fn create_invite(&self, chat: ChatId) -> String;
    fn ban_phone(&self, phone: &PhoneNumber);
    fn params(&self) -> SimParams;
    fn find_username(&self, username: &str) -> Option<ChatId>;
    fn user_of_session(&self, session: &SessionName) -> Option<ChatId>;
    fn send_direct(&self, from: ChatId, to: ChatId, text: &str) -> Result<(), String>;
    fn send_direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: SimMedia,
        caption: &str,
    ) -> Result<(), String>;
    fn channel_post(&self, channel: ChatId, text: &str) -> Result<(), String>;
    fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: &str,
    ) -> Result<(), String>;
    fn delete_topic(&self, group: ChatId, topic: TopicId) -> Result<(), String>;
    fn received_from(&self, recipient: ChatId, sender: ChatId) -> Vec<MessageRecord>;
    fn ban(&self, user: ChatId);
    fn drop_connection(&self, session: &SessionName);
    /// A second connection of `session` that bypasses the session lock (a copied session file).
    fn duplicate_connect(&self, session: &SessionName) -> Arc<dyn TelegramAccount>;
    fn last_login_code(&self, phone: &PhoneNumber) -> Option<String>;
    /// The account of `phone` scans a login's QR code with its phone.
    fn accept_login_token(&self, phone: &PhoneNumber, url: &str) -> Result<(), String>;
    /// The account's next catch-up of `channel` gets a flood wait of `seconds`
    /// ([`SimWorld::flood_channel_catch_up`]); a world that cannot says so.
    fn flood_channel_catch_up(
        &self,
        _account: ChatId,
        _channel: ChatId,
        _seconds: u32,
    ) -> Result<(), String> {
        Err("this world cannot impose a catch-up flood wait".into())
    }
}

/// The in-process world, through [`Admin`]'s checks.
impl FixtureWorld for SimWorld {
    fn create_user(&self, user: NewUser) -> ChatId {
        Admin::new(self.clone())
            .create_user(&user)
            .expect("fixture user")
    }
    fn create_account(&self, session_name: &str, user: NewUser) -> ChatId {
        Admin::new(self.clone())
            .create_account(&session(session_name), &user)
            .expect("fixture account")
    }
    fn create_bot(&self, username: &str, name: &str) -> ChatId {
        SimWorld::create_bot(self, username, name)
    }
    fn create_channel(&self, title: &str, username: Option<&str>, admins: &[ChatId]) -> ChatId {
        SimWorld::create_channel(self, title, username, admins)
    }
    fn create_group(
        &self,
        title: &str,
        username: Option<&str>,
        forum: bool,
        admins: &[ChatId],
    ) -> ChatId {
        SimWorld::create_group(self, title, username, forum, admins)
    }
    fn add_member(&self, chat: ChatId, user: ChatId) {
        SimWorld::add_member(self, chat, user)
    }
    fn create_invite(&self, chat: ChatId) -> String {
        SimWorld::create_invite(self, chat)
    }
    fn ban_phone(&self, phone: &PhoneNumber) {
        SimWorld::ban_phone(self, phone)
    }
    fn params(&self) -> SimParams {
        SimWorld::params(self)
    }
    fn find_username(&self, username: &str) -> Option<ChatId> {
        SimWorld::find_username(self, username)
    }
    fn user_of_session(&self, session: &SessionName) -> Option<ChatId> {
        SimWorld::user_of_session(self, session)
    }
    fn send_direct(&self, from: ChatId, to: ChatId, text: &str) -> Result<(), String> {
        SimWorld::send_direct(self, from, to, text);
        Ok(())
    }
    fn send_direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: SimMedia,
        caption: &str,
    ) -> Result<(), String> {
        SimWorld::send_direct_media(self, from, to, media, caption)
            .map(|_| ())
            .map_err(|refused| refused.to_string())
    }
    fn channel_post(&self, channel: ChatId, text: &str) -> Result<(), String> {
        SimWorld::channel_post(self, channel, text);
        Ok(())
    }
    fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: &str,
    ) -> Result<(), String> {
        SimWorld::group_post(self, group, author, topic, text)
            .map(|_| ())
            .map_err(|error| error.to_string())
    }
    fn delete_topic(&self, group: ChatId, topic: TopicId) -> Result<(), String> {
        SimWorld::delete_topic(self, group, topic);
        Ok(())
    }
    fn received_from(&self, recipient: ChatId, sender: ChatId) -> Vec<MessageRecord> {
        SimWorld::received_from(self, recipient, sender)
    }
    fn ban(&self, user: ChatId) {
        SimWorld::ban(self, user)
    }
    fn drop_connection(&self, session: &SessionName) {
        SimWorld::drop_connection(self, session)
    }
    fn duplicate_connect(&self, session: &SessionName) -> Arc<dyn TelegramAccount> {
        SimWorld::duplicate_connect(self, session)
    }
    fn last_login_code(&self, phone: &PhoneNumber) -> Option<String> {
        SimWorld::last_login_code(self, phone)
    }
    fn accept_login_token(&self, phone: &PhoneNumber, url: &str) -> Result<(), String> {
        SimWorld::accept_login_token(self, phone, url).map_err(|error| error.to_string())
    }
    fn flood_channel_catch_up(
        &self,
        account: ChatId,
        channel: ChatId,
        seconds: u32,
    ) -> Result<(), String> {
        SimWorld::flood_channel_catch_up(self, account, channel, seconds);
        Ok(())
    }
}

/// The simulator's [`ContractFixture`], with every [`WorldControls`] available.
pub struct SimFixture<W: FixtureWorld = SimWorld> {
    world: W,
    connector: Arc<dyn AccountConnector>,
    pacing: Pacing,
    postable_channel: ChatId,
    forum_group: ChatId,
    forum_member: ChatId,
    invite_hash: String,
    strangers_created: AtomicUsize,
}

const FIRST_ACCOUNT: &str = "agent_one";
const SECOND_ACCOUNT: &str = "agent_two";
const SPARE_SESSION: &str = "agent_spare";
const PLAIN_PHONE: &str = "+79990000101";
const TWO_FACTOR_PHONE: &str = "+79990000102";
const BANNED_PHONE: &str = "+79990000103";
const UNREGISTERED_PHONE: &str = "+79990000104";
// Test-only credentials of a simulated account.
const TWO_FACTOR_PASSWORD: &str = "correct horse battery";
const TWO_FACTOR_HINT: &str = "the horse";

impl SimFixture<SimWorld> {
    /// Builds the world in process. Must run inside a tokio runtime (the world's clock is tokio's).
    pub fn new(params: SimParams) -> Self {
        let world = SimWorld::new(params);
        let connector = Arc::new(SimConnector::new(world.clone()));
        Self::build(world, connector, Pacing::CAREFUL)
    }
}

impl<W: FixtureWorld> SimFixture<W> {
    /// Builds the fixture's people, chats and phones in `world` (which must be empty of them),
    /// opening its sessions through `connector`; the checks space their calls by `pacing`.
    pub fn build(world: W, connector: Arc<dyn AccountConnector>, pacing: Pacing) -> Self {
        let first = world.create_account(
            FIRST_ACCOUNT,
            NewUser::named("Anna")
                .last_name("Agent")
                .username("agent_one_hr")
                .phone("+79990000001"),
        );
        let second = world.create_account(
            SECOND_ACCOUNT,
            NewUser::named("Boris")
                .username("agent_two_hr")
                .phone("+79990000002"),
        );
        world.create_user(
            NewUser::named("Regular")
                .last_name("Person")
                .username("regular_person"),
        );
        world.create_user(
            NewUser::named("Private")
                .username("private_person")
                .refusing_strangers(),
        );
        world.create_bot("jobs_helper_bot", "Jobs helper");
        world.create_channel("Public jobs", Some("public_jobs"), &[]);
        let postable_channel =
            world.create_channel("Our vacancies", Some("our_vacancies"), &[first]);
        world.add_member(postable_channel, second);
        let forum_group = world.create_group("CRM", None, true, &[first]);
        let forum_member = world.create_user(NewUser::named("Forum").username("forum_member"));
        world.add_member(forum_group, forum_member);
        let private_group = world.create_group("Closed chat", None, false, &[forum_member]);
        let invite_hash = world.create_invite(private_group);
        world.create_user(NewUser::named("Plain").phone(PLAIN_PHONE));
        world.create_user(
            NewUser::named("Careful")
                .phone(TWO_FACTOR_PHONE)
                .two_factor(TWO_FACTOR_PASSWORD, Some(TWO_FACTOR_HINT)),
        );
        world.ban_phone(&phone(BANNED_PHONE));
        Self {
            world,
            connector,
            pacing,
            postable_channel,
            forum_group,
            forum_member,
            invite_hash,
            strangers_created: AtomicUsize::new(0),
        }
    }

    pub fn world(&self) -> &W {
        &self.world
    }

    fn user(&self, username: &Username) -> Result<ChatId, String> {
        self.world
            .find_username(username.as_str())
            .ok_or_else(|| format!("no user {username} in the world"))
    }

    fn account(&self, session: &SessionName) -> ChatId {
        self.world
            .user_of_session(session)
            .unwrap_or_else(|| panic!("session {session} is not logged in"))
    }
}

fn phone(raw: &str) -> PhoneNumber {
    PhoneNumber::parse(raw).expect("fixture phone")
}

fn username(raw: &str) -> Username {
    Username::parse(raw).expect("fixture username")
}

fn session(raw: &str) -> SessionName {
    SessionName::parse(raw).expect("fixture session")
}

impl<W: FixtureWorld> ContractFixture for SimFixture<W> {
    fn connector(&self) -> Arc<dyn AccountConnector> {
        Arc::clone(&self.connector)
    }
    fn first_account(&self) -> SessionName {
        session(FIRST_ACCOUNT)
    }
    fn second_account(&self) -> SessionName {
        session(SECOND_ACCOUNT)
    }
    fn spare_session(&self) -> SessionName {
        session(SPARE_SESSION)
    }
    fn regular_user(&self) -> Username {
        username("regular_person")
    }
    fn private_user(&self) -> Username {
        username("private_person")
    }
    fn bot(&self) -> Username {
        username("jobs_helper_bot")
    }
    fn public_channel(&self) -> Username {
        username("public_jobs")
    }
    fn missing_username(&self) -> Username {
        username("nobody_has_this_name")
    }
    fn postable_channel(&self) -> ChatId {
        self.postable_channel
    }
    fn forum_group(&self) -> ChatId {
        self.forum_group
    }
    fn invite_hash(&self) -> String {
        self.invite_hash.clone()
    }
    fn random_id_base(&self) -> i64 {
        1_000
    }
    fn login_phones(&self) -> Option<LoginPhones> {
        Some(LoginPhones {
            plain: phone(PLAIN_PHONE),
            two_factor: phone(TWO_FACTOR_PHONE),
            password: TWO_FACTOR_PASSWORD.to_owned(),
            hint: Some(TWO_FACTOR_HINT.to_owned()),
            banned: phone(BANNED_PHONE),
            unregistered: phone(UNREGISTERED_PHONE),
        })
    }
    fn controls(&self) -> Option<&dyn WorldControls> {
        Some(self)
    }
    fn pacing(&self) -> Pacing {
        self.pacing
    }
}

impl<W: FixtureWorld> WorldControls for SimFixture<W> {
    fn cold_dm_budget(&self) -> u32 {
        self.world.params().cold_dm_daily_budget
    }

    fn fresh_strangers(&self, count: usize) -> Vec<Username> {
        (0..count)
            .map(|_| {
                let index = self.strangers_created.fetch_add(1, Ordering::Relaxed);
                let name = format!("stranger_{index:05}");
                self.world
                    .create_user(NewUser::named("Stranger").username(&name));
                username(&name)
            })
            .collect()
    }

    fn user_writes_to(
        &self,
        writer: &Username,
        account: &SessionName,
        text: &str,
    ) -> Result<(), String> {
        let writer = self.user(writer)?;
        self.world.send_direct(writer, self.account(account), text)
    }

    fn user_sends_file_to(
        &self,
        writer: &Username,
        account: &SessionName,
        media: SimMedia,
        caption: &str,
    ) -> Result<(), String> {
        let writer = self.user(writer)?;
        self.world
            .send_direct_media(writer, self.account(account), media, caption)
    }

    fn channel_posts(&self, channel: ChatId, text: &str) -> Result<(), String> {
        self.world.channel_post(channel, text)
    }

    fn member_posts(
        &self,
        group: ChatId,
        topic: Option<TopicId>,
        text: &str,
    ) -> Result<(), String> {
        self.world.group_post(group, self.forum_member, topic, text)
    }

    fn delete_topic(&self, group: ChatId, topic: TopicId) -> Result<(), String> {
        self.world.delete_topic(group, topic)
    }

    fn messages_received(&self, recipient: &Username, from: &SessionName) -> Vec<String> {
        let Ok(recipient) = self.user(recipient) else {
            return Vec::new();
        };
        self.world
            .received_from(recipient, self.account(from))
            .into_iter()
            .map(|message| message.text)
            .collect()
    }

    fn ban(&self, account: &SessionName) {
        self.world.ban(self.account(account));
    }

    fn drop_connection(&self, account: &SessionName) {
        self.world.drop_connection(account);
    }

    fn duplicate_connection(&self, account: &SessionName) -> Arc<dyn TelegramAccount> {
        self.world.duplicate_connect(account)
    }

    fn last_login_code(&self, phone: &PhoneNumber) -> Option<String> {
        self.world.last_login_code(phone)
    }

    fn login_code_lifetime(&self) -> Duration {
        Duration::from_secs(self.world.params().login_code_lifetime_seconds)
    }

    fn scan_login_qr(&self, phone: &PhoneNumber, url: &str) -> Result<(), String> {
        self.world.accept_login_token(phone, url)
    }

    fn flood_channel_catch_up(
        &self,
        account: &SessionName,
        channel: ChatId,
        seconds: u32,
    ) -> Result<(), String> {
        self.world
            .flood_channel_catch_up(self.account(account), channel, seconds)
    }
}
