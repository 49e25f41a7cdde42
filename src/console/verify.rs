//! `audit verify` run from the console, in the background: the same library walk as
//! `concord audit verify` ([`crate::audit::verify_with_progress`]), over the same store, with
//! the same key, signed-head key and witness file, on two connections of its own (so that it
//! takes none of the pool requests use) and yielding between batches.
//!
//! One runs at a time in an instance: asking again while one runs shows that one. Its start
//! and its result are records in the audit chain, with the console user who started it as
//! the user; a result that could not be recorded is not shown. It lives in this process
//! only: when the instance stops, a running verify is lost (nothing depends on it), and the
//! last result is forgotten.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};

use super::signin::Actor;
use super::{Console, ConsoleError};
use crate::audit::{AuditKey, Broken, HeadCheck, Progress, Verified};
use crate::config::AuditConfig;
use crate::store::Store;

/// The route both audit records of a verify name.
pub(super) const VERIFY_ROUTE: &str = "/console/health/verify";

/// Where a verify reads from, and the one that runs (or ran last).
#[derive(Debug)]
pub(super) struct Verifier {
    store_url: String,
    audit: Option<AuditConfig>,
    /// Held while a verify is being started, so two requests cannot both start one.
    current: tokio::sync::Mutex<Option<Arc<Run>>>,
}

/// How a verify ended.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// Every chain, head and search row checked out.
    Passed(Verified),
    /// The first problem found.
    Broken(Broken),
    /// The verify could not run to the end (the store, the key).
    Failed(String),
    /// It ended, but its result could not be recorded in the audit chain, so it is not shown.
    Unrecorded,
}

/// How far a verify has got.
#[derive(Debug, Clone, Default)]
pub(super) struct Status {
    /// The chain being walked.
    pub(super) chain: Option<String>,
    /// Records checked so far.
    pub(super) checked: u64,
    /// Records in the log when it started.
    pub(super) total: Option<u64>,
    /// When it ended, Unix microseconds, and how.
    pub(super) ended: Option<(i64, Outcome)>,
}

/// One verify: who started it, when, and how far it has got.
#[derive(Debug)]
pub(super) struct Run {
    /// When it started, Unix microseconds.
    pub(super) started_us: i64,
    /// Who started it (their name, else their user id).
    pub(super) by: String,
    status: Mutex<Status>,
}

impl Run {
    /// A copy of its status now.
    pub(super) fn status(&self) -> Status {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        // Each update is a few assignments: a poisoned lock still holds a whole status.
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn running(&self) -> bool {
        self.lock().ended.is_none()
    }
}

/// What starting a verify did.
pub(super) enum Started {
    /// A new verify runs.
    New,
    /// One was already running; it goes on.
    AlreadyRunning,
}

impl Verifier {
    /// The `[audit]` settings a verify reads (the key, the heads' key, the witness file).
    pub(super) fn audit_config(&self) -> Option<&AuditConfig> {
        self.audit.as_ref()
    }

    pub(super) fn new(store_url: &str, audit: Option<AuditConfig>) -> Verifier {
        Verifier {
            store_url: store_url.to_owned(),
            audit,
            current: tokio::sync::Mutex::new(None),
        }
    }
}

impl Console {
    /// The verify running now, or the last one this instance ran.
    pub(super) async fn last_verify(&self) -> Option<Arc<Run>> {
        self.0.verify.current.lock().await.clone()
    }

    /// Starts a verify for `who`, unless one is running. Its start is recorded in the audit
    /// chain first; when that fails, nothing starts.
    pub(super) async fn start_verify(
        &self,
        headers: &HeaderMap,
        who: Actor,
    ) -> Result<Started, ConsoleError> {
        let mut current = self.0.verify.current.lock().await;
        if current.as_ref().is_some_and(|run| run.running()) {
            return Ok(Started::AlreadyRunning);
        }
        let start = self.event(
            headers,
            "POST",
            VERIFY_ROUTE,
            Some(&who),
            StatusCode::SEE_OTHER,
        );
        self.append(&start).await?;
        let run = Arc::new(Run {
            started_us: start.recorded_us,
            by: who.name.clone().unwrap_or_else(|| who.user.clone()),
            status: Mutex::new(Status::default()),
        });
        *current = Some(run.clone());
        // The result is recorded under the start's request id.
        let mut origin = HeaderMap::new();
        if let Some(id) = headers.get("x-request-id") {
            origin.insert("x-request-id", id.clone());
        }
        let console = self.clone();
        tokio::spawn(async move {
            // Should the task end any other way (the runtime shutting down), the check does
            // not stay "running" for ever.
            let _ends = Ends(run.clone());
            let outcome = console.run_verify(&run).await;
            let outcome = match console.record_result(&origin, &who, &outcome).await {
                Ok(()) => outcome,
                Err(e) => {
                    tracing::error!(error = %e, "the result of audit verify could not be recorded; it is not shown");
                    Outcome::Unrecorded
                }
            };
            run.lock().ended = Some((jiff::Timestamp::now().as_microsecond(), outcome));
        });
        Ok(Started::New)
    }

    /// The walk itself, on connections of its own.
    async fn run_verify(&self, run: &Arc<Run>) -> Outcome {
        let setup = &self.0.verify;
        let Some(audit) = &setup.audit else {
            return Outcome::Failed("the config has no [audit] section".into());
        };
        let key = match AuditKey::load(audit.key_file.as_deref(), audit.key_env.as_deref()) {
            Ok(key) => key,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let heads = match head_check(audit) {
            Ok(heads) => heads,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        // Half the cores, so that requests keep the rest; each part on connections of its own.
        let parts = crate::audit::Parts::beside_requests();
        // An in-memory SQLite store exists only in the gateway's own pool.
        let own = !setup.store_url.contains(":memory:") && !setup.store_url.contains("mode=memory");
        let store = if own {
            match Store::connect(&setup.store_url, parts.connections()).await {
                Ok(store) => store,
                Err(e) => {
                    tracing::error!(error = %e, "audit verify cannot connect to the store");
                    return Outcome::Failed("the store cannot be reached".into());
                }
            }
        } else {
            self.0.store.clone()
        };
        match store.audit_record_total().await {
            Ok(total) => run.lock().total = u64::try_from(total).ok(),
            Err(e) => tracing::warn!(error = %e, "audit verify cannot count the records"),
        }
        let progress_of = run.clone();
        let mut progress = move |p: Progress<'_>| {
            let mut status = progress_of.lock();
            if status.chain.as_deref() != Some(p.chain) {
                status.chain = Some(p.chain.to_owned());
            }
            status.checked = p.records;
        };
        let walked =
            crate::audit::verify_with_progress(&store, &key, &heads, parts, &mut progress).await;
        if own {
            close(store).await;
        }
        match walked {
            Ok(Ok(verified)) => {
                run.lock().checked = verified.records;
                Outcome::Passed(verified)
            }
            Ok(Err(broken)) => Outcome::Broken(broken),
            Err(e) => {
                tracing::error!(error = %e, "audit verify could not read the log");
                Outcome::Failed(format!("the audit log could not be read: {e}"))
            }
        }
    }

    /// Records how a verify ended, as `who`.
    async fn record_result(
        &self,
        headers: &HeaderMap,
        who: &Actor,
        outcome: &Outcome,
    ) -> Result<(), ConsoleError> {
        let (status, said) = match outcome {
            Outcome::Passed(v) => (StatusCode::OK, passed(v)),
            Outcome::Broken(b) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("audit log BROKEN: {b}"),
            ),
            Outcome::Failed(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("audit verify could not run: {why}"),
            ),
            Outcome::Unrecorded => return Ok(()),
        };
        let mut body = self.event(headers, "POST", VERIFY_ROUTE, Some(who), status);
        // What the check found, as the command line says it: positions and counts only.
        body.target = format!("{VERIFY_ROUTE} {said}");
        self.append(&body).await
    }
}

/// Marks a check that has not ended as stopped, when dropped.
struct Ends(Arc<Run>);

impl Drop for Ends {
    fn drop(&mut self) {
        let mut status = self.0.lock();
        if status.ended.is_none() {
            status.ended = Some((
                jiff::Timestamp::now().as_microsecond(),
                Outcome::Failed("the check stopped before it ended".into()),
            ));
        }
    }
}

/// What `concord audit verify` prints when the log verifies (without the time it took).
pub(super) fn passed(v: &Verified) -> String {
    format!(
        "audit log verified: {} record(s) in {} chain(s), {} signed head(s)",
        v.records, v.chains, v.heads
    )
}

/// The signed heads to check as `concord audit verify` checks them: signatures with the
/// public half of `head_signing_key_file`, and the witness file's heads when it exists.
fn head_check(audit: &AuditConfig) -> Result<HeadCheck, crate::audit::heads::HeadError> {
    let mut heads = HeadCheck::default();
    if let Some(file) = &audit.head_signing_key_file {
        heads.public_key = Some(
            crate::audit::heads::HeadSigner::load(file)?
                .public_key()
                .to_owned(),
        );
    }
    if let Some(file) = audit.witness_file.as_deref().filter(|f| f.exists()) {
        heads.witnessed = crate::audit::heads::read_witness(file)?;
    }
    Ok(heads)
}

async fn close(store: Store) {
    match store {
        Store::Sqlite(pool) => pool.close().await,
        Store::Postgres(pool) => pool.close().await,
    }
}
