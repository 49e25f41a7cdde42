//! `audit verify`: walks every chain in order, one row at a time, and checks every signed head.

use std::collections::{BTreeMap, HashMap};

use futures_util::TryStreamExt;

use super::heads::SignedHead;
use super::{AuditError, AuditKey, GENESIS, Record};
use crate::store::Store;

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Chains walked.
    pub chains: u64,
    /// Records checked.
    pub records: u64,
    /// Signed heads checked (from the store and the witness).
    pub heads: u64,
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

/// What signed heads are checked against, besides those in the store.
#[derive(Debug, Clone, Default)]
pub struct HeadCheck {
    /// The public key (hex) heads must be signed with. Without it, heads still show where
    /// chains must reach, but their signatures are not checked.
    pub public_key: Option<String>,
    /// Heads an outside witness kept (its file).
    pub witnessed: Vec<SignedHead>,
}

/// How far a walk has got, told to [`verify_with_progress`]'s callback: at each chain's first
/// record, after every batch of records and at the end of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The chain being walked.
    pub chain: &'a str,
    /// Records checked so far, over every chain.
    pub records: u64,
}

/// [`verify_with_heads`] with the store's heads alone and no signature check.
pub async fn verify(store: &Store, key: &AuditKey) -> Result<Result<Verified, Broken>, AuditError> {
    verify_with_heads(store, key, &HeadCheck::default()).await
}

/// Walks every chain in order, one row at a time: positions without gaps from 0, each
/// record's previous hash the hash of the one before, each hash the keyed hash of its
/// content, and its row in the search projection equal to the body (and present wherever the
/// chain's projection mark says it is). Then every signed head, from the store and from
/// `heads.witnessed`: its signature, the record it vouches for there with that hash, so a
/// chain cut short after a head was signed is found; likewise a projection mark past a
/// chain's end, and a search row that names no record.
pub async fn verify_with_heads(
    store: &Store,
    key: &AuditKey,
    heads: &HeadCheck,
) -> Result<Result<Verified, Broken>, AuditError> {
    verify_with_progress(store, key, heads, &mut |_| {}).await
}

/// [`verify_with_heads`], telling `progress` how far the walk has got (the IG console's
/// verify shows it). Between batches the walk yields to other tasks.
pub async fn verify_with_progress(
    store: &Store,
    key: &AuditKey,
    heads: &HeadCheck,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Result<Verified, Broken>, AuditError> {
    let stored = store.audit_heads().await?;
    let mut vouched: HashMap<String, BTreeMap<i64, SignedHead>> = HashMap::new();
    let mut checked_heads = 0_u64;
    for head in stored.into_iter().chain(heads.witnessed.iter().cloned()) {
        checked_heads += 1;
        let broken = |problem: String| Broken {
            chain: head.chain.clone(),
            seq: head.seq,
            problem,
        };
        if let Some(public_key) = &heads.public_key
            && !head.is_signed_by(public_key)
        {
            return Ok(Err(broken(
                "a signed head for this position has a signature that does not verify".into(),
            )));
        }
        let chain = vouched.entry(head.chain.clone()).or_default();
        if let Some(other) = chain.get(&head.seq)
            && other.hash != head.hash
        {
            return Ok(Err(broken(
                "two signed heads for this position name different hashes".into(),
            )));
        }
        chain.insert(head.seq, head);
    }

    let marks: HashMap<String, i64> = store.audit_projection_marks().await?.into_iter().collect();
    // The chain is walked here; the search projection is compared with the bodies by the
    // database itself, at the same time, on another connection.
    let (walked, projection) = tokio::join!(
        walk(store, key, &mut vouched, checked_heads, progress),
        store.audit_projection_problem()
    );
    let (verified, ends) = match walked? {
        Ok(walked) => walked,
        Err(broken) => return Ok(Err(broken)),
    };
    // Chains a head vouches for that have no records at all.
    if let Some((chain, heads)) = vouched.iter().min_by(|a, b| a.0.cmp(b.0))
        && let Some((seq, _)) = heads.last_key_value()
    {
        return Ok(Err(Broken {
            chain: chain.clone(),
            seq: 0,
            problem: format!(
                "missing: the whole chain is gone, though a signed head vouches for position {seq}"
            ),
        }));
    }
    if let Some(broken) = projection_overreaches(&marks, &ends) {
        return Ok(Err(broken));
    }
    if let Some((chain, seq, problem)) = projection? {
        return Ok(Err(Broken {
            chain,
            seq,
            problem: problem.to_owned(),
        }));
    }
    Ok(Ok(verified))
}

/// Walks every chain in the log, in order: positions, previous hashes and signed heads as
/// rows arrive, keyed hashes on a blocking thread a batch at a time while the next batch is
/// read. Returns what it checked and where each chain ends.
async fn walk(
    store: &Store,
    key: &AuditKey,
    vouched: &mut HashMap<String, BTreeMap<i64, SignedHead>>,
    heads: u64,
    progress: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Result<(Verified, HashMap<String, i64>), Broken>, AuditError> {
    let mut rows = store.audit_rows();
    let mut verified = Verified {
        chains: 0,
        records: 0,
        heads,
    };
    let mut walk = Walk::default();
    let mut ends: HashMap<String, i64> = HashMap::new();
    let mut batch: Vec<Record> = Vec::with_capacity(CHECK_BATCH);
    let mut in_flight: Option<tokio::task::JoinHandle<Option<Broken>>> = None;
    while let Some(record) = rows.try_next().await? {
        let starts_chain = walk
            .current
            .as_ref()
            .is_none_or(|(chain, _, _)| *chain != record.chain);
        if starts_chain {
            progress(Progress {
                chain: &record.chain,
                records: verified.records,
            });
        }
        if let Some(broken) = walk.step(&record, vouched, &mut ends, &mut verified) {
            // Anything earlier that fails its hash check is the first problem.
            let earlier = finish(in_flight.take())
                .await
                .or_else(|| check(key, &batch));
            return Ok(Err(earlier.unwrap_or(broken)));
        }
        batch.push(record);
        if batch.len() == CHECK_BATCH {
            if let Some(broken) = finish(in_flight.take()).await {
                return Ok(Err(broken));
            }
            let (key, full) = (
                key.clone(),
                std::mem::replace(&mut batch, Vec::with_capacity(CHECK_BATCH)),
            );
            in_flight = Some(tokio::task::spawn_blocking(move || check(&key, &full)));
            if let Some((chain, _, _)) = &walk.current {
                progress(Progress {
                    chain,
                    records: verified.records,
                });
            }
            // Other tasks (requests, when the console runs this) get their turn.
            tokio::task::yield_now().await;
        }
    }
    if let Some(broken) = finish(in_flight.take())
        .await
        .or_else(|| check(key, &batch))
    {
        return Ok(Err(broken));
    }
    if let Some((chain, last, _)) = walk.current.take() {
        progress(Progress {
            chain: &chain,
            records: verified.records,
        });
        if let Some(cut) = cut_short(vouched, &chain, last) {
            return Ok(Err(cut));
        }
        ends.insert(chain, last);
    }
    Ok(Ok((verified, ends)))
}

/// A chain whose projection mark is past its last record: records were cut off its end (the
/// mark only ever moves over records that were there).
fn projection_overreaches(
    marks: &HashMap<String, i64>,
    ends: &HashMap<String, i64>,
) -> Option<Broken> {
    let mut over: Vec<(&String, i64, i64)> = marks
        .iter()
        .filter_map(|(chain, mark)| {
            let last = ends.get(chain).copied().unwrap_or(-1);
            (*mark > last).then_some((chain, *mark, last))
        })
        .collect();
    over.sort();
    over.first().map(|(chain, mark, last)| Broken {
        chain: (*chain).clone(),
        seq: last + 1,
        problem: format!(
            "missing: the chain ends at position {last}, but its search projection reached position {mark} (records were cut off the end)"
        ),
    })
}

/// Rows whose hashes are checked together on a blocking thread.
const CHECK_BATCH: usize = 2048;

/// The walk's place: the chain being walked, its last position and hash.
#[derive(Default)]
struct Walk {
    current: Option<(String, i64, String)>,
}

impl Walk {
    /// Checks that `row` comes next in its chain (or starts a new one, after checking the
    /// last one was not cut short) and is the record any signed head names there.
    fn step(
        &mut self,
        record: &Record,
        vouched: &mut HashMap<String, BTreeMap<i64, SignedHead>>,
        ends: &mut HashMap<String, i64>,
        verified: &mut Verified,
    ) -> Option<Broken> {
        let broken = |problem: String| Broken {
            chain: record.chain.clone(),
            seq: record.seq,
            problem,
        };
        let same_chain = self
            .current
            .as_ref()
            .is_some_and(|(chain, _, _)| *chain == record.chain);
        if !same_chain {
            if let Some((chain, last, _)) = self.current.take() {
                if let Some(cut) = cut_short(vouched, &chain, last) {
                    return Some(cut);
                }
                ends.insert(chain, last);
            }
            verified.chains += 1;
        }
        let (expected_seq, expected_prev) = match &self.current {
            Some((_, seq, hash)) => (seq + 1, hash.as_str()),
            None => (0, GENESIS),
        };
        if record.seq != expected_seq {
            return Some(broken(format!(
                "expected position {expected_seq}: a record is missing or was inserted"
            )));
        }
        if record.prev_hash != expected_prev {
            return Some(broken(
                "does not follow the record before it (reordered, or one before it was replaced)"
                    .into(),
            ));
        }
        if let Some(head) = vouched
            .get(&record.chain)
            .and_then(|heads| heads.get(&record.seq))
            && head.hash != record.hash
        {
            return Some(broken(
                "it is not the record a signed head vouches for here (replaced)".into(),
            ));
        }
        verified.records += 1;
        match &mut self.current {
            Some(c) => {
                c.1 = record.seq;
                c.2.clone_from(&record.hash);
            }
            None => self.current = Some((record.chain.clone(), record.seq, record.hash.clone())),
        }
        None
    }
}

/// The first record of `records` whose keyed hash does not match its content.
fn check(key: &AuditKey, records: &[Record]) -> Option<Broken> {
    records.iter().find_map(|record| {
        (key.hash(&record.chain, record.seq, &record.prev_hash, &record.body) != record.hash).then(
            || Broken {
                chain: record.chain.clone(),
                seq: record.seq,
                problem: "its content was modified (hash mismatch)".to_owned(),
            },
        )
    })
}

/// The outcome of a batch's check (a check that could not run counts as no finding only if
/// it panicked, which `check` does not).
async fn finish(handle: Option<tokio::task::JoinHandle<Option<Broken>>>) -> Option<Broken> {
    match handle {
        Some(h) => h.await.unwrap_or_else(|e| {
            Some(Broken {
                chain: String::new(),
                seq: -1,
                problem: format!("the check stopped: {e}"),
            })
        }),
        None => None,
    }
}

/// When a signed head of `chain` vouches for a position after `last`, the tail was cut off.
/// Takes the chain's heads out of `vouched` (what is left were never walked).
fn cut_short(
    vouched: &mut HashMap<String, BTreeMap<i64, SignedHead>>,
    chain: &str,
    last: i64,
) -> Option<Broken> {
    let heads = vouched.remove(chain)?;
    let (seq, head) = heads.last_key_value()?;
    (*seq > last).then(|| Broken {
        chain: chain.to_owned(),
        seq: last + 1,
        problem: format!(
            "missing: the chain ends at position {last}, but a head signed at {} vouches for position {seq} (records were cut off the end)",
            jiff::Timestamp::from_microsecond(head.signed_us)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| head.signed_us.to_string())
        ),
    })
}

#[cfg(test)]
mod tests;
