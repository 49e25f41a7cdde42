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
//! Records are committed in batches (group commit). While the store cannot take them they
//! go to a local spool ([`spool`]: append-only, synced, still in the chain) and are moved into
//! the store, in order and checked, when it can again; only when neither takes a record is
//! the request refused (503). Now and then the chain's head is signed ([`heads`]) and handed
//! to an outside witness, so a cut-off tail is found too.
//!
//! The log is append-only: a request's durable append writes the record and its key alone.
//! The searchable fields (when, whose record, who, organisation, purpose, outcome) are kept
//! in a search projection beside it, written a moment later in larger batches (`projector`);
//! each chain's projection mark says how far it reaches, and whatever lies past it is
//! projected from the bodies, so the projection never misses a record for long and `audit
//! verify` checks that it says what the bodies say.
//!
//! The rooms: `body` (what a record says), `key` (the HMAC key), `writer` (the one task that
//! positions, commits, spools and replays), `projector` (the search projection), `readers`
//! (who reads which records), [`spool`], [`heads`], `verify`, [`export`] and [`event`]
//! (records as FHIR AuditEvents).

use serde::Serialize;

use crate::store::StoreError;

/// The stored forms of records; the store owns them, the audit log makes and checks them.
pub use crate::store::{Columns, Projection, Record, Row};

mod body;
pub mod export;
pub mod heads;
mod key;
mod projector;
mod readers;
pub mod spool;
pub mod unsettled;
mod verify;
mod writer;

pub use body::{
    Body, Disclosure, REVIEW_BREAK_GLASS, REVIEW_CONSENT_WITHDRAWN_BY_STAFF, Reviewed,
    SourceOutcome, WRITE_INTENT, WRITE_OUTCOME, Written,
};
pub use key::AuditKey;
pub use projector::project_pending;
pub use readers::Readers;
pub use writer::{AuditLog, CommitMeters, Health, MAX_BATCH, Options, Stopped};

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
    /// `audit verify` lost a part of its walk (a task that did not report back).
    #[error("audit verify did not finish: {0}")]
    Unfinished(String),
    /// The store refused the batch the record was in.
    #[error("the audit store refused the record: {0}")]
    Failed(String),
    /// The record could not be encoded; nothing was chained.
    #[error("the audit record could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
}

/// A record's canonical encoding (fixed-order JSON). A record that cannot be encoded is an
/// error, never an empty body in the chain.
fn encode<T: Serialize>(body: &T) -> Result<String, AuditError> {
    serde_json::to_string(body).map_err(AuditError::Encode)
}

/// A record's canonical encoding, as [`AuditLog::append`] makes it before the writer hashes
/// it. Public (hidden) only for the step benchmark (`benches/steps.rs`).
#[doc(hidden)]
pub fn encode_body(body: &Body) -> Result<String, AuditError> {
    encode(body)
}

pub use verify::{
    Broken, HeadCheck, Parts, Progress, Verified, verify, verify_with_heads, verify_with_progress,
};

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
            review: body.review.clone(),
            sources: distinct(
                body.disclosed
                    .iter()
                    .filter_map(|d| disclosing_source(&d.reference)),
            ),
            agreements: distinct(body.disclosed.iter().map(|d| &*d.agreement)),
        }
    }
}

/// The source a disclosed resource came from: the part of its gateway id
/// (`Type/{source}.{id}`) before the first `.`, when there is one. The projector
/// ([`Columns::of`]) and `audit verify` both follow it here; migration 0010's back-fill
/// writes the same rule in SQL: change them together.
pub fn disclosing_source(reference: &str) -> Option<&str> {
    let (_, id) = reference.split_once('/')?;
    let (source, _) = id.split_once('.')?;
    (!source.is_empty()).then_some(source)
}

/// Each value once, sorted. A record's disclosures come in runs of one source and one
/// agreement, so a value equal to the one before is dropped before the set sorts what is
/// left.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut last: Option<&str> = None;
    let set: std::collections::BTreeSet<&str> =
        values.filter(|v| last.replace(v) != Some(v)).collect();
    set.into_iter().map(str::to_owned).collect()
}

pub mod event;

#[cfg(test)]
mod projection_tests;
#[cfg(test)]
mod search_file_tests;
#[cfg(test)]
mod tests;
