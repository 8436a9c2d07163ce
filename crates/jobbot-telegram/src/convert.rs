//! Pure conversions between raw TL (layer 230, grammers-tl-types 0.11) and jobbot's port types.
//!
//! Raw TL is used where the port needs something grammers' friendly API does not expose (the
//! caller's `random_id`, entities as given, forum topics), so these functions are the whole of
//! the layer dependency outside the call sites.

use grammers_session::types::PeerId;
use grammers_tl_types as tl;
use jobbot_core::ids::{ChatId, ChatKind, PhoneNumber, Username};
use jobbot_core::telegram::{
    ChatAccess, CodeDelivery, EntityKind, IncomingMessage, Me, MediaFile, MediaKind, MessageAuthor,
    Peer, PeerKind, PeerRef, Sender, SentCode, TelegramError, TextEntity, TopicId,
};

/// A grammers peer id in jobbot's Bot API form (`None` for the self-user sentinel).
pub fn chat_id_of(peer: PeerId) -> Option<ChatId> {
    peer.bot_api_dialog_id().and_then(ChatId::from_bot_api)
}

/// The id grammers uses for a jobbot chat id.
pub fn peer_id_of(chat: ChatId) -> PeerId {
    PeerId::from_bot_api_dialog_id(chat.get())
        .expect("a ChatId is a valid Bot API dialog id by construction")
}

/// The input peer for a peer this account resolved. The access hash is this account's own.
pub fn input_peer(peer: PeerRef) -> tl::enums::InputPeer {
    match peer.id.kind() {
        ChatKind::User => tl::types::InputPeerUser {
            user_id: peer.id.bare(),
            access_hash: peer.access_hash,
        }
        .into(),
        ChatKind::BasicGroup => tl::types::InputPeerChat {
            chat_id: peer.id.bare(),
        }
        .into(),
        ChatKind::Channel => tl::types::InputPeerChannel {
            channel_id: peer.id.bare(),
            access_hash: peer.access_hash,
        }
        .into(),
    }
}

/// The input user for a user this account has seen; the access hash is this account's own.
pub fn input_user(peer: PeerRef) -> tl::enums::InputUser {
    tl::types::InputUser {
        user_id: peer.id.bare(),
        access_hash: peer.access_hash,
    }
    .into()
}

/// The chat `channels.createChannel` created: the answer's `Updates` carries it (and only it).
pub fn created_chat(updates: &tl::enums::Updates) -> Option<Peer> {
    chats_of(updates).iter().find_map(peer_from_chat)
}

/// The link of `messages.exportChatInvite`'s answer (`https://t.me/+HASH`).
pub fn invite_link_of(invite: &tl::enums::ExportedChatInvite) -> Option<String> {
    match invite {
        tl::enums::ExportedChatInvite::ChatInviteExported(exported) => Some(exported.link.clone()),
        tl::enums::ExportedChatInvite::ChatInvitePublicJoinRequests => None,
    }
}

/// The users `channels.inviteToChannel` did not add because of their privacy settings
/// (`messages.invitedUsers.missing_invitees`).
pub fn missing_invitees_of(invited: &tl::enums::messages::InvitedUsers) -> Vec<ChatId> {
    let tl::enums::messages::InvitedUsers::Users(invited) = invited;
    invited
        .missing_invitees
        .iter()
        .filter_map(|missing| {
            let tl::enums::MissingInvitee::Invitee(missing) = missing;
            ChatId::user(missing.user_id)
        })
        .collect()
}

/// Entities as MTProto takes them (offsets are already in UTF-16 units on both sides).
pub fn tl_entities(entities: &[TextEntity]) -> Option<Vec<tl::enums::MessageEntity>> {
    if entities.is_empty() {
        return None;
    }
    Some(
        entities
            .iter()
            .map(|entity| {
                let (offset, length) = (entity.offset as i32, entity.length as i32);
                match &entity.kind {
                    EntityKind::Bold => tl::types::MessageEntityBold { offset, length }.into(),
                    EntityKind::Italic => tl::types::MessageEntityItalic { offset, length }.into(),
                    EntityKind::Code => tl::types::MessageEntityCode { offset, length }.into(),
                    EntityKind::Pre => tl::types::MessageEntityPre {
                        offset,
                        length,
                        language: String::new(),
                    }
                    .into(),
                    EntityKind::Url => tl::types::MessageEntityUrl { offset, length }.into(),
                    EntityKind::TextUrl(url) => tl::types::MessageEntityTextUrl {
                        offset,
                        length,
                        url: url.clone(),
                    }
                    .into(),
                    EntityKind::Blockquote => tl::types::MessageEntityBlockquote {
                        collapsed: false,
                        offset,
                        length,
                    }
                    .into(),
                }
            })
            .collect(),
    )
}

/// The id of the message created by a send with `random_id`, from the send's `Updates`
/// (core.telegram.org/constructor/updateMessageID). A private-chat send may answer with the short
/// `updateShortSentMessage`, which carries the id directly.
pub fn message_id_for_random_id(updates: &tl::enums::Updates, random_id: i64) -> Option<i32> {
    let find = |list: &[tl::enums::Update]| {
        list.iter().find_map(|update| match update {
            tl::enums::Update::MessageId(assigned) if assigned.random_id == random_id => {
                Some(assigned.id)
            }
            _ => None,
        })
    };
    match updates {
        tl::enums::Updates::UpdateShortSentMessage(sent) => Some(sent.id),
        tl::enums::Updates::Updates(all) => find(&all.updates),
        tl::enums::Updates::Combined(all) => find(&all.updates),
        tl::enums::Updates::UpdateShort(short) => find(std::slice::from_ref(&short.update)),
        _ => None,
    }
}

/// The chats in an `Updates`, e.g. the one just joined.
pub fn chats_of(updates: &tl::enums::Updates) -> &[tl::enums::Chat] {
    match updates {
        tl::enums::Updates::Updates(all) => &all.chats,
        tl::enums::Updates::Combined(all) => &all.chats,
        _ => &[],
    }
}

fn username_of(raw: Option<&str>) -> Option<Username> {
    raw.and_then(|name| Username::parse(name).ok())
}

pub fn me_from_user(user: &tl::types::User) -> Option<Me> {
    Some(Me {
        user_id: ChatId::user(user.id)?,
        username: username_of(user.username.as_deref()),
        first_name: user.first_name.clone().unwrap_or_default(),
        last_name: user.last_name.clone().filter(|name| !name.is_empty()),
        // Telegram sends the number without '+'.
        phone: user
            .phone
            .as_deref()
            .and_then(|phone| PhoneNumber::parse(&format!("+{phone}")).ok()),
    })
}

/// A user as a peer this account can address. `min` users carry an access hash that is only
/// valid inside the message they came with, so they are not addressable.
pub fn peer_from_user(user: &tl::types::User) -> Option<Peer> {
    let access_hash = if user.min { None } else { user.access_hash };
    Some(Peer {
        peer: PeerRef {
            id: ChatId::user(user.id)?,
            access_hash: access_hash?,
        },
        kind: if user.bot {
            PeerKind::Bot
        } else {
            PeerKind::User
        },
        username: username_of(user.username.as_deref()),
        name: user.first_name.clone().unwrap_or_default(),
        last_name: user.last_name.clone().filter(|name| !name.is_empty()),
    })
}

/// `users.getUsers` for the author of a group message, named by that message
/// (`inputUserFromMessage`, core.telegram.org/api/min) in `chat`, the group as this account
/// addresses it.
pub fn message_author_request(
    chat: tl::enums::InputPeer,
    author: &MessageAuthor,
) -> tl::functions::users::GetUsers {
    tl::functions::users::GetUsers {
        id: vec![
            tl::types::InputUserFromMessage {
                peer: chat,
                msg_id: author.message_id,
                user_id: author.user.bare(),
            }
            .into(),
        ],
    }
}

/// The author in `users.getUsers`' answer, addressable by this account. Telegram answers
/// `userEmpty` for a user it cannot show; a user still `min` carries no usable hash: either way
/// the author cannot be reached through this message (`PeerInvalid`, as `USER_ID_INVALID`).
pub fn message_author_in(users: &[tl::enums::User], author: ChatId) -> Result<Peer, TelegramError> {
    users
        .iter()
        .find_map(|user| match user {
            tl::enums::User::User(user) if ChatId::user(user.id) == Some(author) => {
                peer_from_user(user)
            }
            _ => None,
        })
        .ok_or(TelegramError::PeerInvalid)
}

/// A chat as a peer this account can address. Basic groups need no access hash.
pub fn peer_from_chat(chat: &tl::enums::Chat) -> Option<Peer> {
    let group =
        |id: ChatId, access_hash: i64, kind: PeerKind, username: Option<&str>, title: &str| Peer {
            peer: PeerRef { id, access_hash },
            kind,
            username: username_of(username),
            name: title.to_owned(),
            last_name: None,
        };
    match chat {
        tl::enums::Chat::Chat(chat) => Some(group(
            ChatId::basic_group(chat.id)?,
            0,
            PeerKind::Group,
            None,
            &chat.title,
        )),
        tl::enums::Chat::Forbidden(chat) => Some(group(
            ChatId::basic_group(chat.id)?,
            0,
            PeerKind::Group,
            None,
            &chat.title,
        )),
        tl::enums::Chat::Channel(channel) if !channel.min => Some(group(
            ChatId::channel(channel.id)?,
            channel.access_hash?,
            if channel.broadcast {
                PeerKind::Channel
            } else {
                PeerKind::Group
            },
            channel.username.as_deref(),
            &channel.title,
        )),
        tl::enums::Chat::ChannelForbidden(channel) => Some(group(
            ChatId::channel(channel.id)?,
            channel.access_hash,
            if channel.broadcast {
                PeerKind::Channel
            } else {
                PeerKind::Group
            },
            None,
            &channel.title,
        )),
        // `min` channels, empty chats and communities (a layer-230 container of chats, not a
        // place to post) are not addressable peers for jobbot.
        _ => None,
    }
}

/// Where a login code went and how a resend would send it (`auth.sentCode`'s `type`,
/// `next_type` and `timeout`, core.telegram.org/api/auth).
pub fn sent_code_of(code: &tl::types::auth::SentCode) -> SentCode {
    use tl::enums::auth::SentCodeType as Sent;
    let (delivery, length) = match &code.r#type {
        Sent::App(app) => (CodeDelivery::App, Some(app.length)),
        Sent::Sms(sms) => (CodeDelivery::Sms, Some(sms.length)),
        Sent::FirebaseSms(sms) => (CodeDelivery::Sms, Some(sms.length)),
        Sent::SmsWord(_) | Sent::SmsPhrase(_) => (CodeDelivery::Sms, None),
        Sent::Call(call) => (CodeDelivery::Call, Some(call.length)),
        Sent::FlashCall(_) => (CodeDelivery::MissedCall, None),
        Sent::MissedCall(call) => (CodeDelivery::MissedCall, Some(call.length)),
        Sent::EmailCode(email) => (CodeDelivery::Email, Some(email.length)),
        Sent::FragmentSms(sms) => (CodeDelivery::Fragment, Some(sms.length)),
        Sent::SetUpEmailRequired(_) => (CodeDelivery::Other, None),
    };
    let next = code.next_type.as_ref().map(|next| {
        use tl::enums::auth::CodeType as Next;
        match next {
            Next::Sms | Next::FragmentSms => CodeDelivery::Sms,
            Next::Call => CodeDelivery::Call,
            Next::FlashCall | Next::MissedCall => CodeDelivery::MissedCall,
        }
    });
    SentCode {
        delivery,
        length: length.and_then(|length| u32::try_from(length).ok()),
        next,
        resend_after_seconds: code.timeout.and_then(|seconds| u32::try_from(seconds).ok()),
    }
}

/// The id of a chat object, whatever its kind.
pub fn chat_id_of_chat(chat: &tl::enums::Chat) -> Option<ChatId> {
    match chat {
        tl::enums::Chat::Chat(chat) => ChatId::basic_group(chat.id),
        tl::enums::Chat::Forbidden(chat) => ChatId::basic_group(chat.id),
        tl::enums::Chat::Channel(channel) => ChatId::channel(channel.id),
        tl::enums::Chat::ChannelForbidden(channel) => ChatId::channel(channel.id),
        _ => None,
    }
}

/// What this account may do in a chat, read from the chat object Telegram sends it
/// (`channels.getChannels` / `messages.getChats`). Rights follow core.telegram.org/api/rights:
/// the creator may do everything; an admin has what its `admin_rights` grant; anyone else is
/// limited by their own `banned_rights` and the chat's `default_banned_rights`. A chat this
/// account is not allowed to see (`channelForbidden`, `chatForbidden`) is `CHANNEL_PRIVATE`.
pub fn chat_access_of(chat: &tl::enums::Chat) -> Result<ChatAccess, TelegramError> {
    let private = || TelegramError::ChatForbidden {
        code: "CHANNEL_PRIVATE".to_owned(),
    };
    let banned = |rights: &Option<tl::enums::ChatBannedRights>,
                  right: fn(&tl::types::ChatBannedRights) -> bool| {
        rights
            .as_ref()
            .is_some_and(|tl::enums::ChatBannedRights::Rights(rights)| right(rights))
    };
    let admin_may = |rights: &Option<tl::enums::ChatAdminRights>,
                     right: fn(&tl::types::ChatAdminRights) -> bool| {
        rights
            .as_ref()
            .is_some_and(|tl::enums::ChatAdminRights::Rights(rights)| right(rights))
    };
    match chat {
        tl::enums::Chat::Channel(channel) => {
            let id = ChatId::channel(channel.id).ok_or_else(private)?;
            let member = !channel.left;
            let admin = channel.creator || channel.admin_rights.is_some();
            let may =
                |admin_right: fn(&tl::types::ChatAdminRights) -> bool,
                 banned_right: fn(&tl::types::ChatBannedRights) -> bool| {
                    channel.creator
                        || admin_may(&channel.admin_rights, admin_right)
                        || (member
                            && !banned(&channel.banned_rights, banned_right)
                            && !banned(&channel.default_banned_rights, banned_right))
                };
            let can_post = if channel.broadcast {
                channel.creator || admin_may(&channel.admin_rights, |rights| rights.post_messages)
            } else {
                member && may(|_| true, |rights| rights.send_messages)
            };
            Ok(ChatAccess {
                chat: id,
                kind: if channel.broadcast {
                    PeerKind::Channel
                } else {
                    PeerKind::Group
                },
                title: channel.title.clone(),
                public: channel.username.is_some(),
                forum: channel.forum,
                member,
                admin,
                can_post,
                can_create_topics: channel.forum
                    && member
                    && may(|rights| rights.manage_topics, |rights| rights.manage_topics),
            })
        }
        tl::enums::Chat::Chat(group) => {
            let id = ChatId::basic_group(group.id).ok_or_else(private)?;
            let member = !group.left && !group.deactivated;
            let admin = group.creator || group.admin_rights.is_some();
            Ok(ChatAccess {
                chat: id,
                kind: PeerKind::Group,
                title: group.title.clone(),
                public: false,
                forum: false,
                member,
                admin,
                can_post: member
                    && (admin
                        || !banned(&group.default_banned_rights, |rights| rights.send_messages)),
                can_create_topics: false,
            })
        }
        _ => Err(private()),
    }
}

/// The forum topic a message belongs to (core.telegram.org/api/forum): a message posted into a
/// topic replies to the topic's creation message (`reply_to_msg_id`, with `forum_topic` set); a
/// reply to another message inside the topic carries the topic in `reply_to_top_id`. The topic's
/// own creation message belongs to itself.
pub fn topic_of(message: &tl::enums::Message) -> Option<TopicId> {
    let (reply_to, is_topic_creation, id) = match message {
        tl::enums::Message::Message(message) => (message.reply_to.as_ref(), false, message.id),
        tl::enums::Message::Service(service) => (
            service.reply_to.as_ref(),
            matches!(service.action, tl::enums::MessageAction::TopicCreate(_)),
            service.id,
        ),
        tl::enums::Message::Empty(_) => return None,
    };
    if is_topic_creation {
        return Some(TopicId(id));
    }
    match reply_to? {
        tl::enums::MessageReplyHeader::Header(header) if header.forum_topic => header
            .reply_to_top_id
            .or(header.reply_to_msg_id)
            .map(TopicId),
        _ => None,
    }
}

pub fn media_kind(media: &tl::enums::MessageMedia) -> Option<MediaKind> {
    match media {
        tl::enums::MessageMedia::Empty => None,
        tl::enums::MessageMedia::Photo(_) => Some(MediaKind::Photo),
        tl::enums::MessageMedia::Document(document) => Some(if document.voice {
            MediaKind::Voice
        } else if document.round {
            MediaKind::VideoNote
        } else if document.video {
            MediaKind::Video
        } else if let Some(tl::enums::Document::Document(inner)) = &document.document
            && inner
                .attributes
                .iter()
                .any(|attribute| matches!(attribute, tl::enums::DocumentAttribute::Sticker(_)))
        {
            MediaKind::Sticker
        } else {
            MediaKind::Document
        }),
        // Web page previews decorate text; they are not media the relay would miss.
        tl::enums::MessageMedia::WebPage(_) => None,
        _ => Some(MediaKind::Other),
    }
}

/// The photo or document of a message as this account may send it again: its id, access hash
/// and file reference (core.telegram.org/api/file_reference), with the file name, MIME type, size
/// and duration the document's attributes give. `None` for media that are not files.
pub fn media_file(media: &tl::enums::MessageMedia) -> Option<MediaFile> {
    let kind = media_kind(media)?;
    match media {
        tl::enums::MessageMedia::Photo(photo) => match photo.photo.as_ref()? {
            tl::enums::Photo::Photo(photo) => Some(MediaFile {
                kind,
                id: photo.id,
                access_hash: photo.access_hash,
                file_reference: photo.file_reference.clone(),
                file_name: None,
                mime_type: Some("image/jpeg".to_owned()),
                size: photo
                    .sizes
                    .iter()
                    .filter_map(|size| match size {
                        tl::enums::PhotoSize::Size(size) => u64::try_from(size.size).ok(),
                        tl::enums::PhotoSize::Progressive(size) => size
                            .sizes
                            .iter()
                            .max()
                            .and_then(|&max| u64::try_from(max).ok()),
                        _ => None,
                    })
                    .max(),
                duration_seconds: None,
            }),
            tl::enums::Photo::Empty(_) => None,
        },
        tl::enums::MessageMedia::Document(document) => match document.document.as_ref()? {
            tl::enums::Document::Document(document) => {
                let mut file = MediaFile {
                    kind,
                    id: document.id,
                    access_hash: document.access_hash,
                    file_reference: document.file_reference.clone(),
                    file_name: None,
                    mime_type: Some(document.mime_type.clone()).filter(|mime| !mime.is_empty()),
                    size: u64::try_from(document.size).ok(),
                    duration_seconds: None,
                };
                for attribute in &document.attributes {
                    match attribute {
                        tl::enums::DocumentAttribute::Filename(name) => {
                            file.file_name = Some(name.file_name.clone());
                        }
                        tl::enums::DocumentAttribute::Audio(audio) => {
                            file.duration_seconds = u32::try_from(audio.duration).ok();
                        }
                        tl::enums::DocumentAttribute::Video(video) => {
                            // Seconds as a double; whole seconds are enough to show.
                            file.duration_seconds = Some(video.duration.max(0.0) as u32);
                        }
                        _ => {}
                    }
                }
                Some(file)
            }
            tl::enums::Document::Empty(_) => None,
        },
        _ => None,
    }
}

/// The file of message `message_id` in an answer to `messages.getMessages` /
/// `channels.getMessages`, with the fresh reference the answer carries
/// (core.telegram.org/api/file_reference). `None` when the message is not in it (deleted:
/// `messageEmpty`) or has no file.
pub fn file_of_message(
    answer: &tl::enums::messages::Messages,
    message_id: i32,
) -> Option<MediaFile> {
    let messages = match answer {
        tl::enums::messages::Messages::Messages(answer) => &answer.messages,
        tl::enums::messages::Messages::Slice(answer) => &answer.messages,
        tl::enums::messages::Messages::ChannelMessages(answer) => &answer.messages,
        tl::enums::messages::Messages::NotModified(_) => return None,
    };
    messages.iter().find_map(|message| match message {
        tl::enums::Message::Message(message) if message.id == message_id => {
            message.media.as_ref().and_then(media_file)
        }
        _ => None,
    })
}

/// The `inputMedia…` that sends `file` again by its reference: no download, no upload.
pub fn input_media(file: &MediaFile) -> tl::enums::InputMedia {
    if file.kind == MediaKind::Photo {
        tl::types::InputMediaPhoto {
            spoiler: false,
            live_photo: false,
            id: tl::types::InputPhoto {
                id: file.id,
                access_hash: file.access_hash,
                file_reference: file.file_reference.clone(),
            }
            .into(),
            ttl_seconds: None,
            video: None,
        }
        .into()
    } else {
        tl::types::InputMediaDocument {
            spoiler: false,
            id: tl::types::InputDocument {
                id: file.id,
                access_hash: file.access_hash,
                file_reference: file.file_reference.clone(),
            }
            .into(),
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
            query: None,
        }
        .into()
    }
}

/// What a chat looks like to jobbot, from the peers delivered with an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatInfo {
    pub kind: PeerKind,
    pub title: Option<String>,
    pub username: Option<Username>,
}

/// An incoming or edited message in jobbot's form. `chat` and `sender` come from the peers sent
/// with the update; when they are missing (a gap fetched without them) the ids still identify
/// both, and the kind falls back to what the id says.
pub fn incoming_message(
    message: &tl::enums::Message,
    chat_id: ChatId,
    chat: Option<ChatInfo>,
    sender: Option<Sender>,
) -> Option<IncomingMessage> {
    let (id, date, outgoing, text, media, file, is_service) = match message {
        tl::enums::Message::Message(message) => (
            message.id,
            message.date,
            message.out,
            message.message.clone(),
            message.media.as_ref().and_then(media_kind),
            message.media.as_ref().and_then(media_file).map(Box::new),
            false,
        ),
        tl::enums::Message::Service(service) => (
            service.id,
            service.date,
            service.out,
            String::new(),
            None,
            None,
            true,
        ),
        tl::enums::Message::Empty(_) => return None,
    };
    let chat = chat.unwrap_or(ChatInfo {
        kind: match chat_id.kind() {
            ChatKind::User => PeerKind::User,
            ChatKind::BasicGroup => PeerKind::Group,
            // Without the chat object a channel and a supergroup look the same; a message with a
            // topic can only be in a (forum) supergroup.
            ChatKind::Channel => PeerKind::Group,
        },
        title: None,
        username: None,
    });
    Some(IncomingMessage {
        chat: chat_id,
        chat_kind: chat.kind,
        chat_title: chat.title,
        chat_username: chat.username,
        message_id: id,
        sender,
        text,
        media,
        file,
        date: i64::from(date),
        outgoing,
        is_service,
        topic_id: topic_of(message),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn user(id: i64, access_hash: Option<i64>, min: bool, bot: bool) -> tl::types::User {
        tl::types::User {
            is_self: false,
            contact: false,
            mutual_contact: false,
            deleted: false,
            bot,
            bot_chat_history: false,
            bot_nochats: false,
            verified: false,
            restricted: false,
            min,
            bot_inline_geo: false,
            support: false,
            scam: false,
            apply_min_photo: false,
            fake: false,
            bot_attach_menu: false,
            premium: false,
            attach_menu_enabled: false,
            bot_can_edit: false,
            close_friend: false,
            stories_hidden: false,
            stories_unavailable: false,
            contact_require_premium: false,
            bot_business: false,
            bot_has_main_app: false,
            bot_forum_view: false,
            bot_forum_can_manage_topics: false,
            bot_can_manage_bots: false,
            bot_guestchat: false,
            bot_guard: false,
            id,
            access_hash,
            first_name: Some("Ivan".into()),
            last_name: Some("".into()),
            username: Some("Recruiter_Ivan".into()),
            phone: Some("79991234567".into()),
            photo: None,
            status: None,
            bot_info_version: None,
            restriction_reason: None,
            bot_inline_placeholder: None,
            lang_code: None,
            emoji_status: None,
            usernames: None,
            stories_max_id: None,
            color: None,
            profile_color: None,
            bot_active_users: None,
            bot_verification_icon: None,
            send_paid_messages_stars: None,
            linked_community_id: None,
        }
    }

    #[test]
    fn a_message_author_is_named_by_the_message_and_answered_with_this_accounts_hash() {
        let group = ChatId::channel(555).unwrap();
        let author = MessageAuthor {
            chat: group,
            chat_username: None,
            message_id: 31,
            user: ChatId::user(42).unwrap(),
        };
        let chat = input_peer(PeerRef {
            id: group,
            access_hash: 9,
        });
        let request = message_author_request(chat.clone(), &author);
        let expected: tl::enums::InputUser = tl::types::InputUserFromMessage {
            peer: chat,
            msg_id: 31,
            user_id: 42,
        }
        .into();
        assert_eq!(format!("{:?}", request.id), format!("{:?}", vec![expected]));

        let full = |id, hash| tl::enums::User::User(user(id, Some(hash), false, false));
        let found = message_author_in(&[full(7, 1), full(42, 77)], author.user).unwrap();
        assert_eq!(
            found.peer,
            PeerRef {
                id: author.user,
                access_hash: 77
            }
        );
        assert_eq!(found.kind, PeerKind::User);
        // A bot is found as one (the workflow answers people only).
        let bot = tl::enums::User::User(user(42, Some(77), false, true));
        assert_eq!(
            message_author_in(&[bot], author.user).unwrap().kind,
            PeerKind::Bot
        );
        // Still `min`, empty, or absent: nothing to address them by.
        let min = tl::enums::User::User(user(42, Some(77), true, false));
        let empty = tl::enums::User::Empty(tl::types::UserEmpty { id: 42 });
        for users in [vec![min], vec![empty], vec![full(7, 1)], vec![]] {
            assert_eq!(
                message_author_in(&users, author.user),
                Err(TelegramError::PeerInvalid)
            );
        }
    }

    #[test]
    fn input_peers_follow_the_chat_kind() {
        let check = |id: ChatId, expected: tl::enums::InputPeer| {
            assert_eq!(
                format!(
                    "{:?}",
                    input_peer(PeerRef {
                        id,
                        access_hash: 77
                    })
                ),
                format!("{expected:?}")
            );
        };
        check(
            ChatId::user(42).unwrap(),
            tl::types::InputPeerUser {
                user_id: 42,
                access_hash: 77,
            }
            .into(),
        );
        check(
            ChatId::basic_group(12).unwrap(),
            tl::types::InputPeerChat { chat_id: 12 }.into(),
        );
        check(
            ChatId::channel(1234567890).unwrap(),
            tl::types::InputPeerChannel {
                channel_id: 1234567890,
                access_hash: 77,
            }
            .into(),
        );
    }

    #[test]
    fn ids_convert_between_grammers_and_jobbot() {
        for chat in [
            ChatId::user(42).unwrap(),
            ChatId::basic_group(12).unwrap(),
            ChatId::channel(1234567890).unwrap(),
        ] {
            assert_eq!(chat_id_of(peer_id_of(chat)), Some(chat));
        }
        assert_eq!(chat_id_of(PeerId::self_user()), None);
        assert_eq!(
            chat_id_of(PeerId::channel(1234567890).unwrap())
                .unwrap()
                .get(),
            -1001234567890
        );
    }

    #[test]
    fn entities_map_one_to_one() {
        assert_eq!(tl_entities(&[]), None);
        let entities = [
            TextEntity {
                kind: EntityKind::Bold,
                offset: 0,
                length: 4,
            },
            TextEntity {
                kind: EntityKind::TextUrl("https://example.org".into()),
                offset: 5,
                length: 3,
            },
            TextEntity {
                kind: EntityKind::Blockquote,
                offset: 9,
                length: 2,
            },
        ];
        let expected: Vec<tl::enums::MessageEntity> = vec![
            tl::types::MessageEntityBold {
                offset: 0,
                length: 4,
            }
            .into(),
            tl::types::MessageEntityTextUrl {
                offset: 5,
                length: 3,
                url: "https://example.org".into(),
            }
            .into(),
            tl::types::MessageEntityBlockquote {
                collapsed: false,
                offset: 9,
                length: 2,
            }
            .into(),
        ];
        assert_eq!(
            format!("{:?}", tl_entities(&entities).unwrap()),
            format!("{expected:?}")
        );
    }

    #[test]
    fn sent_message_id_is_found_by_random_id() {
        let assigned = |id, random_id| {
            tl::enums::Update::MessageId(tl::types::UpdateMessageId { id, random_id })
        };
        let updates: tl::enums::Updates = tl::types::Updates {
            updates: vec![assigned(10, 111), assigned(11, 222)],
            users: vec![],
            chats: vec![],
            date: 0,
            seq: 0,
        }
        .into();
        assert_eq!(message_id_for_random_id(&updates, 222), Some(11));
        assert_eq!(message_id_for_random_id(&updates, 333), None);
        let short: tl::enums::Updates = tl::types::UpdateShortSentMessage {
            out: true,
            id: 99,
            pts: 1,
            pts_count: 1,
            date: 0,
            media: None,
            entities: None,
            ttl_period: None,
        }
        .into();
        assert_eq!(message_id_for_random_id(&short, 1), Some(99));
        assert_eq!(
            message_id_for_random_id(&tl::enums::Updates::TooLong, 1),
            None
        );
    }

    #[test]
    fn users_become_me_and_peers() {
        let me = me_from_user(&user(42, Some(5), false, false)).unwrap();
        assert_eq!(me.user_id, ChatId::user(42).unwrap());
        assert_eq!(
            me.username,
            Some(Username::parse("recruiter_ivan").unwrap())
        );
        assert_eq!(me.last_name, None);
        assert_eq!(me.phone.unwrap().as_str(), "+79991234567");

        let peer = peer_from_user(&user(42, Some(5), false, true)).unwrap();
        assert_eq!(
            peer.peer,
            PeerRef {
                id: ChatId::user(42).unwrap(),
                access_hash: 5
            }
        );
        assert_eq!(peer.kind, PeerKind::Bot);
        assert_eq!(
            peer_from_user(&user(42, Some(5), true, false)),
            None,
            "min users are not addressable"
        );
        assert_eq!(peer_from_user(&user(42, None, false, false)), None);
    }

    fn reply_header(
        forum_topic: bool,
        reply_to_msg_id: Option<i32>,
        reply_to_top_id: Option<i32>,
    ) -> tl::enums::MessageReplyHeader {
        tl::types::MessageReplyHeader {
            reply_to_scheduled: false,
            forum_topic,
            quote: false,
            reply_to_ephemeral: false,
            reply_to_msg_id,
            reply_to_peer_id: None,
            reply_from: None,
            reply_media: None,
            reply_to_top_id,
            quote_text: None,
            quote_entities: None,
            quote_offset: None,
            todo_item_id: None,
            poll_option: None,
        }
        .into()
    }

    fn service(
        id: i32,
        action: tl::enums::MessageAction,
        reply_to: Option<tl::enums::MessageReplyHeader>,
    ) -> tl::enums::Message {
        tl::types::MessageService {
            out: false,
            mentioned: false,
            media_unread: false,
            reactions_are_possible: false,
            silent: false,
            post: false,
            legacy: false,
            id,
            from_id: None,
            peer_id: tl::types::PeerChannel {
                channel_id: 1234567890,
            }
            .into(),
            saved_peer_id: None,
            reply_to,
            date: 1_700_000_000,
            action,
            reactions: None,
            ttl_period: None,
        }
        .into()
    }

    #[test]
    fn topics_come_from_the_reply_header() {
        let check = |reply_to: Option<tl::enums::MessageReplyHeader>, expected: Option<i32>| {
            let message = service(50, tl::enums::MessageAction::PinMessage, reply_to);
            assert_eq!(topic_of(&message), expected.map(TopicId));
        };
        check(None, None);
        check(Some(reply_header(true, Some(7), None)), Some(7));
        check(Some(reply_header(true, Some(30), Some(7))), Some(7));
        check(Some(reply_header(false, Some(30), None)), None);
        let created = service(
            8,
            tl::types::MessageActionTopicCreate {
                title_missing: false,
                title: "t".into(),
                icon_color: 0,
                icon_emoji_id: None,
            }
            .into(),
            None,
        );
        assert_eq!(topic_of(&created), Some(TopicId(8)));
    }

    #[test]
    fn service_messages_are_marked_and_kinds_fall_back_to_the_id() {
        let chat = ChatId::channel(1234567890).unwrap();
        let message = service(
            50,
            tl::enums::MessageAction::PinMessage,
            Some(reply_header(true, Some(7), None)),
        );
        let incoming = incoming_message(&message, chat, None, None).unwrap();
        assert!(incoming.is_service);
        assert_eq!(incoming.chat_kind, PeerKind::Group);
        assert_eq!(incoming.topic_id, Some(TopicId(7)));
        assert_eq!(incoming.date, 1_700_000_000);
        assert_eq!(incoming.text, "");
    }

    fn channel(
        broadcast: bool,
        forum: bool,
        left: bool,
        admin_rights: Option<tl::types::ChatAdminRights>,
        default_banned_rights: Option<tl::types::ChatBannedRights>,
    ) -> tl::enums::Chat {
        tl::types::Channel {
            creator: false,
            left,
            broadcast,
            verified: false,
            megagroup: !broadcast,
            restricted: false,
            signatures: false,
            min: false,
            scam: false,
            has_link: false,
            has_geo: false,
            slowmode_enabled: false,
            call_active: false,
            call_not_empty: false,
            fake: false,
            gigagroup: false,
            noforwards: false,
            join_to_send: false,
            join_request: false,
            forum,
            stories_hidden: false,
            stories_hidden_min: false,
            stories_unavailable: false,
            signature_profiles: false,
            autotranslation: false,
            broadcast_messages_allowed: false,
            monoforum: false,
            forum_tabs: false,
            id: 77,
            access_hash: Some(5),
            title: "Chat".into(),
            username: None,
            photo: tl::enums::ChatPhoto::Empty,
            date: 0,
            restriction_reason: None,
            admin_rights: admin_rights.map(Into::into),
            banned_rights: None,
            default_banned_rights: default_banned_rights.map(Into::into),
            participants_count: None,
            usernames: None,
            stories_max_id: None,
            color: None,
            profile_color: None,
            emoji_status: None,
            level: None,
            subscription_until_date: None,
            bot_verification_icon: None,
            send_paid_messages_stars: None,
            linked_monoforum_id: None,
            linked_community_id: None,
        }
        .into()
    }

    #[test]
    fn the_created_chat_the_invite_link_and_the_missing_invitees_are_read_from_the_answers() {
        let forum = channel(false, true, false, None, None);
        let updates: tl::enums::Updates = tl::types::Updates {
            updates: Vec::new(),
            users: Vec::new(),
            chats: vec![forum],
            date: 0,
            seq: 0,
        }
        .into();
        let created = created_chat(&updates).expect("the answer names the chat");
        assert_eq!(created.id(), ChatId::channel(77).unwrap());
        assert_eq!(created.peer.access_hash, 5);
        assert_eq!(created.kind, PeerKind::Group);

        let invite: tl::enums::ExportedChatInvite = tl::types::ChatInviteExported {
            revoked: false,
            permanent: false,
            request_needed: false,
            link: "https://t.me/+AbCdEf123".into(),
            admin_id: 1,
            date: 0,
            start_date: None,
            expire_date: None,
            usage_limit: None,
            usage: None,
            requested: None,
            subscription_expired: None,
            title: None,
            subscription_pricing: None,
        }
        .into();
        assert_eq!(
            invite_link_of(&invite).as_deref(),
            Some("https://t.me/+AbCdEf123")
        );
        assert_eq!(
            invite_link_of(&tl::enums::ExportedChatInvite::ChatInvitePublicJoinRequests),
            None
        );

        let invited: tl::enums::messages::InvitedUsers = tl::types::messages::InvitedUsers {
            updates: updates.clone(),
            missing_invitees: vec![
                tl::types::MissingInvitee {
                    premium_would_allow_invite: false,
                    premium_required_for_pm: false,
                    user_id: 42,
                }
                .into(),
            ],
        }
        .into();
        assert_eq!(
            missing_invitees_of(&invited),
            vec![ChatId::user(42).unwrap()]
        );
        assert_eq!(
            input_user(PeerRef {
                id: ChatId::user(42).unwrap(),
                access_hash: 9
            }),
            tl::types::InputUser {
                user_id: 42,
                access_hash: 9
            }
            .into()
        );
    }

    fn admin_rights(post_messages: bool, manage_topics: bool) -> tl::types::ChatAdminRights {
        tl::types::ChatAdminRights {
            change_info: false,
            post_messages,
            edit_messages: false,
            delete_messages: false,
            ban_users: false,
            invite_users: false,
            pin_messages: false,
            add_admins: false,
            anonymous: false,
            manage_call: false,
            other: true,
            manage_topics,
            post_stories: false,
            edit_stories: false,
            delete_stories: false,
            manage_direct_messages: false,
            manage_ranks: false,
            manage_linked_peers: false,
            manage_welcome_messages: false,
        }
    }

    /// The CRM group's default rights as the one-click setup writes them, but with topics kept
    /// for admins.
    fn no_topics_for_members() -> tl::types::ChatBannedRights {
        let tl::enums::ChatBannedRights::Rights(rights) =
            crate::account::members_create_topics_request(tl::enums::InputPeer::Empty)
                .banned_rights;
        tl::types::ChatBannedRights {
            manage_topics: true,
            invite_users: false,
            manage_linked_peers: false,
            ..rights
        }
    }

    /// `jobbot doctor` reads rights from the chat object as core.telegram.org/api/rights
    /// describes them.
    #[test]
    fn chat_access_follows_admin_and_banned_rights() {
        let access = |chat| chat_access_of(&chat).unwrap();
        // A broadcast channel: only an admin with post_messages posts.
        let member = access(channel(true, false, false, None, None));
        assert!(member.member && !member.can_post && member.kind == PeerKind::Channel);
        let poster = access(channel(
            true,
            false,
            false,
            Some(admin_rights(true, false)),
            None,
        ));
        assert!(poster.can_post && poster.admin);
        let editor = access(channel(
            true,
            false,
            false,
            Some(admin_rights(false, false)),
            None,
        ));
        assert!(!editor.can_post);
        // A forum: members create topics unless the default rights forbid it.
        let forum_member = access(channel(false, true, false, None, None));
        assert!(forum_member.forum && forum_member.can_post && forum_member.can_create_topics);
        let restricted = access(channel(
            false,
            true,
            false,
            None,
            Some(no_topics_for_members()),
        ));
        assert!(restricted.can_post && !restricted.can_create_topics);
        let topic_admin = access(channel(
            false,
            true,
            false,
            Some(admin_rights(false, true)),
            Some(no_topics_for_members()),
        ));
        assert!(topic_admin.can_create_topics);
        // Left: neither posts nor creates topics.
        let left = access(channel(false, true, true, None, None));
        assert!(!left.member && !left.can_post && !left.can_create_topics);
        // A chat this account may not see.
        let forbidden: tl::enums::Chat = tl::types::ChannelForbidden {
            broadcast: true,
            megagroup: false,
            monoforum: false,
            id: 77,
            access_hash: 5,
            title: "Gone".into(),
            until_date: None,
        }
        .into();
        assert_eq!(
            chat_access_of(&forbidden),
            Err(TelegramError::ChatForbidden {
                code: "CHANNEL_PRIVATE".into()
            })
        );
    }

    /// `auth.sentCode` as Telegram sends it: the way the code went, its length, the next way
    /// and when it may be asked for.
    fn document_media(
        attributes: Vec<tl::enums::DocumentAttribute>,
        voice: bool,
        round: bool,
    ) -> tl::enums::MessageMedia {
        tl::types::MessageMediaDocument {
            nopremium: false,
            spoiler: false,
            video: round,
            round,
            voice,
            document: Some(
                tl::types::Document {
                    id: 100,
                    access_hash: 777_001,
                    file_reference: vec![9, 8],
                    date: 0,
                    mime_type: "application/pdf".into(),
                    size: 52_000,
                    thumbs: None,
                    video_thumbs: None,
                    dc_id: 2,
                    attributes,
                }
                .into(),
            ),
            alt_documents: None,
            video_cover: None,
            video_timestamp: None,
            ttl_seconds: None,
        }
        .into()
    }

    /// A received photo or document becomes a `MediaFile` with the account's own reference and
    /// what its attributes say; non-file media have no file.
    #[test]
    fn media_files_carry_reference_name_mime_size_and_duration() {
        let pdf = document_media(
            vec![
                tl::types::DocumentAttributeFilename {
                    file_name: "cv.pdf".into(),
                }
                .into(),
            ],
            false,
            false,
        );
        let file = media_file(&pdf).unwrap();
        assert_eq!(file.kind, MediaKind::Document);
        assert_eq!((file.id, file.access_hash), (100, 777_001));
        assert_eq!(file.file_reference, vec![9, 8]);
        assert_eq!(file.file_name.as_deref(), Some("cv.pdf"));
        assert_eq!(file.mime_type.as_deref(), Some("application/pdf"));
        assert_eq!(file.size, Some(52_000));
        assert!(
            !format!("{file:?}").contains("777001"),
            "no access hash in Debug"
        );
        // The reference goes back out unchanged.
        match input_media(&file) {
            tl::enums::InputMedia::Document(media) => match media.id {
                tl::enums::InputDocument::Document(input) => {
                    assert_eq!(
                        (input.id, input.access_hash, input.file_reference),
                        (100, 777_001, vec![9, 8])
                    );
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }

        let voice = document_media(
            vec![
                tl::types::DocumentAttributeAudio {
                    voice: true,
                    duration: 7,
                    title: None,
                    performer: None,
                    waveform: None,
                }
                .into(),
            ],
            true,
            false,
        );
        let file = media_file(&voice).unwrap();
        assert_eq!(
            (file.kind, file.duration_seconds),
            (MediaKind::Voice, Some(7))
        );

        let round = document_media(
            vec![
                tl::types::DocumentAttributeVideo {
                    round_message: true,
                    supports_streaming: false,
                    nosound: false,
                    duration: 12.5,
                    w: 240,
                    h: 240,
                    preload_prefix_size: None,
                    video_start_ts: None,
                    video_codec: None,
                }
                .into(),
            ],
            false,
            true,
        );
        let file = media_file(&round).unwrap();
        assert_eq!(
            (file.kind, file.duration_seconds),
            (MediaKind::VideoNote, Some(12))
        );

        let photo: tl::enums::MessageMedia = tl::types::MessageMediaPhoto {
            spoiler: false,
            live_photo: false,
            photo: Some(
                tl::types::Photo {
                    has_stickers: false,
                    id: 5,
                    access_hash: 6,
                    file_reference: vec![7],
                    date: 0,
                    sizes: vec![
                        tl::types::PhotoSize {
                            r#type: "m".into(),
                            w: 320,
                            h: 240,
                            size: 10_000,
                        }
                        .into(),
                        tl::types::PhotoSize {
                            r#type: "y".into(),
                            w: 1280,
                            h: 960,
                            size: 90_000,
                        }
                        .into(),
                    ],
                    video_sizes: None,
                    dc_id: 2,
                }
                .into(),
            ),
            ttl_seconds: None,
            video: None,
        }
        .into();
        let file = media_file(&photo).unwrap();
        assert_eq!(
            (file.kind, file.id, file.size),
            (MediaKind::Photo, 5, Some(90_000))
        );
        assert!(matches!(
            input_media(&file),
            tl::enums::InputMedia::Photo(_)
        ));

        assert_eq!(media_file(&tl::enums::MessageMedia::Empty), None);
        let geo: tl::enums::MessageMedia = tl::types::MessageMediaGeo {
            geo: tl::enums::GeoPoint::Empty,
        }
        .into();
        assert_eq!(
            (media_kind(&geo), media_file(&geo)),
            (Some(MediaKind::Other), None)
        );
    }

    #[test]
    fn a_sent_code_names_its_delivery_and_the_next_way() {
        let sent = tl::types::auth::SentCode {
            r#type: tl::types::auth::SentCodeTypeSms { length: 5 }.into(),
            phone_code_hash: "hash".into(),
            next_type: Some(tl::enums::auth::CodeType::Call),
            timeout: Some(60),
        };
        assert_eq!(
            sent_code_of(&sent),
            SentCode {
                delivery: CodeDelivery::Sms,
                length: Some(5),
                next: Some(CodeDelivery::Call),
                resend_after_seconds: Some(60),
            }
        );
        let in_app = tl::types::auth::SentCode {
            r#type: tl::types::auth::SentCodeTypeApp { length: 5 }.into(),
            phone_code_hash: "hash".into(),
            next_type: None,
            timeout: None,
        };
        assert_eq!(sent_code_of(&in_app).delivery, CodeDelivery::App);
        assert_eq!(sent_code_of(&in_app).next, None);
    }
}
