//! A PostgreSQL database of its own for a benchmark (`jobbot bench cluster`): created on a
//! server, named apart from everyone else's, dropped at the end, and its own counters read from
//! `pg_stat_database`, so the transactions the benchmark's nodes make can be counted without
//! anyone else's.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

/// A failure to create, read or drop a scratch database. Messages name the database, never the
/// connection's credentials.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("the database URL is not a valid PostgreSQL URL: {source}")]
    InvalidUrl {
        #[source]
        source: sqlx::Error,
    },
    #[error("the database name {name:?} is not a plain identifier")]
    InvalidName { name: String },
    #[error("could not {action} the database {name}: {source}")]
    Server {
        action: &'static str,
        name: String,
        #[source]
        source: sqlx::Error,
    },
}

/// A database created by [`ScratchDatabase::create`]; [`ScratchDatabase::drop_database`] removes
/// it (with any connection still open to it).
#[derive(Debug)]
pub struct ScratchDatabase {
    /// The server's database the administrative statements run in (the base URL's).
    server: PgConnectOptions,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates the database `name` (which must not exist) on the server of
    /// `base_url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?…]`).
    pub async fn create(base_url: &str, name: &str) -> Result<Self, ScratchError> {
        let plain = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(ScratchError::InvalidName {
                name: name.to_owned(),
            });
        }
        let server = PgConnectOptions::from_str(base_url)
            .map_err(|source| ScratchError::InvalidUrl { source })?;
        let database = Self {
            server,
            name: name.to_owned(),
            url: with_database(base_url, name),
        };
        database
            .execute(
                "create",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
        database
            .execute("create", &format!("CREATE DATABASE {name}"))
            .await?;
        Ok(database)
    }

    /// The URL of the database (the base URL with its database replaced).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Transactions committed and rolled back in the database so far (`pg_stat_database`'s
    /// `xact_commit + xact_rollback`), read over a connection to the server's base database so
    /// the reading is not counted. A backend reports its counts when it goes idle, at most
    /// about once a second, so a reading trails the truth by up to a second of traffic.
    pub async fn transactions(&self) -> Result<u64, ScratchError> {
        let failed = |source| ScratchError::Server {
            action: "read the counters of",
            name: self.name.clone(),
            source,
        };
        let mut connection = self.server.connect().await.map_err(failed)?;
        let count: i64 = sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&mut connection)
        .await
        .map_err(failed)?;
        connection.close().await.map_err(failed)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Drops the database, closing the connections still open to it.
    pub async fn drop_database(self) -> Result<(), ScratchError> {
        self.execute(
            "drop",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
    }

    async fn execute(&self, action: &'static str, sql: &str) -> Result<(), ScratchError> {
        let failed = |source| ScratchError::Server {
            action,
            name: self.name.clone(),
            source,
        };
        let mut connection: PgConnection = self.server.connect().await.map_err(failed)?;
        sqlx::query(sql)
            .execute(&mut connection)
            .await
            .map_err(failed)?;
        connection.close().await.map_err(failed)
    }
}

/// `url` naming `database` instead of its own, its parameters kept.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.split_once('?').map(|(_, query)| query);
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_url_names_the_scratch_database_and_keeps_its_parameters() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "bench_1"),
            "postgres://postgres@127.0.0.1:5432/bench_1"
        );
        assert_eq!(
            with_database("postgres://u:p@db/test?sslmode=disable", "bench_1"),
            "postgres://u:p@db/bench_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@db", "bench_1"),
            "postgres://u@db/bench_1"
        );
    }
}
