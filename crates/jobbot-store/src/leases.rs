//! Nodes and session leases on both SQL backends: one SQL text (sqlx binds `$N` on SQLite too,
//! and both dialects have upserts with a condition and `RETURNING`) and one body per operation,
//! generic over the database. Each statement is atomic on its own; `leave` runs in the caller's
//! write transaction (each backend begins its own kind).

use jobbot_core::cluster::{FencingToken, LeaseRecord, NodeId, NodeRecord};
use jobbot_core::ids::SessionName;
use jobbot_core::store::{StoreError, UnixMillis};
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::rows::{StoredRow, column, failed, read_row, session_column};

const NODE_COLUMNS: &str = "node, started_at, heartbeat_at, expires_at";
const LEASE_COLUMNS: &str = "session, holder, token, acquired_at, renewed_at, expires_at";

/// `$1` node, `$2` now, `$3` expires at.
const HEARTBEAT_SQL: &str = "INSERT INTO cluster_nodes \
     (node, started_at, heartbeat_at, expires_at) VALUES ($1, $2, $2, $3) \
     ON CONFLICT (node) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, \
     expires_at = excluded.expires_at";

/// `$1` session, `$2` node, `$3` now, `$4` expires at. Takes a free or expired lease with the
/// next token; a lease the node holds already is extended with its token; a lease another node
/// holds is left alone (no row returned).
const ACQUIRE_LEASE_SQL: &str = "INSERT INTO session_leases \
     (session, holder, token, acquired_at, renewed_at, expires_at) VALUES ($1, $2, 1, $3, $3, $4) \
     ON CONFLICT (session) DO UPDATE SET \
     token = CASE WHEN session_leases.holder = excluded.holder AND session_leases.expires_at > $3 \
        THEN session_leases.token ELSE session_leases.token + 1 END, \
     acquired_at = CASE WHEN session_leases.holder = excluded.holder \
        AND session_leases.expires_at > $3 THEN session_leases.acquired_at ELSE $3 END, \
     holder = excluded.holder, renewed_at = $3, expires_at = $4 \
     WHERE session_leases.holder IS NULL OR session_leases.expires_at <= $3 \
        OR session_leases.holder = excluded.holder \
     RETURNING session, holder, token, acquired_at, renewed_at, expires_at";

/// `$1` session, `$2` node, `$3` token, `$4` now, `$5` expires at. Only the holder with the
/// token renews: a lease that changed hands meanwhile has another token.
const RENEW_LEASE_SQL: &str = "UPDATE session_leases SET renewed_at = $4, \
     expires_at = $5 WHERE session = $1 AND holder = $2 AND token = $3 \
     RETURNING session, holder, token, acquired_at, renewed_at, expires_at";

/// `$1` session, `$2` node, `$3` token. The row stays (with its token) for the next holder.
const RELEASE_LEASE_SQL: &str = "UPDATE session_leases SET holder = NULL \
     WHERE session = $1 AND holder = $2 AND token = $3 RETURNING session";

/// `$1` node: every lease it holds, when it leaves.
const RELEASE_NODE_LEASES_SQL: &str = "UPDATE session_leases SET holder = NULL WHERE holder = $1";

fn node_column(row: &impl StoredRow, name: &str) -> Result<Option<NodeId>, String> {
    column::<Option<String>>(row, name)?
        .map(|text| NodeId::parse(&text).map_err(|error| format!("column {name}: {error}")))
        .transpose()
}

fn read_node(row: &impl StoredRow) -> Result<NodeRecord, String> {
    Ok(NodeRecord {
        node: node_column(row, "node")?.ok_or("column node: NULL")?,
        started_at: UnixMillis(column(row, "started_at")?),
        heartbeat_at: UnixMillis(column(row, "heartbeat_at")?),
        expires_at: UnixMillis(column(row, "expires_at")?),
    })
}

fn read_lease(row: &impl StoredRow) -> Result<LeaseRecord, String> {
    Ok(LeaseRecord {
        session: session_column(row, "session")?.ok_or("column session: NULL")?,
        holder: node_column(row, "holder")?,
        token: FencingToken(column(row, "token")?),
        acquired_at: UnixMillis(column(row, "acquired_at")?),
        renewed_at: UnixMillis(column(row, "renewed_at")?),
        expires_at: UnixMillis(column(row, "expires_at")?),
    })
}

pub(crate) async fn heartbeat<'e, DB, E>(
    executor: E,
    node: &NodeId,
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<(), StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    sqlx::query(HEARTBEAT_SQL)
        .bind(node.as_str())
        .bind(now.0)
        .bind(expires_at.0)
        .execute(executor)
        .await
        .map_err(failed("record a node's heartbeat"))?;
    Ok(())
}

/// Removes `node` and frees its leases, in the caller's transaction (`connection`).
pub(crate) async fn leave<DB>(
    connection: &mut DB::Connection,
    node: &NodeId,
) -> Result<(), StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let operation = "remove a node from the cluster";
    for statement in [
        RELEASE_NODE_LEASES_SQL,
        "DELETE FROM cluster_nodes WHERE node = $1",
    ] {
        sqlx::query(statement)
            .bind(node.as_str())
            .execute(&mut *connection)
            .await
            .map_err(failed(operation))?;
    }
    Ok(())
}

pub(crate) async fn nodes<'e, DB, E>(executor: E) -> Result<Vec<NodeRecord>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    E: Executor<'e, Database = DB>,
{
    let sql = format!("SELECT {NODE_COLUMNS} FROM cluster_nodes ORDER BY node");
    fetch_rows(
        executor,
        ("list the cluster's nodes", "a node"),
        &sql,
        read_node,
    )
    .await
}

pub(crate) async fn leases<'e, DB, E>(executor: E) -> Result<Vec<LeaseRecord>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    E: Executor<'e, Database = DB>,
{
    let sql = format!("SELECT {LEASE_COLUMNS} FROM session_leases ORDER BY session");
    fetch_rows(
        executor,
        ("list the session leases", "a lease"),
        &sql,
        read_lease,
    )
    .await
}

/// Every row `sql` returns, each read with `read` (`what` names a row in errors).
async fn fetch_rows<'e, DB, E, T>(
    executor: E,
    (operation, what): (&'static str, &str),
    sql: &str,
    read: impl Fn(&DB::Row) -> Result<T, String>,
) -> Result<Vec<T>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    E: Executor<'e, Database = DB>,
{
    let rows = sqlx::query(sql)
        .fetch_all(executor)
        .await
        .map_err(failed(operation))?;
    rows.iter()
        .map(|row| read_row(operation, what, row, &read))
        .collect()
}

pub(crate) async fn acquire<'e, DB, E>(
    executor: E,
    session: &SessionName,
    node: &NodeId,
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<Option<LeaseRecord>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    let operation = "take a session's lease";
    let query = sqlx::query(ACQUIRE_LEASE_SQL)
        .bind(session.as_str())
        .bind(node.as_str())
        .bind(now.0)
        .bind(expires_at.0);
    returned_lease(operation, query.fetch_optional(executor).await)
}

pub(crate) async fn renew<'e, DB, E>(
    executor: E,
    session: &SessionName,
    node: &NodeId,
    token: FencingToken,
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<Option<LeaseRecord>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    let operation = "renew a session's lease";
    let query = sqlx::query(RENEW_LEASE_SQL)
        .bind(session.as_str())
        .bind(node.as_str())
        .bind(token.0)
        .bind(now.0)
        .bind(expires_at.0);
    returned_lease(operation, query.fetch_optional(executor).await)
}

/// How many leases one renewal statement names (two binds each, well under SQLite's 32,766).
const RENEWALS_PER_STATEMENT: usize = 500;

/// Renews many leases `node` holds in one statement per [`RENEWALS_PER_STATEMENT`] (a node
/// holding hundreds of sessions renewed each in a statement of its own every round, the most
/// frequent statement of the cluster benchmark's database after the CRM's checks); each lease
/// only with its token, as [`renew`] does. Returns the renewed leases.
pub(crate) async fn renew_many<'e, DB, E>(
    executor: E,
    node: &NodeId,
    leases: &[(SessionName, FencingToken)],
    now: UnixMillis,
    expires_at: UnixMillis,
) -> Result<Vec<LeaseRecord>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB> + Copy,
{
    let operation = "renew the sessions' leases";
    let mut renewed = Vec::with_capacity(leases.len());
    for chunk in leases.chunks(RENEWALS_PER_STATEMENT) {
        let named: Vec<String> = (0..chunk.len())
            .map(|index| {
                let session = 4 + 2 * index;
                format!("(session = ${session} AND token = ${})", session + 1)
            })
            .collect();
        let sql = format!(
            "UPDATE session_leases SET renewed_at = $1, expires_at = $2 \
             WHERE holder = $3 AND ({}) RETURNING {LEASE_COLUMNS}",
            named.join(" OR ")
        );
        let mut query = sqlx::query(&sql)
            .bind(now.0)
            .bind(expires_at.0)
            .bind(node.as_str());
        for (session, token) in chunk {
            query = query.bind(session.as_str()).bind(token.0);
        }
        let rows = query.fetch_all(executor).await.map_err(failed(operation))?;
        for row in &rows {
            renewed.push(read_row(operation, "a lease", row, read_lease)?);
        }
    }
    Ok(renewed)
}

/// The lease a statement's `RETURNING` gave back, if it changed one.
fn returned_lease<R: StoredRow>(
    operation: &'static str,
    row: Result<Option<R>, sqlx::Error>,
) -> Result<Option<LeaseRecord>, StoreError> {
    row.map_err(failed(operation))?
        .map(|row| read_row(operation, "a lease", &row, read_lease))
        .transpose()
}

pub(crate) async fn release<'e, DB, E>(
    executor: E,
    session: &SessionName,
    node: &NodeId,
    token: FencingToken,
) -> Result<bool, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    let released = sqlx::query(RELEASE_LEASE_SQL)
        .bind(session.as_str())
        .bind(node.as_str())
        .bind(token.0)
        .fetch_optional(executor)
        .await
        .map_err(failed("give a session's lease back"))?;
    Ok(released.is_some())
}

pub(crate) async fn holds<'e, DB, E>(
    executor: E,
    session: &SessionName,
    node: &NodeId,
    token: FencingToken,
    now: UnixMillis,
) -> Result<bool, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    let held = sqlx::query(
        "SELECT session FROM session_leases \
         WHERE session = $1 AND holder = $2 AND token = $3 AND expires_at > $4",
    )
    .bind(session.as_str())
    .bind(node.as_str())
    .bind(token.0)
    .bind(now.0)
    .fetch_optional(executor)
    .await
    .map_err(failed("check a session's lease"))?;
    Ok(held.is_some())
}
