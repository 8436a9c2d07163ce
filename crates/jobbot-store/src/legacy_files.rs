//! The original system's session files, whichever library wrote them: Telethon's (the original
//! system's own) or Pyrogram's (the other Python library such systems are built on). Both are
//! SQLite; the layout of the `version` table tells them apart.

use std::fmt;
use std::path::Path;

use jobbot_core::legacy_session::LegacySession;

use crate::pyrogram::{PyrogramError, is_pyrogram, read_pyrogram_session};
use crate::telethon::{TelethonError, read_telethon_session};

/// The library that wrote a session file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyFormat {
    Telethon,
    Pyrogram,
}

impl fmt::Display for LegacyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Telethon => "Telethon",
            Self::Pyrogram => "Pyrogram",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LegacyFileError {
    #[error(transparent)]
    Telethon(#[from] TelethonError),
    #[error(transparent)]
    Pyrogram(#[from] PyrogramError),
}

/// Reads the Telethon or Pyrogram session at `path`.
pub async fn read_legacy_session(
    path: &Path,
) -> Result<(LegacyFormat, LegacySession), LegacyFileError> {
    if is_pyrogram(path).await {
        Ok((LegacyFormat::Pyrogram, read_pyrogram_session(path).await?))
    } else {
        Ok((LegacyFormat::Telethon, read_telethon_session(path).await?))
    }
}
