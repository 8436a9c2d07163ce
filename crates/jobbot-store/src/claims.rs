//! Claims of outbox messages and workflows by nodes sharing one database, on both SQL backends
//! with one SQL text and one body per operation (as `leases.rs`). `claim_attempt` runs in the
//! caller's write transaction, so the lease check, the claim and the attempt's record are one.

use jobbot_core::cluster::{AttemptClaim, ClaimRefusal, FencingToken, NodeId};
use jobbot_core::ids::SessionName;
use jobbot_core::store::{OutboxEnd, OutboxId, StoreError, UnixMillis, WorkflowId};
use jobbot_core::telegram::RandomId;
use sqlx::{Database, Encode, Executor, IntoArguments, Type};

use crate::rows::{StoredRow, column, failed, to_json};

/// `$1` agent, `$2` node, `$3` now, `$4` token, `$5` message. Records the attempt and the
/// claim only if the node holds the agent's lease with the token, the message is pending, not
/// in doubt on another agent and not claimed by another node until later. Two claimers of one
/// row serialize on it (PostgreSQL re-checks the condition on the row the first one wrote;
/// SQLite has one writer), so one of them gets it.
const CLAIM_ATTEMPT_SQL: &str = "UPDATE outbox SET attempts = attempts + 1, last_agent = $1, \
     in_doubt_agent = $1, updated_at = $3, claimed_by = $2, \
     claim_token = session_leases.token, claim_expires_at = session_leases.expires_at \
     FROM session_leases \
     WHERE outbox.id = $5 AND outbox.status = 'pending' \
        AND (outbox.in_doubt_agent IS NULL OR outbox.in_doubt_agent = $1) \
        AND (outbox.claimed_by IS NULL OR outbox.claimed_by = $2 OR outbox.claim_expires_at <= $3) \
        AND session_leases.session = $1 AND session_leases.holder = $2 \
        AND session_leases.token = $4 AND session_leases.expires_at > $3 \
     RETURNING id";

/// `$1` status, `$2` end (JSON), `$3` now, `$4` message, `$5` node. Ends the message unless
/// another node's claim on it runs past now.
const END_UNCLAIMED_SQL: &str = "UPDATE outbox SET status = $1, end_reason = $2, \
     in_doubt_agent = NULL, updated_at = $3 \
     WHERE id = $4 AND status = 'pending' \
        AND (claimed_by IS NULL OR claimed_by = $5 OR claim_expires_at <= $3) \
     RETURNING id";

/// `$1` workflow, `$2` node, `$3` now. The claimant must be alive itself: a node before its
/// first heartbeat (or after its last one expired) claims nothing, since the others cannot see
/// it and would take the workflow back at once, and two nodes would drive it.
const CLAIM_WORKFLOW_SQL: &str = "UPDATE workflows SET claimed_by = $2 \
     WHERE id = $1 AND NOT finished \
     AND EXISTS (SELECT 1 FROM cluster_nodes AS me \
        WHERE me.node = $2 AND me.expires_at > $3) \
     AND (claimed_by IS NULL OR claimed_by = $2 \
        OR NOT EXISTS (SELECT 1 FROM cluster_nodes \
            WHERE cluster_nodes.node = workflows.claimed_by AND cluster_nodes.expires_at > $3)) \
     RETURNING id";

/// Takes message `id` for `node` and records the attempt through `agent`, in the caller's
/// write transaction (`connection`); the caller commits.
pub(crate) async fn claim_attempt<DB>(
    connection: &mut DB::Connection,
    id: OutboxId,
    (agent, node, token): (&SessionName, &NodeId, FencingToken),
    proposed: RandomId,
    at: UnixMillis,
) -> Result<AttemptClaim, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let operation = "claim a message for a send attempt";
    let claimed = sqlx::query(CLAIM_ATTEMPT_SQL)
        .bind(agent.as_str())
        .bind(node.as_str())
        .bind(at.0)
        .bind(token.0)
        .bind(id.0)
        .fetch_optional(&mut *connection)
        .await
        .map_err(failed(operation))?;
    if claimed.is_none() {
        return Ok(AttemptClaim::Refused(
            refusal::<DB>(connection, id, (agent, node, token), at).await?,
        ));
    }
    let random_id = attempt_random_id::<DB>(connection, operation, id, agent, proposed, at).await?;
    Ok(AttemptClaim::Taken(random_id))
}

/// Ends message `id` as `end` for `node` unless another node's claim on it runs past `at`,
/// in the caller's write transaction (`connection`); the caller commits.
pub(crate) async fn end_unclaimed<DB>(
    connection: &mut DB::Connection,
    id: OutboxId,
    end: &OutboxEnd,
    node: &NodeId,
    at: UnixMillis,
) -> Result<Result<(), ClaimRefusal>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let operation = "end an outbox message no other node holds";
    let text = to_json(operation, "the end", end)?;
    let ended = sqlx::query(END_UNCLAIMED_SQL)
        .bind(end.status().as_str())
        .bind(text)
        .bind(at.0)
        .bind(id.0)
        .bind(node.as_str())
        .fetch_optional(&mut *connection)
        .await
        .map_err(failed(operation))?;
    if ended.is_some() {
        return Ok(Ok(()));
    }
    let unreadable = |problem: String| StoreError::new(operation, problem);
    let Some(message) = sqlx::query(
        "SELECT claimed_by, claim_expires_at FROM outbox WHERE id = $1 AND status = 'pending'",
    )
    .bind(id.0)
    .fetch_optional(&mut *connection)
    .await
    .map_err(failed(operation))?
    else {
        return Ok(Err(ClaimRefusal::NotPending));
    };
    claimed_elsewhere::<DB>(&message, unreadable).map(Err)
}

/// The claim a pending message's row names (read after a conditional update refused it).
fn claimed_elsewhere<DB>(
    message: &DB::Row,
    unreadable: impl Fn(String) -> StoreError,
) -> Result<ClaimRefusal, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
{
    let claimer = column::<Option<String>>(message, "claimed_by").map_err(&unreadable)?;
    let until = column::<Option<i64>>(message, "claim_expires_at").map_err(&unreadable)?;
    match (claimer, until) {
        (Some(claimer), Some(until)) => Ok(ClaimRefusal::ClaimedElsewhere {
            node: NodeId::parse(&claimer)
                .map_err(|error| unreadable(format!("column claimed_by: {error}")))?,
            until: UnixMillis(until),
        }),
        _ => Err(unreadable(
            "the change was refused, yet nothing in the message refuses it".to_owned(),
        )),
    }
}

/// The random id of an attempt on `agent` just recorded, in the caller's transaction: the
/// first one this agent was given for the message wins (re-sending with it lets Telegram drop
/// the duplicate if the earlier attempt did get through), else `proposed`, kept from now on.
pub(crate) async fn attempt_random_id<DB>(
    connection: &mut DB::Connection,
    operation: &'static str,
    id: OutboxId,
    agent: &SessionName,
    proposed: RandomId,
    at: UnixMillis,
) -> Result<RandomId, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    sqlx::query(
        "INSERT INTO outbox_attempts (outbox_id, agent, random_id, first_attempt_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (outbox_id, agent) DO NOTHING",
    )
    .bind(id.0)
    .bind(agent.as_str())
    .bind(proposed.0)
    .bind(at.0)
    .execute(&mut *connection)
    .await
    .map_err(failed(operation))?;
    let row =
        sqlx::query("SELECT random_id FROM outbox_attempts WHERE outbox_id = $1 AND agent = $2")
            .bind(id.0)
            .bind(agent.as_str())
            .fetch_one(&mut *connection)
            .await
            .map_err(failed(operation))?;
    column::<i64>(&row, "random_id")
        .map(RandomId)
        .map_err(|problem| StoreError::new(operation, problem))
}

/// Why a claim was refused, read in the same transaction.
async fn refusal<DB>(
    connection: &mut DB::Connection,
    id: OutboxId,
    (agent, node, token): (&SessionName, &NodeId, FencingToken),
    at: UnixMillis,
) -> Result<ClaimRefusal, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let operation = "claim a message for a send attempt";
    let unreadable = |problem: String| StoreError::new(operation, problem);
    let Some(message) = sqlx::query(
        "SELECT in_doubt_agent, claimed_by, claim_expires_at FROM outbox \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id.0)
    .fetch_optional(&mut *connection)
    .await
    .map_err(failed(operation))?
    else {
        return Ok(ClaimRefusal::NotPending);
    };
    let held = sqlx::query(
        "SELECT session FROM session_leases \
         WHERE session = $1 AND holder = $2 AND token = $3 AND expires_at > $4",
    )
    .bind(agent.as_str())
    .bind(node.as_str())
    .bind(token.0)
    .bind(at.0)
    .fetch_optional(&mut *connection)
    .await
    .map_err(failed(operation))?;
    if held.is_none() {
        return Ok(ClaimRefusal::LeaseNotHeld);
    }
    if let Some(other) = crate::rows::session_column(&message, "in_doubt_agent")
        .map_err(unreadable)?
        .filter(|other| other != agent)
    {
        return Ok(ClaimRefusal::InDoubtOn { agent: other });
    }
    claimed_elsewhere::<DB>(&message, unreadable)
}

pub(crate) async fn claim_workflow<'e, DB, E>(
    executor: E,
    id: WorkflowId,
    node: &NodeId,
    now: UnixMillis,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    let claimed = sqlx::query(CLAIM_WORKFLOW_SQL)
        .bind(id.0)
        .bind(node.as_str())
        .bind(now.0)
        .fetch_optional(executor)
        .await
        .map_err(failed("claim a workflow"))?;
    Ok(claimed.is_some())
}

/// Hands workflow `id` from node `from` to node `to` (see `Store::hand_over_workflow`).
pub(crate) async fn hand_over_workflow<'e, DB, E>(
    executor: E,
    id: WorkflowId,
    from: &NodeId,
    to: &NodeId,
) -> Result<bool, StoreError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    let handed = sqlx::query(
        "UPDATE workflows SET claimed_by = $3 \
         WHERE id = $1 AND claimed_by = $2 AND NOT finished RETURNING id",
    )
    .bind(id.0)
    .bind(from.as_str())
    .bind(to.as_str())
    .fetch_optional(executor)
    .await
    .map_err(failed("hand a workflow to another node"))?;
    Ok(handed.is_some())
}

pub(crate) async fn remember_account_user<'e, DB, E>(
    executor: E,
    session: &SessionName,
    user: jobbot_core::ids::ChatId,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    E: Executor<'e, Database = DB>,
{
    sqlx::query(
        "INSERT INTO account_users (session, user_id) VALUES ($1, $2) \
         ON CONFLICT (session) DO UPDATE SET user_id = excluded.user_id",
    )
    .bind(session.as_str())
    .bind(user.get())
    .execute(executor)
    .await
    .map_err(failed("record an account's user"))?;
    Ok(())
}

pub(crate) async fn account_users<'e, DB, E>(
    executor: E,
) -> Result<Vec<jobbot_core::ids::ChatId>, StoreError>
where
    DB: Database,
    DB::Row: StoredRow,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    E: Executor<'e, Database = DB>,
{
    let operation = "list the accounts' users";
    let rows = sqlx::query("SELECT user_id FROM account_users ORDER BY session")
        .fetch_all(executor)
        .await
        .map_err(failed(operation))?;
    rows.iter()
        .map(|row| {
            let id = column::<i64>(row, "user_id")
                .map_err(|problem| StoreError::new(operation, problem))?;
            jobbot_core::ids::ChatId::from_bot_api(id)
                .ok_or_else(|| StoreError::new(operation, format!("user_id {id} is not a chat id")))
        })
        .collect()
}
