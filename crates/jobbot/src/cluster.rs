//! Reading a cluster's state from outside it, as `jobbot bench cluster` and the multi-node
//! tests do: who holds each session's lease (the store), and whether the simulator sees each
//! session connected exactly once.

use std::collections::BTreeMap;

use jobbot_core::ids::SessionName;
use jobbot_core::store::{Store, StoreError, UnixMillis};
use jobbot_sim_remote::client::RpcClient;
use jobbot_sim_remote::rpc::{AdminRpcClient, ClientError};

/// Each session's lease holder now, by node name (an expired lease has none).
pub async fn lease_holders(store: &dyn Store) -> Result<BTreeMap<SessionName, String>, StoreError> {
    let now = unix_now();
    Ok(store
        .session_leases()
        .await?
        .into_iter()
        .filter_map(|lease| Some((lease.session.clone(), lease.holder_at(now)?.to_string())))
        .collect())
}

/// Whether the simulator has exactly one connection open on each of `sessions`.
pub async fn connected_once(
    admin: &RpcClient,
    sessions: &[SessionName],
) -> Result<bool, ClientError> {
    for session in sessions {
        if admin.open_connections(session.clone()).await? != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The wall clock as the store's leases count it.
pub fn unix_now() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64),
    )
}
