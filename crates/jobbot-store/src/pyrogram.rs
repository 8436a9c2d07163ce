//! Reading a Pyrogram session file (`{name}.session`, SQLite), as Pyrogram 2.x writes it
//! (`pyrogram/storage/sqlite_storage.py`, `VERSION = 3`; versions 2 and 3 differ only in
//! indexes and triggers):
//!
//! ```text
//! version(number)
//! sessions(dc_id, api_id, test_mode, auth_key, date, user_id, is_bot)
//! peers(id, access_hash, type, username, phone_number, last_update_on)
//! ```
//!
//! Forks that keep Pyrogram's format (Kurigram, Pyrofork: versions 4 and up) move usernames to
//! `usernames(id, username)` and add `update_state(id, pts, qts, date, seq)` as Telethon's; both
//! are read when present.
//!
//! Unlike Telethon, Pyrogram stores no server address: it connects to the address its own table
//! gives the DC (`pyrogram/session/internals/data_center.py`: production DCs on port 443, test
//! DCs on port 80), so the import takes the address from the same table
//! ([`pyrogram_dc_address`]). The file is opened
//! read-only and never changed; errors name the file and what is wrong, never the key.

use std::path::{Path, PathBuf};

use jobbot_core::legacy_session::{LegacyEntity, LegacySession, pyrogram_dc_address};

use crate::telethon::{auth_key, read_update_state};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

/// Pyrogram's table versions this reader knows: 2 and 3 (Pyrogram 1.x and 2.x), 4 to 7 (its
/// forks, with `usernames` and `update_state`).
pub const PYROGRAM_SCHEMA_VERSIONS: std::ops::RangeInclusive<i64> = 2..=7;

#[derive(Debug, thiserror::Error)]
pub enum PyrogramError {
    #[error("cannot read {path} as a Pyrogram session: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "{path} is a Pyrogram session of schema version {found}; versions {}-{} are supported",
        PYROGRAM_SCHEMA_VERSIONS.start(),
        PYROGRAM_SCHEMA_VERSIONS.end()
    )]
    Version { path: PathBuf, found: i64 },
    #[error("{path} holds no logged-in Pyrogram session (no auth key)")]
    NoAuthKey { path: PathBuf },
    #[error("{path}: DC {dc_id} is not a Telegram data center Pyrogram knows (test mode: {test})")]
    UnknownDc {
        path: PathBuf,
        dc_id: i64,
        test: bool,
    },
}

/// Whether the SQLite file at `path` is laid out as Pyrogram's (its `version` table has a
/// `number` column; Telethon's has `version`).
pub async fn is_pyrogram(path: &Path) -> bool {
    let Ok(mut connection) = open(path).await else {
        return false;
    };
    let layout = columns(&mut connection, "version").await;
    let _ = connection.close().await;
    layout.is_ok_and(|columns| columns.iter().any(|column| column == "number"))
}

async fn open(path: &Path) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
}

/// The column names of `table` (none if it does not exist).
async fn columns(
    connection: &mut SqliteConnection,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT name FROM pragma_table_info(?)")
        .bind(table)
        .fetch_all(connection)
        .await?
        .into_iter()
        .map(|row| row.try_get("name"))
        .collect()
}

/// Reads the session at `path`.
pub async fn read_pyrogram_session(path: &Path) -> Result<LegacySession, PyrogramError> {
    let unreadable = |error: sqlx::Error| PyrogramError::Unreadable {
        path: path.to_owned(),
        message: error.to_string(),
    };
    let invalid = |what: &str| PyrogramError::Unreadable {
        path: path.to_owned(),
        message: format!("{what} is out of range"),
    };
    let mut connection = open(path).await.map_err(unreadable)?;
    let version: i64 = sqlx::query_scalar("SELECT number FROM version")
        .fetch_one(&mut connection)
        .await
        .map_err(unreadable)?;
    if !PYROGRAM_SCHEMA_VERSIONS.contains(&version) {
        return Err(PyrogramError::Version {
            path: path.to_owned(),
            found: version,
        });
    }
    // Pyrogram keeps one row, updated in place.
    let row = sqlx::query("SELECT dc_id, test_mode, auth_key, user_id FROM sessions LIMIT 1")
        .fetch_optional(&mut connection)
        .await
        .map_err(unreadable)?
        .ok_or_else(|| PyrogramError::NoAuthKey {
            path: path.to_owned(),
        })?;
    let auth_key = auth_key(row.try_get("auth_key").map_err(unreadable)?).ok_or_else(|| {
        PyrogramError::NoAuthKey {
            path: path.to_owned(),
        }
    })?;
    let dc_id: i64 = row.try_get("dc_id").map_err(unreadable)?;
    let user_id: Option<i64> = row.try_get("user_id").map_err(unreadable)?;
    let test_mode = row
        .try_get::<Option<i64>, _>("test_mode")
        .map_err(unreadable)?
        .is_some_and(|flag| flag != 0);
    let (server_address, port) = i32::try_from(dc_id)
        .ok()
        .and_then(|dc| pyrogram_dc_address(dc, test_mode))
        .ok_or_else(|| PyrogramError::UnknownDc {
            path: path.to_owned(),
            dc_id,
            test: test_mode,
        })?;
    let entities = read_peers(&mut connection).await.map_err(unreadable)?;
    let (update_state, channel_states) = if columns(&mut connection, "update_state")
        .await
        .map_err(unreadable)?
        .is_empty()
    {
        (None, Vec::new())
    } else {
        let (state, channels) = read_update_state(&mut connection)
            .await
            .map_err(|message| PyrogramError::Unreadable {
                path: path.to_owned(),
                message,
            })?;
        // Pyrogram writes every id marked (-100… for a channel); grammers keeps the bare one.
        let bare = |id: i64| {
            if id < -1_000_000_000_000 {
                -id - 1_000_000_000_000
            } else {
                id.abs()
            }
        };
        (
            state,
            channels
                .into_iter()
                .map(|(id, pts)| (bare(id), pts))
                .collect(),
        )
    };
    let _ = connection.close().await;
    Ok(LegacySession {
        dc_id: i32::try_from(dc_id).map_err(|_| invalid("sessions.dc_id"))?,
        server_address: server_address.to_owned(),
        port,
        auth_key,
        entities,
        update_state,
        channel_states,
        user_id: user_id.filter(|id| *id > 0),
    })
}

/// The `peers` rows with their usernames (in `peers.username`, or the forks' `usernames`
/// table), in id order. Basic groups (`type = 'group'`) have no access hash in Pyrogram (0);
/// they need none.
async fn read_peers(connection: &mut SqliteConnection) -> Result<Vec<LegacyEntity>, sqlx::Error> {
    let username = if columns(connection, "peers")
        .await?
        .iter()
        .any(|column| column == "username")
    {
        "peers.username"
    } else if !columns(connection, "usernames").await?.is_empty() {
        "(SELECT MIN(usernames.username) FROM usernames WHERE usernames.id = peers.id)"
    } else {
        "NULL"
    };
    let query = format!(
        "SELECT id, COALESCE(access_hash, 0) AS access_hash, {username} AS username, \
         last_update_on FROM peers ORDER BY id"
    );
    sqlx::query(&query)
        .fetch_all(connection)
        .await?
        .into_iter()
        .map(|row| {
            Ok(LegacyEntity {
                id: row.try_get("id")?,
                access_hash: row.try_get("access_hash")?,
                username: row.try_get("username")?,
                name: None,
                seen_at: row
                    .try_get::<Option<i64>, _>("last_update_on")?
                    .filter(|date| *date > 0),
            })
        })
        .collect()
}

/// Writes a Pyrogram 2.x session file (schema version 3) holding `session`, for tests and tools
/// that need one: jobbot never writes this format otherwise.
/// `test_mode` picks the test DCs' addresses. Entities with a username become `user` peers,
/// the others by the sign of their id.
pub async fn write_pyrogram_session(
    path: &Path,
    session: &LegacySession,
    test_mode: bool,
) -> Result<(), sqlx::Error> {
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await?;
    for statement in [
        "CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, api_id INTEGER, test_mode INTEGER, auth_key BLOB, date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER)",
        "CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL, username TEXT, phone_number TEXT, last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER)))",
        "CREATE TABLE version (number INTEGER PRIMARY KEY)",
    ] {
        sqlx::query(statement).execute(&mut connection).await?;
    }
    sqlx::query("INSERT INTO version VALUES (3)")
        .execute(&mut connection)
        .await?;
    sqlx::query("INSERT INTO sessions VALUES (?, 12345, ?, ?, 1700000000, ?, 0)")
        .bind(session.dc_id)
        .bind(i64::from(test_mode))
        .bind(&session.auth_key.0[..])
        .bind(session.user_id)
        .execute(&mut connection)
        .await?;
    for entity in &session.entities {
        let kind = if entity.id > 0 {
            "user"
        } else if entity.id < -1_000_000_000_000 {
            "supergroup"
        } else {
            "group"
        };
        sqlx::query("INSERT INTO peers VALUES (?, ?, ?, ?, NULL, ?)")
            .bind(entity.id)
            .bind(entity.access_hash)
            .bind(kind)
            .bind(&entity.username)
            .bind(entity.seen_at.unwrap_or(0))
            .execute(&mut connection)
            .await?;
    }
    connection.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobbot_core::legacy_session::LegacyUpdateState;

    /// Telethon's sample as Pyrogram keeps it: no names, no update position, the user known.
    fn sample() -> LegacySession {
        let mut session = crate::telethon::tests::sample();
        for entity in &mut session.entities {
            entity.name = None;
        }
        session.update_state = None;
        session.channel_states.clear();
        session.user_id = Some(5_000_999);
        session
    }

    /// Writes the sample at `path`, then changes it with `statements`.
    async fn written_then(path: &Path, statements: &[&str]) {
        write_pyrogram_session(path, &sample(), false)
            .await
            .unwrap();
        let mut connection = SqliteConnectOptions::new()
            .filename(path)
            .connect()
            .await
            .unwrap();
        for statement in statements {
            sqlx::query(statement)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        connection.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_pyrogram_session_reads_with_its_key_its_dcs_address_and_its_peers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.session");
        let session = sample();
        write_pyrogram_session(&path, &session, false)
            .await
            .unwrap();
        assert!(crate::telethon::is_sqlite(&std::fs::read(&path).unwrap()));
        assert!(is_pyrogram(&path).await);
        let read = read_pyrogram_session(&path).await.unwrap();
        assert_eq!(read, session);
        assert_eq!(read.auth_key.id(), session.auth_key.id());

        // The same account on a test DC: Pyrogram's test addresses, port 80.
        let test = dir.path().join("test.session");
        let on_test = sample();
        write_pyrogram_session(&test, &on_test, true).await.unwrap();
        let read = read_pyrogram_session(&test).await.unwrap();
        assert_eq!(
            (read.server_address.as_str(), read.port),
            ("149.154.167.40", 80)
        );
    }

    #[tokio::test]
    async fn a_forks_session_reads_its_usernames_and_update_state_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fork.session");
        written_then(
            &path,
            &[
            "UPDATE version SET number = 5",
            "CREATE TABLE usernames (id INTEGER, username TEXT, FOREIGN KEY (id) REFERENCES peers(id))",
            "INSERT INTO usernames SELECT id, username FROM peers WHERE username IS NOT NULL",
            "ALTER TABLE peers DROP COLUMN username",
            "CREATE TABLE update_state (id INTEGER PRIMARY KEY, pts INTEGER, qts INTEGER, date INTEGER, seq INTEGER)",
            "INSERT INTO update_state VALUES (0, 120, 3, 1700000000, 4)",
            "INSERT INTO update_state VALUES (-1001234567890, 55, 0, 0, 0)",
            ],
        )
        .await;
        let read = read_pyrogram_session(&path).await.unwrap();
        assert_eq!(read.entities, sample().entities);
        assert_eq!(
            read.update_state,
            Some(LegacyUpdateState {
                pts: 120,
                qts: 3,
                date: 1_700_000_000,
                seq: 4
            })
        );
        assert_eq!(read.channel_states, [(1_234_567_890, 55)]);
    }

    #[tokio::test]
    async fn unknown_versions_dcs_and_keyless_sessions_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, statement, expected) in [
            (
                "v1.session",
                "UPDATE version SET number = 1",
                "schema version 1",
            ),
            ("dc9.session", "UPDATE sessions SET dc_id = 9", "DC 9"),
            (
                "keyless.session",
                "UPDATE sessions SET auth_key = NULL",
                "no auth key",
            ),
        ] {
            let path = dir.path().join(name);
            written_then(&path, &[statement]).await;
            let error = read_pyrogram_session(&path).await.unwrap_err().to_string();
            assert!(error.contains(expected) && error.contains(name), "{error}");
        }
        // A Telethon file is not Pyrogram's.
        let telethon = dir.path().join("telethon.session");
        let mut session = sample();
        session.entities.clear();
        crate::telethon::write_telethon_session(&telethon, &session)
            .await
            .unwrap();
        assert!(!is_pyrogram(&telethon).await);
    }
}
