//! Files in the simulated world: uploaded once by a simulated person, stored by id, and sent again
//! by reference (`messages.sendMedia` with `inputMediaPhoto` / `inputMediaDocument`), the way the
//! CRM relays a contact's CV or an operator's screenshot.
//!
//! The rules, each from Telegram's documentation:
//! - A file is uploaded in parts of at most 512 KiB, at most 4,000 parts (8,000 for premium
//!   accounts): 2,000 MiB, or 4,000 MiB with premium (core.telegram.org/api/files, "Uploading
//!   files"). Simulated people are not premium; a larger upload fails with `FILE_PARTS_INVALID`.
//! - Every photo and document an account receives comes with a file reference for that account;
//!   a reference that is stale (it expired, core.telegram.org/api/file_reference) or was handed
//!   out to another account is refused with `FILE_REFERENCE_EXPIRED`.
//! - A message fetched again (`messages.getMessages` / `channels.getMessages`) carries a fresh
//!   reference for the account that fetches it: "the file reference can be refreshed by
//!   refetching the message that contains the file" (core.telegram.org/api/file_reference). A
//!   deleted message comes back as `messageEmpty`, without a file; a channel the account is not
//!   in is `CHANNEL_PRIVATE`.
//! - An unknown file, or one with a wrong access hash, is `MEDIA_EMPTY`.
//! - A user may refuse voice and video messages (core.telegram.org/api/privacy,
//!   `inputPrivacyKeyVoiceMessages`); sending one is `VOICE_MESSAGES_FORBIDDEN`.
//! - A caption is at most `caption_length_limit_default` = 1,024 UTF-16 units for a non-premium
//!   sender (core.telegram.org/api/config); longer is `MEDIA_CAPTION_TOO_LONG`.

use jobbot_core::ids::{ChatId, ChatKind};
use jobbot_core::telegram::{MAX_CAPTION_UTF16, MediaFile, MediaKind, TelegramError};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::world::WorldState;

/// Bytes in one upload part at most (core.telegram.org/api/files).
const MAX_PART_BYTES: u64 = 512 * 1024;
/// Parts in one upload at most, for a non-premium account (core.telegram.org/api/files).
const MAX_PARTS: u64 = 4000;
/// The largest file a non-premium account may upload: 2,000 MiB.
pub const MAX_UPLOAD_BYTES: u64 = MAX_PART_BYTES * MAX_PARTS;

/// A file a simulated person sends: what it is, how big, its name and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMedia {
    pub kind: MediaKind,
    pub size: u64,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub duration_seconds: Option<u32>,
}

impl SimMedia {
    pub fn photo(size: u64) -> Self {
        Self {
            kind: MediaKind::Photo,
            size,
            file_name: None,
            mime_type: Some("image/jpeg".into()),
            duration_seconds: None,
        }
    }

    pub fn document(file_name: &str, mime_type: &str, size: u64) -> Self {
        Self {
            kind: MediaKind::Document,
            size,
            file_name: Some(file_name.into()),
            mime_type: Some(mime_type.into()),
            duration_seconds: None,
        }
    }

    pub fn voice(seconds: u32, size: u64) -> Self {
        Self {
            kind: MediaKind::Voice,
            size,
            file_name: None,
            mime_type: Some("audio/ogg".into()),
            duration_seconds: Some(seconds),
        }
    }

    pub fn video_note(seconds: u32, size: u64) -> Self {
        Self {
            kind: MediaKind::VideoNote,
            size,
            file_name: None,
            mime_type: Some("video/mp4".into()),
            duration_seconds: Some(seconds),
        }
    }

    pub fn video(file_name: &str, seconds: u32, size: u64) -> Self {
        Self {
            kind: MediaKind::Video,
            size,
            file_name: Some(file_name.into()),
            mime_type: Some("video/mp4".into()),
            duration_seconds: Some(seconds),
        }
    }
}

/// A stored file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SimFile {
    pub(crate) media: SimMedia,
    access_hash: i64,
    /// Bumped when the file's references expire: every reference handed out before is stale.
    reference_epoch: u32,
}

/// A reference names the account it was handed to and the epoch it was handed out in.
fn reference(account: ChatId, epoch: u32) -> Vec<u8> {
    let mut bytes = epoch.to_le_bytes().to_vec();
    bytes.extend_from_slice(&account.get().to_le_bytes());
    bytes
}

impl WorldState {
    /// `uploader` uploads a file (the parts and `upload.saveBigFilePart` are not modelled, only
    /// their limit). Returns the file's id.
    pub(crate) fn upload_file(&mut self, media: SimMedia) -> Result<i64, TelegramError> {
        if media.size == 0 || media.size > MAX_UPLOAD_BYTES {
            return Err(TelegramError::Other {
                message: "FILE_PARTS_INVALID".into(),
            });
        }
        let id = self.rng.random_range(1..i64::MAX);
        let access_hash = self.rng.random();
        self.files.insert(
            id,
            SimFile {
                media,
                access_hash,
                reference_epoch: 0,
            },
        );
        Ok(id)
    }

    /// The file as `viewer` receives it, with a reference of its own.
    pub(crate) fn media_file_for(&self, viewer: ChatId, id: i64) -> Option<MediaFile> {
        let file = self.files.get(&id)?;
        Some(MediaFile {
            kind: file.media.kind,
            id,
            access_hash: file.access_hash,
            file_reference: reference(viewer, file.reference_epoch),
            file_name: file.media.file_name.clone(),
            mime_type: file.media.mime_type.clone(),
            size: Some(file.media.size),
            duration_seconds: file.media.duration_seconds,
        })
    }

    pub(crate) fn media_kind_of(&self, id: Option<i64>) -> Option<MediaKind> {
        id.and_then(|id| self.files.get(&id))
            .map(|file| file.media.kind)
    }

    /// Checks a re-send of `media` by `account` (to `recipient` when it is a person) and its
    /// caption; returns the file's id.
    pub(crate) fn check_media(
        &self,
        account: ChatId,
        media: &MediaFile,
        caption: &str,
        recipient: Option<ChatId>,
    ) -> Result<i64, TelegramError> {
        let file = self
            .files
            .get(&media.id)
            .filter(|file| file.access_hash == media.access_hash)
            .ok_or(TelegramError::MediaEmpty)?;
        if media.file_reference != reference(account, file.reference_epoch) {
            return Err(TelegramError::FileReferenceExpired);
        }
        if caption.encode_utf16().count() > MAX_CAPTION_UTF16 {
            return Err(TelegramError::MessageTooLong);
        }
        let voice = matches!(file.media.kind, MediaKind::Voice | MediaKind::VideoNote);
        if voice && recipient.is_some_and(|user| self.user(user).refuses_voice_messages) {
            return Err(TelegramError::MediaForbidden {
                code: "VOICE_MESSAGES_FORBIDDEN".into(),
            });
        }
        Ok(media.id)
    }

    /// The file of message `message_id` in `chat` as `account` fetches it again: its own box
    /// for a private chat, the chat's history for a group it is in; with a reference of the
    /// file's current epoch.
    pub(crate) fn refetch_file(
        &self,
        account: ChatId,
        chat: ChatId,
        message_id: i32,
    ) -> Result<Option<MediaFile>, TelegramError> {
        let record = if chat.kind() == ChatKind::User {
            self.user(account)
                .private_box
                .iter()
                .find(|message| message.chat == chat && message.message_id == message_id)
        } else {
            let Some(record) = self
                .chats
                .get(&chat)
                .filter(|record| record.members.contains(&account))
            else {
                return Err(TelegramError::ChatForbidden {
                    code: "CHANNEL_PRIVATE".into(),
                });
            };
            record
                .messages
                .iter()
                .find(|message| message.message_id == message_id)
        };
        Ok(record
            .and_then(|message| message.file)
            .and_then(|file| self.media_file_for(account, file)))
    }

    /// Every reference to the file handed out so far expires.
    pub(crate) fn expire_file_references(&mut self, id: i64) {
        if let Some(file) = self.files.get_mut(&id) {
            file.reference_epoch += 1;
        }
    }
}
