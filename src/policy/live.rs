//! The policy set a running gateway enforces, and reloading it.
//!
//! The set is loaded once at start (an invalid set stops the gateway starting) and again on
//! `SIGHUP` or when the files under the policy directory change (checked every
//! `[policy] reload_check_secs`). A reload that fails keeps the last good set: the errors go
//! to the log and to `/readyz`, and the set in force does not change until the files are
//! fixed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{PolicyErrors, PolicySet};

/// Where the last reload stands.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// When the set in force was loaded (RFC 3339).
    pub loaded_at: String,
    /// Why the newest files could not be loaded, while they cannot.
    pub error: Option<String>,
    /// When a reload last failed (RFC 3339), while the newest files cannot be loaded.
    pub failed_at: Option<String>,
    /// The hash of the files that failed, so the same broken files are not tried again.
    failed_hash: Option<String>,
}

/// The policy set in force, swapped whole on reload.
#[derive(Debug)]
pub struct LivePolicies {
    dir: PathBuf,
    current: RwLock<Arc<PolicySet>>,
    status: RwLock<ReloadStatus>,
}

/// Today in the gateway's local calendar (agreement dates are calendar days).
pub fn today() -> jiff::civil::Date {
    jiff::Zoned::now().date()
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    // Every write replaces the whole value, so a poisoned lock holds no half-state.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = value;
}

/// The hash of the files, or why they cannot be read (so an unreadable directory is reported
/// once, not at every check).
fn files_state(dir: &Path) -> String {
    PolicySet::files_hash(dir).unwrap_or_else(|e| format!("unreadable: {e}"))
}

fn log_warnings(set: &PolicySet) {
    for warning in &set.warnings {
        tracing::warn!(%warning, "policy set");
    }
}

impl LivePolicies {
    /// Loads the set under `dir`; every error when it is not valid.
    pub fn load(dir: &Path) -> Result<LivePolicies, PolicyErrors> {
        let set = PolicySet::load(dir, today())?;
        log_warnings(&set);
        tracing::info!(
            agreements = set.agreements.len(),
            hash = %set.hash,
            "policy set loaded"
        );
        Ok(LivePolicies {
            dir: dir.to_owned(),
            current: RwLock::new(Arc::new(set)),
            status: RwLock::new(ReloadStatus {
                loaded_at: jiff::Timestamp::now().to_string(),
                ..ReloadStatus::default()
            }),
        })
    }

    /// The set in force.
    pub fn current(&self) -> Arc<PolicySet> {
        read(&self.current)
    }

    /// Where the last reload stands.
    pub fn status(&self) -> ReloadStatus {
        read(&self.status)
    }

    /// The directory the set is read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the files again. A valid set replaces the one in force (true when it differs);
    /// an invalid one is reported and the set in force stays.
    pub fn reload(&self) -> Result<bool, PolicyErrors> {
        match PolicySet::load(&self.dir, today()) {
            Ok(set) => {
                let changed = set.hash != self.current().hash;
                if changed {
                    log_warnings(&set);
                    tracing::info!(agreements = set.agreements.len(), hash = %set.hash, "policy set reloaded");
                }
                write(&self.current, Arc::new(set));
                let loaded_at = if changed {
                    jiff::Timestamp::now().to_string()
                } else {
                    self.status().loaded_at
                };
                write(
                    &self.status,
                    ReloadStatus {
                        loaded_at,
                        ..ReloadStatus::default()
                    },
                );
                Ok(changed)
            }
            Err(errors) => {
                tracing::error!(
                    errors = %errors,
                    "policy reload failed; the last good policy set stays in force"
                );
                let mut status = self.status();
                status.error = Some(errors.to_string());
                status.failed_at = Some(jiff::Timestamp::now().to_string());
                status.failed_hash = Some(files_state(&self.dir));
                write(&self.status, status);
                Err(errors)
            }
        }
    }

    /// Reloads when the files differ from both the set in force and the last files that
    /// failed. Returns true when it tried.
    pub fn reload_if_changed(&self) -> bool {
        let hash = files_state(&self.dir);
        if hash == self.current().hash || self.status().failed_hash.as_deref() == Some(&hash) {
            return false;
        }
        let _ = self.reload();
        true
    }

    /// Runs for ever: reloads on `SIGHUP` (Unix) and whenever the files change, checking
    /// every `every` (never, when zero).
    pub async fn watch(self: Arc<Self>, every: Duration) {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let tick = async {
                if every.is_zero() {
                    std::future::pending::<()>().await;
                } else {
                    tokio::time::sleep(every).await;
                }
            };
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<()>();
            tokio::select! {
                () = tick => {
                    self.reload_if_changed();
                }
                () = hup => {
                    tracing::info!("SIGHUP: reloading the policy set");
                    let _ = self.reload();
                }
            }
        }
    }
}
