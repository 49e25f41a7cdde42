//! The instances of a fleet: each says, every few seconds, what it serves and which policy set
//! it enforces (`gateway_instances`, migration 0011).

use super::{Store, StoreError};

/// One gateway instance as it last described itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its audit chain id (a new one each time a process starts).
    pub chain: String,
    /// The host and port it serves.
    pub listen: String,
    /// The hash of the policy set it enforces.
    pub policy_hash: String,
    /// When that set was loaded (RFC 3339).
    pub policy_loaded_at: String,
    /// When it started, Unix seconds.
    pub started_at: i64,
    /// Its latest heartbeat, Unix seconds.
    pub heartbeat_at: i64,
}

/// Most instances [`Store::instances`] returns: a fleet is tens of instances, and a list an
/// operator reads must stay bounded whatever the table holds.
pub const MAX_INSTANCES: i64 = 500;

impl Store {
    /// Says that `instance` is alive as of its `heartbeat_at`, with what it serves and
    /// enforces now (its row is made on the first call).
    pub async fn heartbeat(&self, instance: &Instance) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO gateway_instances (chain, listen, policy_hash, policy_loaded_at, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain) DO UPDATE SET listen = excluded.listen, policy_hash = excluded.policy_hash, policy_loaded_at = excluded.policy_loaded_at, heartbeat_at = excluded.heartbeat_at")
                .bind(&instance.chain).bind(&instance.listen).bind(&instance.policy_hash)
                .bind(&instance.policy_loaded_at).bind(instance.started_at).bind(instance.heartbeat_at)
                .execute(pool).await?;
        });
        Ok(())
    }

    /// The instances heard from at or after `since` (Unix seconds), oldest start first, at
    /// most [`MAX_INSTANCES`].
    pub async fn instances(&self, since: i64) -> Result<Vec<Instance>, StoreError> {
        type Row = (String, String, String, String, i64, i64);
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as("SELECT chain, listen, policy_hash, policy_loaded_at, started_at, heartbeat_at FROM gateway_instances WHERE heartbeat_at >= $1 ORDER BY started_at, chain LIMIT $2").bind(since).bind(MAX_INSTANCES).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .map(
                |(chain, listen, policy_hash, policy_loaded_at, started_at, heartbeat_at)| {
                    Instance {
                        chain,
                        listen,
                        policy_hash,
                        policy_loaded_at,
                        started_at,
                        heartbeat_at,
                    }
                },
            )
            .collect())
    }

    /// Forgets the instances not heard from since `before` (Unix seconds): every start of a
    /// process is a new instance, so the table would otherwise only grow.
    pub async fn forget_instances(&self, before: i64) -> Result<u64, StoreError> {
        let done = with_pool!(self, pool => sqlx::query("DELETE FROM gateway_instances WHERE heartbeat_at < $1").bind(before).execute(pool).await?.rows_affected());
        Ok(done)
    }
}
