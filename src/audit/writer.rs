//! The writer: one task per process that gives records their positions, commits them in
//! groups, spools them while the store refuses, moves the spool back in, and signs the head.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::projector::Projector;
use super::{
    AuditError, AuditKey, Body, Columns, GENESIS, Projection, Record, encode, heads, spool,
};
use crate::store::{AuditLane, Store, StoreError};

/// Most records committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// How the audit log is set up beyond its store and key.
#[derive(Debug)]
pub struct Options {
    /// Where records go while the store cannot take them. `None`: no spool, so a store
    /// outage refuses every request (503).
    pub spool_dir: Option<PathBuf>,
    /// Signs the chain's head now and then.
    pub signer: Option<heads::HeadSigner>,
    /// How often the head is signed (when it moved).
    pub head_interval: Duration,
    /// Where signed heads are handed.
    pub witness: heads::Witness,
    /// How often spooled records are tried against the store again when no request comes.
    pub retry: Duration,
    /// Most records per transaction ([`MAX_BATCH`]; 1 turns group commit off, for
    /// benchmarks).
    pub max_batch: usize,
    /// Longest a batch waits for the store before it goes to the spool instead (only with
    /// a spool: without one, waiting is the only way to keep the record).
    pub store_wait: Duration,
    /// Where each commit to the store is counted (the gateway's `/metrics`).
    pub meters: Option<CommitMeters>,
}

/// The histograms each commit of records to the store is counted in: how long it took,
/// from the hand-over to the store's answer (the disk's flush included; a batch the store
/// refused, or that went to the spool, is not counted), and how many records it held.
#[derive(Debug, Clone)]
pub struct CommitMeters {
    /// Seconds.
    pub seconds: prometheus_client::metrics::histogram::Histogram,
    /// Records.
    pub records: prometheus_client::metrics::histogram::Histogram,
}

impl CommitMeters {
    fn observe(&self, took: Duration, records: usize) {
        self.seconds.observe(took.as_secs_f64());
        self.records.observe(records as f64);
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            spool_dir: None,
            signer: None,
            head_interval: Duration::from_secs(60),
            witness: heads::Witness::default(),
            retry: Duration::from_secs(1),
            max_batch: MAX_BATCH,
            store_wait: Duration::from_millis(250),
            meters: None,
        }
    }
}

/// How the log is doing, for `/readyz`.
#[derive(Debug, Default)]
struct Status {
    /// Records of this chain waiting in the spool.
    spooled: AtomicU64,
    /// The newest position signed, or -1.
    signed: AtomicI64,
    /// Spool files of stopped processes not yet replayed.
    orphans: AtomicU64,
    /// The last problem with the spool, heads or replay, if it is not solved.
    problem: Mutex<Option<String>>,
}

/// What `/readyz` shows of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Records of this chain in the spool, waiting for the store.
    pub spooled: u64,
    /// Spool files other processes left, waiting for the store.
    pub orphaned_spools: u64,
    /// The newest signed position of this chain.
    pub signed_head: Option<i64>,
    /// An unsolved problem (spool unreadable, witness unreachable …).
    pub problem: Option<String>,
}

/// This process's chain. Appends go to one writer task, which commits every record waiting
/// at that moment in one transaction (group commit): while one transaction is committed, the
/// next batch gathers, so concurrent requests share the cost of a commit instead of queueing
/// behind one commit each. Order and hashes are exact: the writer alone gives positions.
///
/// When the store refuses a batch, the writer appends it to the spool instead (synced before
/// anyone is answered) and the chain goes on there; every later batch follows it into the
/// spool until the spooled records are in the store, so the order never changes. Spooled
/// records are moved into the store, checked, before the next batch and every `retry`.
#[derive(Debug, Clone)]
pub struct AuditLog {
    id: Arc<str>,
    jobs: tokio::sync::mpsc::Sender<Job>,
    status: Arc<Status>,
    spool_dir: Option<PathBuf>,
    key: AuditKey,
    /// Keeps the search projection beside the log.
    projector: Projector,
    /// Closed when the writer task has ended.
    stopped: tokio::sync::watch::Receiver<()>,
}

/// Waits for an [`AuditLog`]'s writer to end: once every handle to the log is dropped, it
/// commits what is queued, moves its spool into the store if it can, signs its head, and ends.
#[derive(Debug)]
pub struct Stopped(tokio::sync::watch::Receiver<()>);

impl Stopped {
    /// Returns once the writer has ended.
    pub async fn wait(mut self) {
        while self.0.changed().await.is_ok() {}
    }
}

#[derive(Debug)]
struct Job {
    text: String,
    columns: Columns,
    reply: tokio::sync::oneshot::Sender<Result<Record, String>>,
}

impl AuditLog {
    /// A new chain for this process with no spool and no signed heads (tests, benchmarks).
    pub fn new(store: Store, key: AuditKey) -> AuditLog {
        AuditLog::start(store, key, Options::default())
    }

    /// A new chain for this process, with its writer task (call inside a Tokio runtime). The
    /// writer first replays spool files that stopped processes left in the spool directory.
    pub fn start(store: Store, key: AuditKey, options: Options) -> AuditLog {
        let id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let (jobs, queue) = tokio::sync::mpsc::channel(16 * MAX_BATCH);
        let status = Arc::new(Status {
            signed: AtomicI64::new(-1),
            ..Status::default()
        });
        let spool_dir = options.spool_dir.clone();
        let lane = AuditLane::new(store.clone());
        let (projector, projecting) = Projector::start(lane.clone());
        let writer = Writer {
            store,
            lane,
            projector: projector.clone(),
            key: key.clone(),
            id: id.clone(),
            options,
            status: status.clone(),
            next: (0, GENESIS.to_owned()),
            stored: None,
            signed: None,
            spool: None,
        };
        let (done, stopped) = tokio::sync::watch::channel(());
        tokio::spawn(async move {
            writer.run(queue).await;
            // The projector ends once the writer and every handle are gone, after writing
            // what it holds.
            let _ = projecting.await;
            drop(done);
        });
        AuditLog {
            id,
            jobs,
            status,
            spool_dir,
            key,
            projector,
            stopped,
        }
    }

    /// A keyed hash of a value the record must not keep (an unknown parameter's value, say):
    /// equal values give equal digests, and nobody without the audit key can test a guess.
    pub fn keyed_digest(&self, value: &str) -> String {
        self.key.digest(value)
    }

    /// Whether a record could be kept now: the store takes an append (tried and rolled
    /// back, within `wait`), or the spool takes a file. Readiness asks this after a failed
    /// append, so that it comes back by itself once either is repaired, without waiting for
    /// a request (a load balancer sends none to an unready instance).
    pub async fn can_keep(&self, store: &Store, wait: Duration) -> bool {
        if let Ok(Ok(())) = tokio::time::timeout(wait, store.probe_audit_append()).await {
            return true;
        }
        let Some(dir) = self.spool_dir.clone() else {
            return false;
        };
        tokio::task::spawn_blocking(move || spool::writable(&dir))
            .await
            .unwrap_or(false)
    }

    /// Returns once every record this process has committed so far is in the search
    /// projection (or after a short wait, when the store is slow): a search made after a
    /// request was answered finds that request's record.
    pub async fn settle(&self) {
        self.projector.settle().await;
    }

    /// A handle to wait for the writer to end with, once every [`AuditLog`] is dropped.
    pub fn stopped(&self) -> Stopped {
        Stopped(self.stopped.clone())
    }

    /// This process's chain id.
    pub fn chain(&self) -> &str {
        &self.id
    }

    /// The spool, heads and problems, for `/readyz`.
    pub fn health(&self) -> Health {
        let signed = self.status.signed.load(Ordering::Relaxed);
        Health {
            spooled: self.status.spooled.load(Ordering::Relaxed),
            orphaned_spools: self.status.orphans.load(Ordering::Relaxed),
            signed_head: (signed >= 0).then_some(signed),
            problem: self
                .status
                .problem
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default(),
        }
    }

    /// Appends a record and returns once the store (or, while it cannot, the spool) has it
    /// on disk. The writer finishes a batch even when a caller stops waiting, so a client
    /// that hangs up never leaves the chain's head behind a committed record.
    pub async fn append(&self, body: &Body) -> Result<Record, AuditError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            text: encode(body)?,
            columns: Columns::of(body),
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| AuditError::Interrupted("the audit writer has stopped".into()))?;
        match answer.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(e)) => Err(AuditError::Failed(e)),
            Err(_) => Err(AuditError::Interrupted(
                "the audit writer stopped before answering".into(),
            )),
        }
    }
}

/// The writer task's state.
struct Writer {
    store: Store,
    /// The log's own way into the store, shared with the projector.
    lane: AuditLane,
    projector: Projector,
    key: AuditKey,
    id: Arc<str>,
    options: Options,
    status: Arc<Status>,
    /// The next position and the hash it follows.
    next: (i64, String),
    /// The newest record known to be in the store (what a signed head may vouch for).
    stored: Option<(i64, String)>,
    /// The newest position signed.
    signed: Option<i64>,
    /// This chain's spool, open while it holds records the store does not have yet.
    spool: Option<spool::Spool>,
}

impl Writer {
    async fn run(mut self, mut queue: tokio::sync::mpsc::Receiver<Job>) {
        let mut orphans = self.replay_orphans().await;
        let mut tick = tokio::time::interval(self.options.retry);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_signed = tokio::time::Instant::now();
        let max_batch = self.options.max_batch.clamp(1, MAX_BATCH);
        let mut batch = Vec::with_capacity(max_batch);
        loop {
            tokio::select! {
                n = queue.recv_many(&mut batch, max_batch) => {
                    if n == 0 {
                        break;
                    }
                    self.commit(&mut batch).await;
                }
                _ = tick.tick() => {
                    if self.spool.is_some() {
                        self.replay_own().await;
                    }
                    if orphans {
                        orphans = self.replay_orphans().await;
                    }
                    if last_signed.elapsed() >= self.options.head_interval {
                        self.sign_head().await;
                        last_signed = tokio::time::Instant::now();
                    }
                }
            }
        }
        if self.spool.is_some() {
            self.replay_own().await;
        }
        self.sign_head().await;
    }

    /// Gives the batch consecutive positions and commits it to the store, or to the spool
    /// when the store refuses or spooled records are still waiting; answers every job.
    async fn commit(&mut self, batch: &mut Vec<Job>) {
        let (mut seq, mut prev) = self.next.clone();
        let mut rows = Vec::with_capacity(batch.len());
        // The text moves into its record (a job needs only its answer channel from here on).
        for job in batch.iter_mut() {
            let hash = self.key.hash(&self.id, seq, &prev, &job.text);
            rows.push(Record {
                chain: self.id.to_string(),
                seq,
                body: std::mem::take(&mut job.text),
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            });
            seq += 1;
        }
        if self.spool.is_some() {
            self.replay_own().await;
        }
        let mut refused = None;
        if self.spool.is_none() {
            let began = std::time::Instant::now();
            match self.bounded(self.lane.append(&rows)).await {
                Ok(()) => {
                    if let Some(meters) = &self.options.meters {
                        meters.observe(began.elapsed(), rows.len());
                    }
                    self.stored = Some((seq - 1, prev.clone()));
                    self.next = (seq, prev);
                    self.projector.hand(
                        batch
                            .iter_mut()
                            .zip(&rows)
                            .map(|(job, record)| Projection {
                                chain: self.id.clone(),
                                seq: record.seq,
                                columns: std::mem::take(&mut job.columns),
                            })
                            .collect(),
                    );
                    answer(batch, rows);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, records = rows.len(), "the audit store refused a batch");
                    refused = Some(e.to_string());
                }
            }
        }
        match self.spool_rows(&rows).await {
            Ok(()) => {
                self.status
                    .spooled
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                self.next = (seq, prev);
                answer(batch, rows);
            }
            Err(e) => {
                tracing::error!(error = %e, "neither the audit store nor the spool took the record");
                if self.spool.is_none() {
                    // What the failed transaction left behind decides the next position.
                    match self.store.audit_head(&self.id).await {
                        Ok(Some((last, hash))) => self.next = (last + 1, hash),
                        Ok(None) => self.next = (0, GENESIS.to_owned()),
                        Err(read) => {
                            tracing::error!(error = %read, "cannot read the audit chain's head back");
                        }
                    }
                }
                let message = refused.map_or_else(|| e.to_string(), |r| format!("{r}; {e}"));
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }

    /// Appends records to this chain's spool (opening it first when needed).
    async fn spool_rows(&mut self, rows: &[Record]) -> Result<(), spool::SpoolError> {
        let Some(dir) = self.options.spool_dir.clone() else {
            return Err(spool::SpoolError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other("no spool is configured"),
            });
        };
        let records: Vec<Record> = rows.to_vec();
        let id = self.id.clone();
        let current = self.spool.take();
        let (kept, result) = tokio::task::spawn_blocking(move || {
            let mut spool = match current {
                Some(s) => s,
                None => match spool::Spool::open(&dir, &id) {
                    Ok(s) => s,
                    Err(e) => return (None, Err(e)),
                },
            };
            let written = spool.append(&records);
            if written.is_err() && spool.records() == 0 {
                // Nothing of this chain is in it: leave no empty file behind.
                let _ = spool.remove();
                return (None, written);
            }
            (Some(spool), written)
        })
        .await
        .unwrap_or_else(|e| {
            (
                None,
                Err(spool::SpoolError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                }),
            )
        });
        self.spool = kept;
        result
    }

    /// Moves this chain's spooled records into the store; removes the spool when they all are.
    async fn replay_own(&mut self) {
        let Some(path) = self.spool.as_ref().map(|s| s.file_path().to_owned()) else {
            return;
        };
        match self.bounded(replay(&self.store, &self.key, &path)).await {
            Ok(last) => {
                self.projector.catch_up();
                if let Some(spool) = self.spool.take()
                    && let Err(e) = spool.remove()
                {
                    tracing::error!(error = %e, "cannot remove the replayed audit spool");
                }
                if last.is_some() {
                    self.stored = last;
                }
                self.status.spooled.store(0, Ordering::Relaxed);
                self.set_problem(None);
                tracing::info!("the audit store is back: spooled records are in it");
            }
            Err(Replay::Store(e)) => {
                tracing::debug!(error = %e, "the audit store still refuses spooled records");
            }
            Err(Replay::Spool(e)) => {
                tracing::error!(error = %e, "the audit spool cannot be replayed");
                self.set_problem(Some(e));
            }
        }
    }

    /// Runs a store operation for at most `store_wait` when there is a spool to fall back on,
    /// so that a store that hangs costs callers milliseconds, not the store's own timeouts.
    /// An operation cut short may still finish in the store: the spool's replay finds such
    /// records there and skips them.
    async fn bounded<T, E: From<StoreError>>(
        &self,
        operation: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        if self.options.spool_dir.is_none() {
            return operation.await;
        }
        match tokio::time::timeout(self.options.store_wait, operation).await {
            Ok(result) => result,
            Err(_) => Err(E::from(StoreError::Timeout(self.options.store_wait))),
        }
    }

    /// Replays the spool files stopped processes left. True while some remain.
    async fn replay_orphans(&mut self) -> bool {
        let Some(dir) = self.options.spool_dir.clone() else {
            return false;
        };
        let id = self.id.clone();
        let found = tokio::task::spawn_blocking(move || spool::orphans(&dir, &id))
            .await
            .unwrap_or_else(|e| {
                Err(spool::SpoolError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        let orphans = match found {
            Ok(o) => o,
            Err(e) => {
                self.set_problem(Some(e.to_string()));
                return true;
            }
        };
        let mut left = 0_u64;
        for orphan in orphans {
            match replay(&self.store, &self.key, &orphan.path).await {
                Ok(_) => {
                    self.projector.catch_up();
                    tracing::info!("an earlier process's spooled audit records are in the store");
                    if let Err(e) = orphan.remove() {
                        tracing::error!(error = %e, "cannot remove a replayed audit spool");
                    }
                }
                Err(Replay::Store(_)) => left += 1,
                Err(Replay::Spool(e)) => {
                    tracing::error!(error = %e, "an earlier process's audit spool cannot be replayed");
                    self.set_problem(Some(e));
                    left += 1;
                }
            }
        }
        self.status.orphans.store(left, Ordering::Relaxed);
        left > 0
    }

    /// Signs the newest stored record, when it moved since the last signature, keeps the
    /// signed head in the store and hands it to the witness.
    async fn sign_head(&mut self) {
        let (Some(signer), Some((seq, hash))) = (&self.options.signer, &self.stored) else {
            return;
        };
        if self.signed == Some(*seq) {
            return;
        }
        let head = signer.sign(&self.id, *seq, hash);
        let kept = self.store.record_audit_head(&head).await;
        let handed = self.options.witness.hand(&head).await;
        if let Err(e) = &kept {
            tracing::warn!(error = %e, "cannot keep the signed audit head in the store");
        }
        if let Err(e) = &handed {
            tracing::warn!(error = %e, "the audit witness did not take the signed head");
        }
        match (kept, handed) {
            (Ok(()), Ok(())) => self.set_problem(None),
            (Err(e), _) => self.set_problem(Some(format!("signed head: {e}"))),
            (_, Err(e)) => self.set_problem(Some(e.to_string())),
        }
        self.signed = Some(head.seq);
        self.status.signed.store(head.seq, Ordering::Relaxed);
    }

    fn set_problem(&self, problem: Option<String>) {
        if let Ok(mut p) = self.status.problem.lock() {
            *p = problem;
        }
    }
}

fn answer(batch: &mut Vec<Job>, rows: Vec<Record>) {
    for (job, record) in batch.drain(..).zip(rows) {
        let _ = job.reply.send(Ok(record));
    }
}

impl From<StoreError> for Replay {
    fn from(e: StoreError) -> Self {
        Replay::Store(e)
    }
}

/// Why a spool was not replayed.
enum Replay {
    /// The store refused: try again later.
    Store(StoreError),
    /// The spool is unreadable or does not continue the stored chain: a person must look.
    Spool(String),
}

/// Moves a spool file's records into the store, in order, checking each: its hash, and that
/// it continues the chain from the store's newest record. Records the store already has (a
/// commit whose answer was lost, or a replay cut short) are skipped once the stored one is
/// found to be the same record. The file is read in batches, never whole. Returns the newest
/// record now in the store.
async fn replay(
    store: &Store,
    key: &AuditKey,
    path: &Path,
) -> Result<Option<(i64, String)>, Replay> {
    use tokio::io::AsyncBufReadExt;
    let unreadable = |e: std::io::Error| Replay::Spool(format!("`{}`: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let mut reader = tokio::io::BufReader::new(file);
    let mut line = Vec::new();
    let mut expected: Option<(i64, String)> = None;
    let mut chunk: Vec<Record> = Vec::with_capacity(MAX_BATCH);
    let mut number = 0_usize;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(unreadable)?;
        if n == 0 || line.last() != Some(&b'\n') {
            // The end, or a write a crash cut short (never answered).
            break;
        }
        number += 1;
        let bad = |problem: &str| {
            Replay::Spool(format!(
                "`{}` line {number}: {problem}; it is left in place",
                path.display()
            ))
        };
        let record: Record =
            serde_json::from_slice(&line).map_err(|_| bad("not an audit record"))?;
        let (next, prev) = match &expected {
            Some(e) => e.clone(),
            None => {
                let head = store
                    .audit_head(&record.chain)
                    .await
                    .map_err(Replay::Store)?;
                match head {
                    Some((seq, hash)) => (seq + 1, hash),
                    None => (0, GENESIS.to_owned()),
                }
            }
        };
        if record.seq < next {
            // The store has it already; the one at the store's head must be this very record.
            if record.seq == next - 1 && record.hash != prev {
                return Err(bad("the store holds a different record at this position"));
            }
            expected = Some((next, prev));
            continue;
        }
        if record.seq != next || record.prev_hash != prev {
            return Err(bad("does not continue the stored chain"));
        }
        if key.hash(&record.chain, record.seq, &record.prev_hash, &record.body) != record.hash {
            return Err(bad("its content was modified (hash mismatch)"));
        }
        serde_json::from_str::<Body>(&record.body).map_err(|_| bad("not a record"))?;
        expected = Some((record.seq + 1, record.hash.clone()));
        chunk.push(record);
        if chunk.len() == MAX_BATCH {
            store.append_audit(&chunk).await.map_err(Replay::Store)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        store.append_audit(&chunk).await.map_err(Replay::Store)?;
    }
    Ok(expected.map(|(next, hash)| (next - 1, hash)))
}
