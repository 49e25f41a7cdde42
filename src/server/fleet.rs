//! One instance among others on one store. It hears what the others change (PostgreSQL
//! change notices, [`crate::store::notify`]) and drops what it cached of those people; and it
//! says every few seconds which policy set it enforces (`gateway_instances`), so that the
//! operator's readiness view shows the fleet and whether its policy sets agree.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{Value, json};

use super::{AppState, Inner};
use crate::disclose::Heard;
use crate::store::notify::{self, Event};
use crate::store::{Instance, Store, StoreError};

/// How often an instance says it is alive (and within a second of a policy reload).
const HEARTBEAT: Duration = Duration::from_secs(5);

/// An instance not heard from for this long is no longer counted in the fleet.
const WINDOW_SECS: i64 = 30;

/// Rows of instances not heard from for this long are deleted (each process start is a new
/// instance).
const FORGET_AFTER_SECS: i64 = 24 * 3600;

/// The listener's states, as the `concord_change_listener_state` gauge shows them.
const LISTENER_NOT_NEEDED: i64 = 0;
const LISTENER_DOWN: i64 = 1;
const LISTENER_LISTENING: i64 = 2;

impl AppState {
    /// Joins the fleet on the store. On PostgreSQL, listens for the changes other instances
    /// make to people's links and sharing choices (until the listener is connected, and
    /// whenever it is not, those are read from the store on every request); on every store,
    /// says every few seconds which policy set this instance enforces. Once the state is
    /// dropped, the heartbeat ends within a second and the listener at its next event (or
    /// with the runtime). `concord serve` calls it; a one-off command (`policy explain`) does
    /// not.
    pub fn spawn_fleet(&self) {
        let store = self.door.federation().store().clone();
        if matches!(store, Store::Postgres(_)) {
            self.door.heard(Heard::Deaf);
            self.metrics.change_listener.set(LISTENER_DOWN);
            let name = format!("concord-listener {}", self.audit.chain());
            tokio::spawn(listen(Arc::downgrade(&self.0), store.clone(), name));
        } else {
            self.metrics.change_listener.set(LISTENER_NOT_NEEDED);
        }
        let me = Instance {
            chain: self.audit.chain().to_owned(),
            listen: self.config.listen.to_string(),
            policy_hash: String::new(),
            policy_loaded_at: String::new(),
            started_at: now_secs(),
            heartbeat_at: 0,
        };
        tokio::spawn(heartbeat(Arc::downgrade(&self.0), store, me));
    }
}

/// The change listener's task: each notice evicts the person; a lost connection makes the
/// caches bypassed until it is back, and then cleared. State changes are logged once.
async fn listen(state: Weak<Inner>, store: Store, name: String) {
    let mut listening: Option<bool> = None;
    notify::listen(&store, &name, |event| {
        let Some(state) = state.upgrade() else {
            return ControlFlow::Break(());
        };
        match event {
            Event::Changed(change) => {
                state.door.heard(Heard::Changed(change.person));
                state
                    .metrics
                    .change_notices
                    .get_or_create(&crate::telemetry::NoticeLabels {
                        kind: change.kind.name(),
                    })
                    .inc();
            }
            Event::Unrecognised => {
                state
                    .metrics
                    .change_notices
                    .get_or_create(&crate::telemetry::NoticeLabels {
                        kind: "unrecognised",
                    })
                    .inc();
            }
            Event::Listening => {
                state.door.heard(Heard::Listening);
                state.metrics.change_listener.set(LISTENER_LISTENING);
                if listening == Some(false) {
                    tracing::info!(
                        "listening for changes made through other instances again; cached links and sharing choices were cleared"
                    );
                } else {
                    tracing::info!("listening for changes made through other instances");
                }
                listening = Some(true);
            }
            Event::Lost(error) => {
                state.door.heard(Heard::Deaf);
                state.metrics.change_listener.set(LISTENER_DOWN);
                if listening != Some(false) {
                    tracing::warn!(
                        %error,
                        "not listening for changes made through other instances: links and sharing choices are read from the store on every request until the listener reconnects"
                    );
                } else {
                    tracing::debug!(%error, "the change listener could not reconnect yet");
                }
                listening = Some(false);
            }
        }
        ControlFlow::Continue(())
    })
    .await;
}

/// The heartbeat's task: writes this instance's row every [`HEARTBEAT`], and within a second
/// of a change of its policy set; then reads the fleet, sets the fleet metrics and logs when
/// the policy sets come to disagree or agree again.
async fn heartbeat(state: Weak<Inner>, store: Store, mut me: Instance) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(tokio::time::Instant, String)> = None;
    let mut failing = false;
    let mut disagreed = false;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let set = state.door.policies().current();
        let due = last
            .as_ref()
            .is_none_or(|(at, hash)| at.elapsed() >= HEARTBEAT || *hash != set.hash);
        if !due {
            continue;
        }
        me.policy_hash.clone_from(&set.hash);
        me.policy_loaded_at = state.door.policies().status().loaded_at;
        me.heartbeat_at = now_secs();
        match within(store.heartbeat(&me)).await {
            Ok(()) => {
                if failing {
                    tracing::info!("the fleet heartbeat is written again");
                }
                failing = false;
                last = Some((tokio::time::Instant::now(), set.hash.clone()));
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "cannot write the fleet heartbeat");
                }
                failing = true;
                continue;
            }
        }
        let long_gone = me.heartbeat_at - FORGET_AFTER_SECS;
        if let Err(error) = within(store.forget_instances(long_gone)).await {
            tracing::debug!(%error, "cannot forget instances long gone");
        }
        let Ok(fleet) = within(Fleet::read(&state)).await else {
            continue;
        };
        state
            .metrics
            .fleet_instances
            .set(i64::try_from(fleet.instances.len()).unwrap_or(i64::MAX));
        state
            .metrics
            .fleet_policy_sets
            .set(i64::try_from(fleet.hashes.len()).unwrap_or(i64::MAX));
        let disagree = fleet.disagree();
        if disagree && !disagreed {
            tracing::warn!(
                policy.hashes = ?fleet.hashes,
                instances = fleet.instances.len(),
                "the fleet's instances enforce different policy sets"
            );
        } else if !disagree && disagreed {
            tracing::info!(policy.hash = %set.hash, "the fleet's instances enforce one policy set again");
        }
        disagreed = disagree;
    }
}

/// The instances heard from within the window, and the policy sets they enforce.
struct Fleet {
    instances: Vec<Instance>,
    /// Their policy hashes, this instance's own (as in force now) among them.
    hashes: BTreeSet<String>,
}

impl Fleet {
    async fn read(state: &Inner) -> Result<Fleet, StoreError> {
        let store = state.door.federation().store();
        let instances = store.instances(now_secs() - WINDOW_SECS).await?;
        let mut hashes: BTreeSet<String> =
            instances.iter().map(|i| i.policy_hash.clone()).collect();
        hashes.insert(state.door.policies().current().hash.clone());
        Ok(Fleet { instances, hashes })
    }

    fn disagree(&self) -> bool {
        self.hashes.len() > 1
    }
}

/// The `fleet` part of `/readyz/detail`: this instance, the change listener, every instance
/// heard from within the window with its policy set, and whether the sets disagree.
pub(super) async fn view(state: &AppState) -> Value {
    let listener = match (
        state.door.federation().store(),
        state.door.federation().caches_trusted(),
    ) {
        (Store::Sqlite(_), _) => "not needed",
        (Store::Postgres(_), true) => "listening",
        (Store::Postgres(_), false) => "down",
    };
    let mut view = json!({
        "instance": state.audit.chain(),
        "policy_hash": state.door.policies().current().hash,
        "change_listener": listener,
        "window_secs": WINDOW_SECS,
    });
    match within(Fleet::read(state)).await {
        Ok(fleet) => {
            view["policy_sets_disagree"] = json!(fleet.disagree());
            view["policy_hashes"] = json!(fleet.hashes);
            view["instances"] = fleet
                .instances
                .iter()
                .map(|i| {
                    json!({
                        "instance": i.chain,
                        "listen": i.listen,
                        "policy_hash": i.policy_hash,
                        "policy_loaded_at": i.policy_loaded_at,
                        "started_at": rfc3339(i.started_at),
                        "heartbeat_at": rfc3339(i.heartbeat_at),
                    })
                })
                .collect();
        }
        Err(error) => {
            tracing::warn!(%error, "readiness: cannot read the fleet");
            view["error"] = json!("the store did not say which instances are running");
        }
    }
    view
}

/// Longest the fleet's own reads and writes may take: a store that hangs holds neither a
/// connection of the pool nor the readiness view for longer.
const STORE_WAIT: Duration = Duration::from_secs(2);

/// Runs a store call under [`STORE_WAIT`].
async fn within<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(STORE_WAIT, call)
        .await
        .unwrap_or(Err(StoreError::Timeout(STORE_WAIT)))
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// The current time, in Unix seconds.
fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}
