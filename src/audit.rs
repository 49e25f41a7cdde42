//! The audit log: one record for every FHIR request, written before the answer leaves, kept in
//! hash chains that expose any edit, deletion, insertion or reordering.
//!
//! Each gateway process appends to its own chain (a fresh chain id per start), so instances
//! never wait on one another. A record's body is a fixed-order JSON encoding of its fields
//! ([`Body`]); its hash is HMAC-SHA-256, with a key kept outside the database, over the chain
//! id, its position, the previous record's hash and the body. Someone who can write to the
//! database but does not hold the key cannot rewrite history and recompute the chain.
//! [`verify`] walks every chain in order, one row at a time.
//!
//! This first part commits records in batches (group commit) and refuses to disclose (503)
//! when the store cannot take the record. The local spool, group commit, signed chain heads and the
//! AuditEvent API are the next steps (issue 5).

use std::path::Path;

use aws_lc_rs::hmac;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// The hash before the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Shortest audit key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// Why the audit log cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store refused the record.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key could not be read or is too short.
    #[error("audit key: {0}")]
    Key(String),
    /// The writer stopped (the runtime is shutting down).
    #[error("the audit append did not finish: {0}")]
    Interrupted(String),
    /// The store refused the batch the record was in.
    #[error("the audit store refused the record: {0}")]
    Failed(String),
}

/// One source's part in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOutcome {
    /// The source id.
    pub source: String,
    /// `ok`, or what went wrong (`failed`, `timeout`, `truncated`, `dropped`).
    pub outcome: String,
}

/// One disclosed resource and why it could be disclosed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    /// `Type/id`.
    pub reference: String,
    /// The agreement that permitted it.
    pub agreement: String,
    /// The rule.
    pub rule: String,
    /// Permitted only under emergency access.
    pub emergency: bool,
}

/// What an audit record says. Field order is the canonical encoding: never reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Body {
    /// When, Unix microseconds.
    pub recorded_us: i64,
    /// The request id.
    pub request_id: String,
    /// The caller's address.
    pub client_address: Option<String>,
    /// The user (`sub`), when a token was verified.
    pub user: Option<String>,
    /// The user's display name.
    pub user_name: Option<String>,
    /// The organisation (ODS code).
    pub org: Option<String>,
    /// The role.
    pub role: Option<String>,
    /// `staff`, `patient`, `carer`, or `unauthenticated`.
    pub caller: String,
    /// A carer's relationship to the person.
    pub relationship: Option<String>,
    /// The client certificate's subject (mutual TLS).
    pub client_certificate: Option<String>,
    /// The HTTP method.
    pub method: String,
    /// The route template (e.g. `/fhir/Patient/{id}/$everything`).
    pub route: String,
    /// The path and query as asked.
    pub target: String,
    /// PurposeOfUse.
    pub purpose: Option<String>,
    /// The break-glass reason.
    pub break_glass_reason: Option<String>,
    /// The person's gateway id.
    pub person: Option<String>,
    /// The sources asked and how each answered.
    pub sources: Vec<SourceOutcome>,
    /// What was disclosed, each with its agreement and rule.
    pub disclosed: Vec<Disclosure>,
    /// How many resources were withheld.
    pub withheld: usize,
    /// The hash of the policy set in force.
    pub policy_hash: String,
    /// `success` (2xx), `refused` (4xx) or `error` (5xx).
    pub outcome: String,
    /// The HTTP status.
    pub status: u16,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The chain.
    pub chain: String,
    /// Position in the chain, from 0.
    pub seq: i64,
    /// The body's canonical encoding.
    pub body: String,
    /// The previous record's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// This record's keyed hash.
    pub hash: String,
}

/// The key records are hashed with.
#[derive(Debug)]
pub struct AuditKey(hmac::Key);

impl AuditKey {
    /// A key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<AuditKey, AuditError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(AuditError::Key(format!(
                "is {} bytes; at least {MIN_KEY_BYTES} are needed",
                bytes.len()
            )));
        }
        Ok(AuditKey(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// Reads the key from a file (its bytes, surrounding whitespace removed) or from an
    /// environment variable.
    pub fn load(file: Option<&Path>, env: Option<&str>) -> Result<AuditKey, AuditError> {
        match (file, env) {
            (Some(path), _) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    AuditError::Key(format!("cannot read `{}`: {e}", path.display()))
                })?;
                AuditKey::new(bytes.trim_ascii())
            }
            (None, Some(var)) => {
                let value = std::env::var(var).map_err(|_| {
                    AuditError::Key(format!("environment variable `{var}` is not set"))
                })?;
                AuditKey::new(value.trim().as_bytes())
            }
            (None, None) => Err(AuditError::Key("no key_file or key_env".into())),
        }
    }

    /// The keyed hash of a record at `seq` in `chain` after `prev_hash`.
    pub fn hash(&self, chain: &str, seq: i64, prev_hash: &str, body: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in [chain.as_bytes(), &seq.to_be_bytes(), prev_hash.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(body.as_bytes());
        crate::hex(ctx.sign().as_ref())
    }
}

/// Most records committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// This process's chain. Appends go to one writer task, which commits every record waiting
/// at that moment in one transaction (group commit): while one transaction is committed, the
/// next batch gathers, so concurrent requests share the cost of a commit instead of queueing
/// behind one commit each. Order and hashes are exact: the writer alone gives positions.
#[derive(Debug, Clone)]
pub struct AuditLog {
    id: std::sync::Arc<str>,
    jobs: tokio::sync::mpsc::Sender<Job>,
}

#[derive(Debug)]
struct Job {
    text: String,
    columns: Columns,
    reply: tokio::sync::oneshot::Sender<Result<Record, String>>,
}

impl AuditLog {
    /// A new chain for this process, with its writer task (call inside a Tokio runtime).
    pub fn new(store: Store, key: AuditKey) -> AuditLog {
        let id: std::sync::Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let (jobs, queue) = tokio::sync::mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(writer(store, key, id.clone(), queue));
        AuditLog { id, jobs }
    }

    /// This process's chain id.
    pub fn chain(&self) -> &str {
        &self.id
    }

    /// Appends a record and returns once the store has committed it. The writer finishes a
    /// batch even when a caller stops waiting, so a client that hangs up never leaves the
    /// chain's head behind a committed record.
    pub async fn append(&self, body: &Body) -> Result<Record, AuditError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            text: serde_json::to_string(body).unwrap_or_default(),
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

/// The writer: takes every waiting job (up to [`MAX_BATCH`]), gives them consecutive positions
/// and commits them in one transaction. On failure every job of the batch is refused and the
/// head is read back from the store, so the next batch takes the right position whatever the
/// failure left behind.
async fn writer(
    store: Store,
    key: AuditKey,
    id: std::sync::Arc<str>,
    mut queue: tokio::sync::mpsc::Receiver<Job>,
) {
    let mut head = (0_i64, GENESIS.to_owned());
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (mut seq, mut prev) = head.clone();
        let mut rows = Vec::with_capacity(batch.len());
        for job in &batch {
            let hash = key.hash(&id, seq, &prev, &job.text);
            rows.push((
                Record {
                    chain: id.to_string(),
                    seq,
                    body: job.text.clone(),
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                },
                job.columns.clone(),
            ));
            seq += 1;
        }
        match store.append_audit(&rows).await {
            Ok(()) => {
                head = (seq, prev);
                for (job, (record, _)) in batch.drain(..).zip(rows) {
                    let _ = job.reply.send(Ok(record));
                }
            }
            Err(e) => {
                match store.audit_head(&id).await {
                    Ok(Some((last, hash))) => head = (last + 1, hash),
                    Ok(None) => head = (0, GENESIS.to_owned()),
                    Err(read) => {
                        tracing::error!(error = %read, "cannot read the audit chain's head back");
                    }
                }
                let message = e.to_string();
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Chains walked.
    pub chains: u64,
    /// Records checked.
    pub records: u64,
}

/// The first record that does not fit its chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chain {chain} at position {seq}: {problem}")]
pub struct Broken {
    /// The chain.
    pub chain: String,
    /// The position.
    pub seq: i64,
    /// What is wrong.
    pub problem: String,
}

/// Walks every chain in order, one row at a time: positions without gaps from 0, each
/// record's previous hash the hash of the one before, each hash the keyed hash of its
/// content, and the searchable columns equal to the body.
pub async fn verify(store: &Store, key: &AuditKey) -> Result<Result<Verified, Broken>, AuditError> {
    let mut rows = store.audit_rows();
    let mut verified = Verified {
        chains: 0,
        records: 0,
    };
    let mut current: Option<(String, i64, String)> = None;
    while let Some(row) = rows.try_next().await? {
        let broken = |problem: String| Broken {
            chain: row.record.chain.clone(),
            seq: row.record.seq,
            problem,
        };
        let (expected_seq, expected_prev) = match &current {
            Some((chain, seq, hash)) if *chain == row.record.chain => (seq + 1, hash.clone()),
            _ => {
                verified.chains += 1;
                (0, GENESIS.to_owned())
            }
        };
        if row.record.seq != expected_seq {
            return Ok(Err(broken(format!(
                "expected position {expected_seq}: a record is missing or was inserted"
            ))));
        }
        if row.record.prev_hash != expected_prev {
            return Ok(Err(broken(
                "does not follow the record before it (reordered, or one before it was replaced)"
                    .into(),
            )));
        }
        let hash = key.hash(
            &row.record.chain,
            row.record.seq,
            &row.record.prev_hash,
            &row.record.body,
        );
        if hash != row.record.hash {
            return Ok(Err(broken(
                "its content was modified (hash mismatch)".into(),
            )));
        }
        let body: Body = match serde_json::from_str(&row.record.body) {
            Ok(b) => b,
            Err(_) => return Ok(Err(broken("its body is not a record".into()))),
        };
        if row.columns != Columns::of(&body) {
            return Ok(Err(broken(
                "its searchable columns do not match its content".into(),
            )));
        }
        verified.records += 1;
        current = Some((
            row.record.chain.clone(),
            row.record.seq,
            row.record.hash.clone(),
        ));
    }
    Ok(Ok(verified))
}

/// The columns stored beside the body for searching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// Microseconds.
    pub recorded_us: i64,
    /// The person.
    pub person: Option<String>,
    /// The user.
    pub user: Option<String>,
    /// The organisation.
    pub org: Option<String>,
    /// The purpose.
    pub purpose: Option<String>,
    /// The outcome.
    pub outcome: String,
}

impl Columns {
    /// The columns of a body.
    pub fn of(body: &Body) -> Columns {
        Columns {
            recorded_us: body.recorded_us,
            person: body.person.clone(),
            user: body.user.clone(),
            org: body.org.clone(),
            purpose: body.purpose.clone(),
            outcome: body.outcome.clone(),
        }
    }
}

/// A stored row: the record and its searchable columns.
#[derive(Debug, Clone)]
pub struct Row {
    /// The record.
    pub record: Record,
    /// The columns.
    pub columns: Columns,
}

pub mod event;

#[cfg(test)]
mod tests;
