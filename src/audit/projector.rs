//! The search projection: every record's searchable columns in `audit_search`, beside the
//! append-only log, so that a request's durable append writes the log and its key alone.
//!
//! The writer hands each committed batch's columns to the projector task, which adds them to
//! the projection in larger transactions a moment later (at most [`FLUSH_AFTER`] after the
//! first waits, or as soon as [`FLUSH_ROWS`] wait). Nothing is lost if it falls behind, fails
//! or the process dies: the log is the truth, each chain's projection mark says how far its
//! records are projected, and [`project_pending`] projects whatever lies past the marks from
//! the bodies themselves (at start, after a spool replay, and whenever the projector had to
//! drop rows it was handed). A search first asks the projector to settle, so that it sees
//! every record this process has answered for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{AuditError, Body, Columns, Projection};
use crate::store::{AuditLane, SqliteFile, Store};

/// Longest a handed-over row waits before it is projected.
pub(super) const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// Rows waiting that make the projector write at once (as many as one turn writes).
const FLUSH_ROWS: usize = ROWS_PER_TURN;
/// Rows kept in memory while the store refuses them; beyond this they are dropped and
/// projected later from the log.
const MAX_WAITING: usize = 65_536;
/// Records read per round of [`project_pending`].
const CATCH_UP_BATCH: u32 = 1024;
/// How long a search waits for the projection to settle before it reads what is there.
const SETTLE_WAIT: Duration = Duration::from_secs(2);
/// How long after a failed write the projector tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How often, at most, the projector checkpoints the store's log after a turn (SQLite).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Checkpoint passes over the store's log beside the appends, before the one in the audit
/// lane's turn that the appends wait for ([`Task::checkpoint`]). With one, the lane's pass
/// copied everything appended during the first (itself a pass over 100 ms of appends); with
/// two, it copies only what came during the second, which is short. On the demo's
/// `$everything` under load, the p99 fell from 9.35 to 8.64 ms (medians of eight alternating
/// pairs); a third pass changed nothing measurable (`benches/README.md`, issue 15).
const STORE_PASSES_BESIDE: usize = 2;

/// Most rows projected in one transaction. Every transaction writes each page it changed to
/// the write-ahead log whole, and the projection's person and user indexes take their rows
/// at random pages: turns of 512 rows wrote a page of each for almost every row under load
/// (when the projection shared the store's SQLite file, all of it synced by the next durable
/// commit). Rows that came while the projector was busy go in one transaction of up to
/// 4,096, which writes each such page once for several rows (`benches/README.md`, issue 15,
/// item 3). Rows still wait at most [`FLUSH_AFTER`] when the projector is not behind.
const ROWS_PER_TURN: usize = 4096;

enum Message {
    Rows(Vec<Projection>),
    Settle(tokio::sync::oneshot::Sender<()>),
    CatchUp,
}

/// A handle to the projector task.
#[derive(Debug, Clone)]
pub(super) struct Projector {
    inbox: tokio::sync::mpsc::Sender<Message>,
    /// Rows were dropped or records came in another way (a spool): project from the log.
    behind: Arc<AtomicBool>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Rows(_) => "Rows",
            Message::Settle(_) => "Settle",
            Message::CatchUp => "CatchUp",
        })
    }
}

impl Projector {
    /// Starts the projector task; it ends once every handle is dropped, after projecting
    /// what it holds.
    pub(super) fn start(lane: AuditLane) -> (Projector, tokio::task::JoinHandle<()>) {
        let (inbox, messages) = tokio::sync::mpsc::channel(1024);
        let behind = Arc::new(AtomicBool::new(true));
        let task = Task {
            lane,
            behind: behind.clone(),
            waiting: Vec::new(),
            checkpointed: None,
        };
        let handle = tokio::spawn(task.run(messages));
        (Projector { inbox, behind }, handle)
    }

    /// Hands over a committed batch's rows. Never waits: when the projector cannot take them
    /// now, they are projected later from the log.
    pub(super) fn hand(&self, rows: Vec<Projection>) {
        if self.inbox.try_send(Message::Rows(rows)).is_err() {
            self.behind.store(true, Ordering::Relaxed);
        }
    }

    /// Records reached the log another way (a spool replay): project them from the log.
    pub(super) fn catch_up(&self) {
        self.behind.store(true, Ordering::Relaxed);
        let _ = self.inbox.try_send(Message::CatchUp);
    }

    /// Returns once every row handed over before this call is projected (or after
    /// [`SETTLE_WAIT`], when the store is slow or refuses: the search then reads what is
    /// there).
    pub(super) async fn settle(&self) {
        let (done, settled) = tokio::sync::oneshot::channel();
        let asked = async {
            if self.inbox.send(Message::Settle(done)).await.is_ok() {
                let _ = settled.await;
            }
        };
        let _ = tokio::time::timeout(SETTLE_WAIT, asked).await;
    }
}

struct Task {
    lane: AuditLane,
    behind: Arc<AtomicBool>,
    waiting: Vec<Projection>,
    /// When the store's log was last checkpointed.
    checkpointed: Option<tokio::time::Instant>,
}

impl Task {
    async fn run(mut self, mut inbox: tokio::sync::mpsc::Receiver<Message>) {
        let mut messages = Vec::with_capacity(64);
        let mut settling = Vec::new();
        // When the rows waiting (or a catch-up) are due.
        let mut due: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
        loop {
            let received = match due {
                None => Some(inbox.recv_many(&mut messages, 64).await),
                Some(at) => tokio::time::timeout_at(at, inbox.recv_many(&mut messages, 64))
                    .await
                    .ok(),
            };
            let closed = received == Some(0);
            for message in messages.drain(..) {
                match message {
                    Message::Rows(rows) => self.waiting.extend(rows),
                    Message::Settle(done) => settling.push(done),
                    Message::CatchUp => {}
                }
            }
            let now = tokio::time::Instant::now();
            if due.is_none() && (!self.waiting.is_empty() || self.behind.load(Ordering::Relaxed)) {
                due = Some(now + FLUSH_AFTER);
            }
            let write = closed
                || !settling.is_empty()
                || self.waiting.len() >= FLUSH_ROWS
                || due.is_some_and(|at| at <= now);
            if write {
                let written = self.write().await;
                due = if written {
                    None
                } else {
                    Some(tokio::time::Instant::now() + RETRY)
                };
                for done in settling.drain(..) {
                    let _ = done.send(());
                }
                if written {
                    self.checkpoint().await;
                }
            }
            if closed {
                break;
            }
        }
    }

    /// Checkpoints the logs of the search projection's file and of the store's (SQLite) at
    /// most every [`CHECKPOINT_EVERY`], just after a turn of the projector (the logs' only
    /// checkpoints: none runs inside a commit, see [`Store::connect`]). The projection's
    /// file is checkpointed on the projector's own connection: the projector is its only
    /// writer, so one pass there lets its next turn start the log again, and the appends
    /// never wait for it.
    ///
    /// For the store's file, [`STORE_PASSES_BESIDE`] passes on a connection of the pool,
    /// beside the appends, copy the log into the database file; the last, in the lane's turn,
    /// copies what the appends added meanwhile, so that the lane's next write finds the whole
    /// log copied and SQLite starts the log again from its beginning. Passes beside the
    /// appends alone never got there under steady load, and the log grew by gigabytes a
    /// minute (`benches/README.md`, issue 15). The appends wait for the lane's pass only: it
    /// copies what they wrote during the pass before it and syncs the database file, so it is
    /// kept small by running often (every 250 ms or 1 s stalled the appends for 13-55 ms each
    /// time) and by the passes beside the appends before it ([`STORE_PASSES_BESIDE`]).
    async fn checkpoint(&mut self) {
        if self
            .checkpointed
            .is_some_and(|at| at.elapsed() < CHECKPOINT_EVERY)
        {
            return;
        }
        self.checkpointed = Some(tokio::time::Instant::now());
        if let Err(e) = self.lane.checkpoint(SqliteFile::Projection).await {
            tracing::warn!(error = %e, "the search projection's log could not be checkpointed");
        }
        for _ in 0..STORE_PASSES_BESIDE {
            if let Err(e) = self.lane.store().checkpoint().await {
                tracing::warn!(error = %e, "the store's log could not be checkpointed");
                return;
            }
        }
        if let Err(e) = self.lane.checkpoint(SqliteFile::Store).await {
            tracing::warn!(error = %e, "the store's log could not be checkpointed in the audit lane's turn");
        }
    }

    /// Projects the rows waiting, then, if the projection is behind, what lies past the
    /// marks. False when something is left to do.
    async fn write(&mut self) -> bool {
        while !self.waiting.is_empty() {
            let n = self.waiting.len().min(ROWS_PER_TURN);
            let written = self.lane.project(&self.waiting[..n]).await;
            match written {
                Ok(()) => {
                    self.waiting.drain(..n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows = self.waiting.len(), "the audit search projection could not be written");
                    if self.waiting.len() > MAX_WAITING {
                        self.waiting.clear();
                        self.behind.store(true, Ordering::Relaxed);
                    }
                    return false;
                }
            }
        }
        if self.behind.swap(false, Ordering::Relaxed)
            && let Err(e) = project_pending(self.lane.store()).await
        {
            tracing::warn!(error = %e, "the audit search projection could not catch up");
            self.behind.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Projects every record that lies past its chain's projection mark, from its body, and
/// returns how many it projected. A chain stops at a record whose body is not a record, or at
/// a gap in its positions (both are what `audit verify` reports); the other chains go on.
pub async fn project_pending(store: &Store) -> Result<u64, AuditError> {
    let mut projected = 0_u64;
    let mut stopped: Vec<String> = Vec::new();
    loop {
        let records = store.audit_unprojected(CATCH_UP_BATCH).await?;
        let mut rows: Vec<Projection> = Vec::with_capacity(records.len());
        // The chain being read and the position its next record must have.
        let mut current: Option<(Arc<str>, i64)> = None;
        for (mark, record) in &records {
            if stopped.contains(&record.chain) {
                continue;
            }
            let expected = match &current {
                Some((chain, next)) if **chain == *record.chain => *next,
                _ => mark + 1,
            };
            let body = (record.seq == expected)
                .then(|| serde_json::from_str::<Body>(&record.body).ok())
                .flatten();
            let Some(body) = body else {
                tracing::error!(
                    chain = %record.chain,
                    seq = record.seq,
                    "an audit record cannot be projected for search (its body is not a record, or one before it is missing); run `concord audit verify`"
                );
                stopped.push(record.chain.clone());
                continue;
            };
            let chain = match &current {
                Some((chain, _)) if **chain == *record.chain => chain.clone(),
                _ => Arc::from(record.chain.as_str()),
            };
            current = Some((chain.clone(), record.seq + 1));
            rows.push(Projection {
                chain,
                seq: record.seq,
                columns: Columns::of(&body),
            });
        }
        if rows.is_empty() {
            return Ok(projected);
        }
        store.project_audit(&rows).await?;
        projected += rows.len() as u64;
    }
}
