//! Reading a Telethon session file (the original system's `sessions/{name}.session`), SQLite
//! schema version 7 as Telethon writes it (`telethon/sessions/sqlite.py`, `CURRENT_VERSION = 7`):
//!
//! ```text
//! version(version)
//! sessions(dc_id, server_address, port, auth_key, takeout_id)
//! entities(id, hash, username, phone, name, date)
//! sent_files(md5_digest, file_size, type, id, hash)
//! update_state(id, pts, qts, date, seq)
//! ```
//!
//! The file is opened read-only and never changed. Errors name the file and what is wrong,
//! never the key.

use std::path::{Path, PathBuf};

use jobbot_core::legacy_session::{AuthKey, LegacyEntity, LegacySession, LegacyUpdateState};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row};

/// The first 16 bytes of every SQLite database file (sqlite.org/fileformat.html, 1.3.1).
pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The Telethon schema this reader knows.
pub const TELETHON_SCHEMA_VERSION: i64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum TelethonError {
    #[error("cannot read {path} as a Telethon session: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "{path} is a Telethon session of schema version {found}; only version {TELETHON_SCHEMA_VERSION} is supported"
    )]
    Version { path: PathBuf, found: i64 },
    #[error("{path} holds no logged-in Telethon session (no auth key)")]
    NoAuthKey { path: PathBuf },
}

/// Whether `bytes` (a file's beginning) is an SQLite database, as Telethon's sessions are and
/// jobbot's (JSON) never are.
pub fn is_sqlite(bytes: &[u8]) -> bool {
    bytes.starts_with(SQLITE_HEADER)
}

/// Reads the session at `path`.
pub async fn read_telethon_session(path: &Path) -> Result<LegacySession, TelethonError> {
    let unreadable = |error: sqlx::Error| TelethonError::Unreadable {
        path: path.to_owned(),
        message: error.to_string(),
    };
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(unreadable)?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM version")
        .fetch_one(&mut connection)
        .await
        .map_err(unreadable)?;
    if version != TELETHON_SCHEMA_VERSION {
        return Err(TelethonError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    // Telethon keeps one row (it deletes the others when it switches DC).
    let row = sqlx::query("SELECT dc_id, server_address, port, auth_key FROM sessions LIMIT 1")
        .fetch_optional(&mut connection)
        .await
        .map_err(unreadable)?
        .ok_or_else(|| TelethonError::NoAuthKey {
            path: path.to_owned(),
        })?;
    let auth_key = auth_key(row.try_get("auth_key").map_err(unreadable)?).ok_or_else(|| {
        TelethonError::NoAuthKey {
            path: path.to_owned(),
        }
    })?;
    let port: i64 = row.try_get("port").map_err(unreadable)?;
    let dc_id: i64 = row.try_get("dc_id").map_err(unreadable)?;
    let invalid = |what: &str| TelethonError::Unreadable {
        path: path.to_owned(),
        message: format!("{what} is out of range"),
    };
    let server_address: Option<String> = row.try_get("server_address").map_err(unreadable)?;
    let entities = sqlx::query("SELECT id, hash, username, name, date FROM entities ORDER BY id")
        .fetch_all(&mut connection)
        .await
        .map_err(unreadable)?
        .into_iter()
        .map(|row| {
            Ok(LegacyEntity {
                id: row.try_get("id")?,
                access_hash: row.try_get("hash")?,
                username: row.try_get("username")?,
                name: row.try_get("name")?,
                seen_at: row
                    .try_get::<Option<i64>, _>("date")?
                    .filter(|date| *date > 0),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(unreadable)?;
    let (update_state, channel_states) =
        read_update_state(&mut connection)
            .await
            .map_err(|message| TelethonError::Unreadable {
                path: path.to_owned(),
                message,
            })?;
    Ok(LegacySession {
        dc_id: i32::try_from(dc_id).map_err(|_| invalid("sessions.dc_id"))?,
        server_address: server_address.unwrap_or_default(),
        port: u16::try_from(port).map_err(|_| invalid("sessions.port"))?,
        auth_key,
        entities,
        update_state,
        channel_states,
        user_id: None,
    })
}

/// A stored auth key: 256 bytes, or none.
pub(crate) fn auth_key(stored: Option<Vec<u8>>) -> Option<AuthKey> {
    stored
        .and_then(|key| <[u8; 256]>::try_from(key).ok())
        .map(AuthKey)
}

/// The `update_state` table Telethon writes (and Pyrogram's forks copied): row 0 is the
/// account's position, each other row a channel's pts by its id as written. The error is what
/// is wrong, for the caller to name the file.
pub(crate) async fn read_update_state(
    connection: &mut SqliteConnection,
) -> Result<(Option<LegacyUpdateState>, Vec<(i64, i32)>), String> {
    let rows = sqlx::query("SELECT id, pts, qts, date, seq FROM update_state ORDER BY id")
        .fetch_all(connection)
        .await
        .map_err(|error| error.to_string())?;
    let field = |row: &SqliteRow, name: &str| -> Result<i32, String> {
        let value: Option<i64> = row.try_get(name).map_err(|error| error.to_string())?;
        i32::try_from(value.unwrap_or(0))
            .map_err(|_| format!("update_state.{name} is out of range"))
    };
    let mut state = None;
    let mut channels = Vec::new();
    for row in rows {
        let id: i64 = row.try_get("id").map_err(|error| error.to_string())?;
        let pts = field(&row, "pts")?;
        if id == 0 {
            state = Some(LegacyUpdateState {
                pts,
                qts: field(&row, "qts")?,
                date: field(&row, "date")?,
                seq: field(&row, "seq")?,
            });
        } else {
            channels.push((id, pts));
        }
    }
    Ok((state, channels))
}

/// Writes a Telethon session file as Telethon 1.x does (schema version 7), for tests and tools
/// that need one: jobbot never writes this format otherwise.
pub async fn write_telethon_session(
    path: &Path,
    session: &LegacySession,
) -> Result<(), sqlx::Error> {
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await?;
    for statement in [
        "CREATE TABLE version (version integer primary key)",
        "CREATE TABLE sessions (dc_id integer primary key, server_address text, port integer, auth_key blob, takeout_id integer)",
        "CREATE TABLE entities (id integer primary key, hash integer not null, username text, phone integer, name text, date integer)",
        "CREATE TABLE sent_files (md5_digest blob, file_size integer, type integer, id integer, hash integer, primary key(md5_digest, file_size, type))",
        "CREATE TABLE update_state (id integer primary key, pts integer, qts integer, date integer, seq integer)",
    ] {
        sqlx::query(statement).execute(&mut connection).await?;
    }
    sqlx::query("INSERT INTO version VALUES (?)")
        .bind(TELETHON_SCHEMA_VERSION)
        .execute(&mut connection)
        .await?;
    sqlx::query("INSERT INTO sessions VALUES (?, ?, ?, ?, NULL)")
        .bind(session.dc_id)
        .bind(&session.server_address)
        .bind(i64::from(session.port))
        .bind(&session.auth_key.0[..])
        .execute(&mut connection)
        .await?;
    for entity in &session.entities {
        sqlx::query("INSERT INTO entities VALUES (?, ?, ?, NULL, ?, ?)")
            .bind(entity.id)
            .bind(entity.access_hash)
            .bind(&entity.username)
            .bind(&entity.name)
            .bind(entity.seen_at.unwrap_or(0))
            .execute(&mut connection)
            .await?;
    }
    if let Some(state) = session.update_state {
        sqlx::query("INSERT INTO update_state VALUES (0, ?, ?, ?, ?)")
            .bind(state.pts)
            .bind(state.qts)
            .bind(state.date)
            .bind(state.seq)
            .execute(&mut connection)
            .await?;
    }
    for (channel, pts) in &session.channel_states {
        sqlx::query("INSERT INTO update_state VALUES (?, ?, 0, 0, 0)")
            .bind(channel)
            .bind(pts)
            .execute(&mut connection)
            .await?;
    }
    connection.close().await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A session with a channel and a user among its entities, an update position and a
    /// channel's.
    pub(crate) fn sample() -> LegacySession {
        let mut key = [0u8; 256];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = (index * 7 + 3) as u8;
        }
        LegacySession {
            dc_id: 2,
            server_address: "149.154.167.51".into(),
            port: 443,
            auth_key: AuthKey(key),
            // In id order, as the reader returns them.
            entities: vec![
                LegacyEntity {
                    id: -1_001_234_567_890,
                    access_hash: 99,
                    username: None,
                    name: Some("Jobs".into()),
                    seen_at: None,
                },
                LegacyEntity {
                    id: 5_000_001,
                    access_hash: -77,
                    username: Some("anna_hr".into()),
                    name: Some("Anna".into()),
                    seen_at: Some(1_700_000_000),
                },
            ],
            update_state: Some(LegacyUpdateState {
                pts: 120,
                qts: 3,
                date: 1_700_000_000,
                seq: 4,
            }),
            channel_states: vec![(1_234_567_890, 55)],
            user_id: None,
        }
    }

    #[tokio::test]
    async fn a_telethon_session_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.session");
        let session = sample();
        write_telethon_session(&path, &session).await.unwrap();
        assert!(is_sqlite(&std::fs::read(&path).unwrap()));
        let read = read_telethon_session(&path).await.unwrap();
        assert_eq!(read, session);
        assert_eq!(read.auth_key.id(), session.auth_key.id());
    }

    #[tokio::test]
    async fn other_versions_and_keyless_sessions_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.session");
        write_telethon_session(&path, &sample()).await.unwrap();
        let mut connection = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query("UPDATE version SET version = 6")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        let error = read_telethon_session(&path).await.unwrap_err();
        assert!(
            matches!(error, TelethonError::Version { found: 6, .. }),
            "{error}"
        );

        let path = dir.path().join("empty.session");
        write_telethon_session(&path, &sample()).await.unwrap();
        let mut connection = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query("UPDATE sessions SET auth_key = NULL")
            .execute(&mut connection)
            .await
            .unwrap();
        connection.close().await.unwrap();
        let error = read_telethon_session(&path).await.unwrap_err();
        assert!(matches!(error, TelethonError::NoAuthKey { .. }), "{error}");
        let error = read_telethon_session(&dir.path().join("missing.session"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("missing.session"), "{error}");
    }
}
