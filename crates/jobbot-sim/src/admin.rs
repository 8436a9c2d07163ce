//! The world's administration as fallible calls with serialisable inputs and outputs: what
//! `jobbot sim serve` offers over its admin interface (tests, the crash suite and scripted worlds
//! build and drive a world in another process with it).
//!
//! [`SimWorld`]'s own set-up methods panic on bad input (they are test set-up in-process); over a
//! wire that would take the server down, so [`Admin`] checks every id, username and phone first
//! and answers an [`AdminError`] naming what is wrong. The world only grows (users, chats and
//! sessions are never removed), so a check stays true for the call that follows it.

use std::fmt;

use jobbot_core::ids::{ChatId, PhoneNumber, SessionName, Username};
use jobbot_core::telegram::{TelegramError, TopicId};
use serde::{Deserialize, Serialize};

use crate::SimParams;
use crate::history::ConnectionEntry;
use crate::media::SimMedia;
use crate::world::{AccountCounters, MessageRecord, NewUser, SimWorld};

/// Why an admin call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "error")]
pub enum AdminError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{id} is not a user of this world")]
    UnknownUser { id: ChatId },
    #[error("{id} is not a chat of this world")]
    UnknownChat { id: ChatId },
    #[error("session {session} was never logged in")]
    UnknownSession { session: SessionName },
    #[error("the username {username} is taken")]
    UsernameTaken { username: Username },
    #[error("the phone number {phone} is taken")]
    PhoneTaken { phone: PhoneNumber },
    #[error("{chat} is not a forum group")]
    NotAForum { chat: ChatId },
    #[error("chat {chat} has no message {message_id}")]
    UnknownMessage { chat: ChatId, message_id: i32 },
    /// The simulated Telegram refused the action (a post in a deleted topic, by a non-member …).
    #[error("telegram refused: {refused}")]
    Telegram { refused: TelegramError },
    /// The phone's scan of a QR-login token was refused.
    #[error("the QR scan was refused: {refused}")]
    QrScan { refused: crate::QrScanError },
}

/// A forum topic and what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicView {
    pub id: TopicId,
    pub title: String,
    pub deleted: bool,
    /// The topic's messages in order, its creation service message first (none once deleted).
    pub messages: Vec<MessageRecord>,
}

/// Fallible administration of one world (see the module documentation).
#[derive(Clone)]
pub struct Admin {
    world: SimWorld,
}

type Result<T> = std::result::Result<T, AdminError>;

impl Admin {
    pub fn new(world: SimWorld) -> Self {
        Self { world }
    }

    pub fn world(&self) -> &SimWorld {
        &self.world
    }

    // ----- Checks -----

    fn user(&self, id: ChatId) -> Result<ChatId> {
        if self.world.with(|world| world.users.contains_key(&id)) {
            Ok(id)
        } else {
            Err(AdminError::UnknownUser { id })
        }
    }

    fn chat(&self, id: ChatId) -> Result<ChatId> {
        if self.world.with(|world| world.chats.contains_key(&id)) {
            Ok(id)
        } else {
            Err(AdminError::UnknownChat { id })
        }
    }

    fn forum(&self, id: ChatId) -> Result<ChatId> {
        self.chat(id)?;
        if self.world.with(|world| world.chat(id).forum) {
            Ok(id)
        } else {
            Err(AdminError::NotAForum { chat: id })
        }
    }

    fn free_username(&self, field: &str, raw: Option<&str>) -> Result<Option<Username>> {
        let Some(raw) = raw else { return Ok(None) };
        let username = Username::parse(raw).map_err(|error| invalid(field, error))?;
        if self
            .world
            .with(|world| world.usernames.contains_key(&username))
        {
            return Err(AdminError::UsernameTaken { username });
        }
        Ok(Some(username))
    }

    /// `user`, if its username and phone are free.
    fn new_user<'a>(&self, user: &'a NewUser) -> Result<&'a NewUser> {
        if user.first_name.trim().is_empty() {
            return Err(invalid("first_name", "must not be empty"));
        }
        if let Some(username) = &user.username
            && self
                .world
                .with(|world| world.usernames.contains_key(username))
        {
            return Err(AdminError::UsernameTaken {
                username: username.clone(),
            });
        }
        if let Some(phone) = &user.phone
            && self.world.with(|world| world.phones.contains_key(phone))
        {
            return Err(AdminError::PhoneTaken {
                phone: phone.clone(),
            });
        }
        Ok(user)
    }

    fn logged_in(&self, session: &SessionName) -> Result<ChatId> {
        self.world
            .user_of_session(session)
            .ok_or_else(|| AdminError::UnknownSession {
                session: session.clone(),
            })
    }

    // ----- Building the world -----

    pub fn create_user(&self, user: &NewUser) -> Result<ChatId> {
        let user = self.new_user(user)?;
        Ok(self.world.create_user(user.clone()))
    }

    /// A user with a logged-in session (as after `jobbot login`), with limits of its own when
    /// the world draws them (`SimParams::account_limits`).
    pub fn create_account(&self, session: &SessionName, user: &NewUser) -> Result<ChatId> {
        let user = self.new_user(user)?;
        Ok(self.world.create_account(session.as_str(), user.clone()))
    }

    /// Puts a fresh, logged-in key for `user` into `session`.
    pub fn log_in_session(&self, session: &SessionName, user: ChatId) -> Result<()> {
        self.user(user)?;
        self.world.log_in_session(session.as_str(), user);
        Ok(())
    }

    pub fn create_bot(&self, username: &str, name: &str) -> Result<ChatId> {
        let username = self
            .free_username("username", Some(username))?
            .expect("given");
        Ok(self.world.create_bot(username.as_str(), name))
    }

    fn admins(&self, admins: &[ChatId]) -> Result<()> {
        admins
            .iter()
            .try_for_each(|admin| self.user(*admin).map(|_| ()))
    }

    pub fn create_channel(
        &self,
        title: &str,
        username: Option<&str>,
        admins: &[ChatId],
    ) -> Result<ChatId> {
        let username = self.free_username("username", username)?;
        self.admins(admins)?;
        Ok(self
            .world
            .create_channel(title, username.as_ref().map(Username::as_str), admins))
    }

    pub fn create_group(
        &self,
        title: &str,
        username: Option<&str>,
        forum: bool,
        admins: &[ChatId],
    ) -> Result<ChatId> {
        let username = self.free_username("username", username)?;
        self.admins(admins)?;
        Ok(self.world.create_group(
            title,
            username.as_ref().map(Username::as_str),
            forum,
            admins,
        ))
    }

    pub fn add_member(&self, chat: ChatId, user: ChatId) -> Result<()> {
        self.world.add_member(self.chat(chat)?, self.user(user)?);
        Ok(())
    }

    pub fn add_admin(&self, chat: ChatId, user: ChatId) -> Result<()> {
        self.world.add_admin(self.chat(chat)?, self.user(user)?);
        Ok(())
    }

    pub fn add_contact(&self, owner: ChatId, contact: ChatId) -> Result<()> {
        self.world
            .add_contact(self.user(owner)?, self.user(contact)?);
        Ok(())
    }

    pub fn set_cold_dm_budget(&self, account: ChatId, budget: u32) -> Result<()> {
        self.world.set_cold_dm_budget(self.user(account)?, budget);
        Ok(())
    }

    pub fn impose_flood_wait(&self, account: ChatId, seconds: u32) -> Result<()> {
        self.world.impose_flood_wait(self.user(account)?, seconds);
        Ok(())
    }

    /// The account's next catch-up of `channel` gets a flood wait of `seconds`
    /// ([`SimWorld::flood_channel_catch_up`]).
    pub fn flood_channel_catch_up(
        &self,
        account: ChatId,
        channel: ChatId,
        seconds: u32,
    ) -> Result<()> {
        self.world
            .flood_channel_catch_up(self.user(account)?, self.chat(channel)?, seconds);
        Ok(())
    }

    /// A new invite link hash (the part after `t.me/+`).
    pub fn create_invite(&self, chat: ChatId) -> Result<String> {
        Ok(self.world.create_invite(self.chat(chat)?))
    }

    pub fn revoke_invite(&self, hash: &str) {
        self.world.revoke_invite(hash);
    }

    // ----- Making things happen -----

    /// A source (broadcast channel) publishes a post.
    pub fn channel_post(&self, channel: ChatId, text: &str) -> Result<i32> {
        Ok(self.world.channel_post(self.chat(channel)?, text))
    }

    /// `author` writes in a group, into `topic` when given (an operator answering in a topic).
    pub fn group_post(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        text: &str,
    ) -> Result<i32> {
        self.chat(group)?;
        self.user(author)?;
        self.world
            .group_post(group, author, topic, text)
            .map_err(|refused| AdminError::Telegram { refused })
    }

    /// `from` writes privately to `to` (a recruiter replying to an agent). Returns the message id
    /// in the recipient's box.
    pub fn send_direct(&self, from: ChatId, to: ChatId, text: &str) -> Result<i32> {
        Ok(self
            .world
            .send_direct(self.user(from)?, self.user(to)?, text))
    }

    /// `from` sends a file with `caption` privately to `to` (a recruiter sending a CV). A file
    /// over the upload limit is refused as Telegram refuses it.
    pub fn send_direct_media(
        &self,
        from: ChatId,
        to: ChatId,
        media: SimMedia,
        caption: &str,
    ) -> Result<i32> {
        self.world
            .send_direct_media(self.user(from)?, self.user(to)?, media, caption)
            .map_err(|refused| AdminError::Telegram { refused })
    }

    /// `author` posts a file with `caption` in a group, into `topic` when given (an operator
    /// sending a document to a contact).
    pub fn group_post_media(
        &self,
        group: ChatId,
        author: ChatId,
        topic: Option<TopicId>,
        media: SimMedia,
        caption: &str,
    ) -> Result<i32> {
        self.chat(group)?;
        self.user(author)?;
        self.world
            .group_post_media(group, author, topic, media, caption)
            .map_err(|refused| AdminError::Telegram { refused })
    }

    pub fn create_topic(&self, group: ChatId, author: ChatId, title: &str) -> Result<TopicId> {
        Ok(self
            .world
            .create_topic(self.forum(group)?, self.user(author)?, title))
    }

    pub fn delete_topic(&self, group: ChatId, topic: TopicId) -> Result<()> {
        self.world.delete_topic(self.forum(group)?, topic);
        Ok(())
    }

    pub fn edit_chat_message(&self, chat: ChatId, message_id: i32, text: &str) -> Result<()> {
        self.chat(chat)?;
        let exists = self.world.with(|world| {
            world
                .chat(chat)
                .messages
                .iter()
                .any(|message| message.message_id == message_id)
        });
        if !exists {
            return Err(AdminError::UnknownMessage { chat, message_id });
        }
        self.world.edit_chat_message(chat, message_id, text);
        Ok(())
    }

    // ----- Ending accounts and connections -----

    pub fn ban(&self, user: ChatId) -> Result<()> {
        self.world.ban(self.user(user)?);
        Ok(())
    }

    pub fn freeze(&self, user: ChatId) -> Result<()> {
        self.world.freeze(self.user(user)?);
        Ok(())
    }

    pub fn deactivate(&self, user: ChatId) -> Result<()> {
        self.world.deactivate(self.user(user)?);
        Ok(())
    }

    pub fn revoke(&self, session: &SessionName) -> Result<()> {
        self.logged_in(session)?;
        self.world.revoke(session);
        Ok(())
    }

    pub fn unregister(&self, session: &SessionName) -> Result<()> {
        self.logged_in(session)?;
        self.world.unregister(session);
        Ok(())
    }

    pub fn ban_phone(&self, phone: &PhoneNumber) {
        self.world.ban_phone(phone);
    }

    pub fn mark_phone_invalid(&self, phone: &PhoneNumber) {
        self.world.mark_phone_invalid(phone);
    }

    /// Drops every live connection of `session` (it comes back after `reconnect_delay_ms`).
    /// Needs a tokio runtime.
    pub fn drop_connection(&self, session: &SessionName) {
        self.world.drop_connection(session);
    }

    // ----- Reading the record -----

    pub fn params(&self) -> SimParams {
        self.world.params()
    }

    pub fn now_unix(&self) -> i64 {
        self.world.now_unix()
    }

    pub fn find_username(&self, username: &str) -> Option<ChatId> {
        self.world.find_username(username)
    }

    pub fn user_of_session(&self, session: &SessionName) -> Option<ChatId> {
        self.world.user_of_session(session)
    }

    pub fn last_login_code(&self, phone: &PhoneNumber) -> Option<String> {
        self.world.last_login_code(phone)
    }

    /// The account of `phone` scans a login's QR code (`tg://login?token=…`) with its phone.
    pub fn accept_login_token(&self, phone: &PhoneNumber, url: &str) -> Result<()> {
        self.world
            .accept_login_token(phone, url)
            .map_err(|refused| AdminError::QrScan { refused })
    }

    pub fn chat_messages(&self, chat: ChatId) -> Result<Vec<MessageRecord>> {
        Ok(self.world.chat_messages(self.chat(chat)?))
    }

    /// Every private message `user` sent or received, with `user`'s own ids.
    pub fn private_messages(&self, user: ChatId) -> Result<Vec<MessageRecord>> {
        Ok(self.world.private_messages(self.user(user)?))
    }

    /// The private messages between `user` and `other`, both ways, as `user`'s box has them.
    pub fn conversation(&self, user: ChatId, other: ChatId) -> Result<Vec<MessageRecord>> {
        self.user(other)?;
        Ok(self
            .private_messages(user)?
            .into_iter()
            .filter(|message| message.chat == other)
            .collect())
    }

    /// The private messages `recipient` received from `sender`.
    pub fn received_from(&self, recipient: ChatId, sender: ChatId) -> Result<Vec<MessageRecord>> {
        Ok(self
            .world
            .received_from(self.user(recipient)?, self.user(sender)?))
    }

    /// A forum's topics, each with its messages.
    pub fn topics(&self, group: ChatId) -> Result<Vec<TopicView>> {
        self.forum(group)?;
        Ok(self.world.with(|world| {
            let chat = world.chat(group);
            chat.topics
                .iter()
                .map(|(id, topic)| TopicView {
                    id: *id,
                    title: topic.title.clone(),
                    deleted: topic.deleted,
                    messages: chat
                        .messages
                        .iter()
                        .filter(|message| message.topic == Some(*id))
                        .cloned()
                        .collect(),
                })
                .collect()
        }))
    }

    pub fn counters(&self, user: ChatId) -> Result<AccountCounters> {
        Ok(self.world.counters(self.user(user)?))
    }

    /// The limits `account` is held to (drawn per account or the world's).
    pub fn account_limits(&self, account: ChatId) -> Result<crate::AccountLimitDraw> {
        Ok(self.world.account_limits(self.user(account)?))
    }

    pub fn open_connections(&self, session: &SessionName) -> usize {
        self.world.open_connections(session)
    }

    pub fn connection_history(&self) -> Vec<ConnectionEntry> {
        self.world.connection_history()
    }

    pub fn duplicate_connections(&self) -> u64 {
        self.world.duplicate_connections()
    }
}

fn invalid(field: &str, message: impl fmt::Display) -> AdminError {
    AdminError::Invalid {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bad_input_is_refused_with_what_is_wrong_and_the_world_keeps_working() {
        let admin = Admin::new(SimWorld::new(SimParams::default()));
        let anna = admin
            .create_user(&NewUser::named("Anna").username("anna_hr"))
            .unwrap();
        assert_eq!(
            admin.create_user(&NewUser::named("Other").username("Anna_HR")),
            Err(AdminError::UsernameTaken {
                username: Username::parse("anna_hr").unwrap()
            })
        );
        assert!(matches!(
            admin.create_user(&NewUser::named(" ")),
            Err(AdminError::Invalid { field, .. }) if field == "first_name"
        ));
        let unparsable: std::result::Result<NewUser, _> =
            serde_json::from_value(serde_json::json!({"first_name": "Bad", "username": "a b"}));
        assert!(
            unparsable.is_err(),
            "an invalid username is refused on reading"
        );
        let nobody = ChatId::user(42).unwrap();
        assert_eq!(
            admin.send_direct(nobody, anna, "hi"),
            Err(AdminError::UnknownUser { id: nobody })
        );
        let channel = admin.create_channel("Jobs", None, &[anna]).unwrap();
        assert_eq!(
            admin.create_topic(channel, anna, "x"),
            Err(AdminError::NotAForum { chat: channel })
        );
        assert_eq!(
            admin.edit_chat_message(channel, 7, "x"),
            Err(AdminError::UnknownMessage {
                chat: channel,
                message_id: 7
            })
        );
        let forum = admin.create_group("CRM", None, true, &[anna]).unwrap();
        let topic = admin.create_topic(forum, anna, "Candidate").unwrap();
        admin.delete_topic(forum, topic).unwrap();
        assert_eq!(
            admin.group_post(forum, anna, Some(topic), "late"),
            Err(AdminError::Telegram {
                refused: TelegramError::TopicDeleted
            })
        );
        let posted = admin.channel_post(channel, "still works").unwrap();
        assert_eq!(admin.chat_messages(channel).unwrap()[0].message_id, posted);
        let topics = admin.topics(forum).unwrap();
        assert_eq!(
            (topics[0].title.as_str(), topics[0].deleted),
            ("Candidate", true)
        );
    }
}
