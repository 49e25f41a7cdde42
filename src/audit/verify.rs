//! `audit verify`: walks every chain in order, a batch of positions at a time (a long chain
//! in parts at once, their seams checked after), checks every signed head, and compares the
//! search projection (its rows and the rows of disclosing sources and agreements) with what
//! each record's body says, in Rust, batch by batch.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::heads::SignedHead;
use super::{AuditError, AuditKey, Columns, GENESIS};
use crate::store::{ChainReader, ChainRecord, ChainRecords, Store};

mod parts;
mod projection;

use parts::Part;
pub use parts::Parts;
use projection::{compare, said, strays};

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

/// Walks every chain in order, a batch of positions at a time: positions without gaps from
/// 0, each record's previous hash the hash of the one before, each hash the keyed hash of
/// its content, and its rows in the search projection (its search row, and one row for each
/// source and agreement of its disclosures) exactly what its body says, present wherever the
/// chain's projection mark says they are. Then every signed head, from the store and from
/// `heads.witnessed`: its signature, the record it vouches for there with that hash, so a
/// chain cut short after a head was signed is found; likewise a projection mark past a
/// chain's end, and a search or side row that names no record (before a chain's first
/// record, past its last, or in a chain with none). A record changed, removed or inserted
/// is named before any place where the projection alone is wrong. A long chain is walked
/// in parts at once, two for each core ([`Parts::all_cores`]); what is found is the same
/// as in one walk.
pub async fn verify_with_heads(
    store: &Store,
    key: &AuditKey,
    heads: &HeadCheck,
) -> Result<Result<Verified, Broken>, AuditError> {
    verify_with_progress(store, key, heads, Parts::all_cores(), &mut |_| {}).await
}

/// [`verify_with_heads`] in `parts`, telling `progress` how far the walk has got (the IG
/// console's verify shows it). Between batches each part yields to other tasks.
pub async fn verify_with_progress(
    store: &Store,
    key: &AuditKey,
    heads: &HeadCheck,
    parts: Parts,
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
    let mut verified = Verified {
        chains: 0,
        records: 0,
        heads: checked_heads,
    };
    let mut ends: HashMap<String, i64> = HashMap::new();
    // The first place where the search projection does not say what the bodies say. It is
    // told only when the chains themselves hold: a record that was changed, removed or
    // inserted comes first.
    let mut disagreement: Option<Broken> = None;
    let mut readers: Vec<ChainReader> = Vec::new();
    for chain in store.audit_chains().await? {
        let chain: Arc<str> = Arc::from(chain);
        progress(Progress {
            chain: &chain,
            records: verified.records,
        });
        let split = parts.of(store.audit_chain_span(&chain).await?);
        let walk = Walk {
            store: store.clone(),
            key: key.clone(),
            chain: chain.clone(),
            mark: marks.get(&*chain).copied(),
            heads: Arc::new(vouched.get(&*chain).cloned().unwrap_or_default()),
            compare_too: disagreement.is_none(),
            stop: Arc::new(AtomicUsize::new(usize::MAX)),
        };
        let walked = walk
            .parts(&split, &mut readers, verified.records, progress)
            .await?;
        let place = match walk
            .weigh(
                &split,
                walked,
                &mut readers,
                &mut verified,
                &mut disagreement,
            )
            .await?
        {
            Ok(place) => place,
            Err(broken) => return Ok(Err(broken)),
        };
        // A chain with search rows but no records: its rows are strays (found by the walk).
        if let Some((last, _)) = place {
            verified.chains += 1;
            if let Some(cut) = cut_short(&mut vouched, &chain, last) {
                return Ok(Err(cut));
            }
            ends.insert(chain.to_string(), last);
        }
    }
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
    if let Some(broken) = disagreement {
        return Ok(Err(broken));
    }
    Ok(Ok(verified))
}

/// Records of a chain read from the store at a time. Their keyed hashes are checked and
/// their bodies read on a blocking thread while the next batch is read; then the search
/// projection's rows for the same positions are read and compared with what the bodies say.
pub(super) const CHECK_BATCH: usize = 2048;

/// What one chain's walk shares between its parts.
#[derive(Clone)]
struct Walk {
    store: Store,
    key: AuditKey,
    chain: Arc<str>,
    /// The chain's projection mark.
    mark: Option<i64>,
    /// The signed heads of the chain.
    heads: Arc<BTreeMap<i64, SignedHead>>,
    /// Whether the search projection is still compared (no earlier chain disagreed).
    compare_too: bool,
    /// The first part (by its place in the chain) that met a problem or a failure that
    /// will be reported: parts after it stop at their next batch, as one walk would never
    /// have reached them.
    stop: Arc<AtomicUsize>,
}

/// Why a part's walk ended before its end with no problem found.
#[derive(Debug)]
struct Stopped {
    error: AuditError,
    /// The error came from reading the search projection (which one walk reads only until
    /// the first disagreement).
    projection: bool,
}

/// What the walk of one part of a chain found.
#[derive(Debug, Default)]
struct Walked {
    /// The part's first record, when the part does not start the chain: its position and
    /// previous hash, which must follow the last record before the part (its seam).
    first: Option<(i64, String)>,
    /// The part's last record: its position and hash.
    last: Option<(i64, String)>,
    /// Records walked.
    records: u64,
    /// The first record in the part that does not fit its chain (at the seam apart).
    broken: Option<Broken>,
    /// The first place in the part where the search projection does not say what the
    /// bodies say.
    disagreement: Option<Broken>,
    /// The store failed the walk.
    stopped: Option<Stopped>,
    /// The walk stopped early because an earlier part met a problem.
    abandoned: bool,
}

/// Where a walk stands before the next record: at the chain's start, at a part's start
/// (the record before it is another part's), or after a record (its position and hash).
#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    Start,
    Seam,
    After(i64, &'a str),
}

impl Walk {
    /// Weighs what the parts found (`walked`, in order) as one walk would meet it: each
    /// seam checked as one walk checks two records, a problem or a failure in an earlier
    /// part first. Adds the records walked to `verified` and notes the first disagreement
    /// in `disagreement` (unless an earlier one is there). Returns the chain's last record
    /// (its position and hash; `None` when it has none), or the first problem.
    async fn weigh(
        &self,
        parts: &[Part],
        walked: Vec<Result<Walked, tokio::task::JoinError>>,
        readers: &mut Vec<ChainReader>,
        verified: &mut Verified,
        disagreement: &mut Option<Broken>,
    ) -> Result<Result<Option<(i64, String)>, Broken>, AuditError> {
        let mut place: Option<(i64, String)> = None;
        for ((i, part), found) in parts.iter().enumerate().zip(walked) {
            let mut found = match found {
                Ok(found) => found,
                Err(e) => {
                    return Ok(Err(Broken {
                        chain: self.chain.to_string(),
                        seq: part.from.max(0),
                        problem: format!("the check stopped: {e}"),
                    }));
                }
            };
            if found
                .stopped
                .as_ref()
                .is_some_and(|s| s.projection && disagreement.is_some())
            {
                // One walk stops comparing at the first disagreement, so it would not have
                // read the projection rows that failed here: walk the part again without.
                let mut reader = match readers.pop() {
                    Some(reader) => reader,
                    None => self.store.audit_chain_reader().await?,
                };
                let again = Walk {
                    compare_too: false,
                    ..self.clone()
                };
                let (told, _) = tokio::sync::mpsc::unbounded_channel();
                found = again.part(i, &mut reader, *part, &told).await;
                readers.push(reader);
            }
            if found.abandoned {
                // INVARIANT: a part is abandoned only after an earlier one found a problem,
                // which returned above.
                return Ok(Err(Broken {
                    chain: self.chain.to_string(),
                    seq: part.from.max(0),
                    problem: "the check stopped: a part was not walked to its end".into(),
                }));
            }
            if let Some((seq, prev_hash)) = &found.first {
                let before = place
                    .as_ref()
                    .map_or(Place::Start, |(seq, hash)| Place::After(*seq, hash));
                if let Some(problem) = follows(before, *seq, prev_hash) {
                    return Ok(Err(Broken {
                        chain: self.chain.to_string(),
                        seq: *seq,
                        problem,
                    }));
                }
            }
            if let Some(broken) = found.broken {
                return Ok(Err(broken));
            }
            if let Some(stopped) = found.stopped {
                return Err(stopped.error);
            }
            verified.records += found.records;
            if found.last.is_some() {
                place = found.last;
            }
            if disagreement.is_none() {
                *disagreement = found.disagreement;
            }
        }
        Ok(Ok(place))
    }

    /// Walks the chain's parts at once, each in a task of its own with one of `readers`
    /// (more are opened when there are more parts than readers; those whose part ended are
    /// given back), telling `progress` of each batch walked (counting on from `records`).
    /// Returns what each part found, in order (a part whose task stopped, which only a
    /// panic does, as its error).
    async fn parts(
        &self,
        parts: &[Part],
        readers: &mut Vec<ChainReader>,
        mut records: u64,
        progress: &mut (dyn FnMut(Progress<'_>) + Send),
    ) -> Result<Vec<Result<Walked, tokio::task::JoinError>>, AuditError> {
        while readers.len() < parts.len() {
            readers.push(self.store.audit_chain_reader().await?);
        }
        let (told, mut telling) = tokio::sync::mpsc::unbounded_channel();
        // Were this walk dropped (its caller cancelled), the set would stop the parts.
        let mut walks = tokio::task::JoinSet::new();
        let mut ids = HashMap::new();
        let taken = readers.split_off(readers.len().saturating_sub(parts.len()));
        for (i, (part, mut reader)) in parts.iter().copied().zip(taken).enumerate() {
            let (walk, told) = (self.clone(), told.clone());
            let task = walks.spawn(async move {
                let walked = walk.part(i, &mut reader, part, &told).await;
                (reader, walked)
            });
            ids.insert(task.id(), i);
        }
        drop(told);
        while let Some(batch) = telling.recv().await {
            records += batch;
            progress(Progress {
                chain: &self.chain,
                records,
            });
        }
        let mut walked: Vec<Option<Result<Walked, tokio::task::JoinError>>> =
            parts.iter().map(|_| None).collect();
        while let Some(done) = walks.join_next_with_id().await {
            let (id, found) = match done {
                Ok((id, (reader, found))) => {
                    readers.push(reader);
                    (id, Ok(found))
                }
                Err(e) => (e.id(), Err(e)),
            };
            if let Some(slot) = ids.get(&id).and_then(|i| walked.get_mut(*i)) {
                *slot = Some(found);
            }
        }
        // INVARIANT: every part had a reader and a task, so every slot is filled.
        walked
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AuditError::Unfinished("a part of the walk was lost".into()))
    }

    /// Walks one part of the chain in order, a batch of positions at a time: positions,
    /// previous hashes and signed heads as rows arrive; keyed hashes, and what each body
    /// says its search rows are, on a blocking thread while the next batch is read; the
    /// search projection's rows for the same positions compared with them after (unless
    /// `compare_too` is off, or an earlier batch disagreed). Tells `told` how many records
    /// each batch held. This is part `index` of the chain: it stops early (abandoned) when
    /// an earlier part met a problem.
    async fn part(
        &self,
        index: usize,
        reader: &mut ChainReader,
        part: Part,
        told: &tokio::sync::mpsc::UnboundedSender<u64>,
    ) -> Walked {
        let mut walked = Walked::default();
        // What ends the walk early: a problem found, or a failure, each told to the parts
        // after this one (except a failure to read the projection, which one walk might not
        // have met: see `verify_with_progress`).
        let end = |mut walked: Walked, broken: Option<Broken>, stopped: Option<Stopped>| {
            if broken.is_some() || stopped.as_ref().is_some_and(|s| !s.projection) {
                self.stop.fetch_min(index, Ordering::Relaxed);
            }
            walked.broken = broken;
            walked.stopped = stopped;
            walked
        };
        let failed = |error: AuditError, projection: bool| Some(Stopped { error, projection });
        let chain = &self.chain;
        let mut compare_too = self.compare_too;
        let mut place: Option<(i64, String)> = None;
        let mut next = Some(part.from);
        let mut in_flight: Option<Checking> = None;
        while let Some(from) = next {
            if self.stop.load(Ordering::Relaxed) < index {
                walked.abandoned = true;
                return walked;
            }
            // The next batch is read while the last one's check ends and its projection is
            // read (on a second connection).
            let (rows, settled) = tokio::join!(
                reader.records(chain, from, part.to, CHECK_BATCH as u32),
                settle(&self.store, chain, self.mark, in_flight.take(), compare_too)
            );
            if let Err((broken, stopped)) = take(&mut walked, &mut compare_too, settled) {
                return end(walked, broken, stopped);
            }
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => return end(walked, None, failed(e.into(), false)),
            };
            let more = rows.len() == CHECK_BATCH;
            // The last position and hash walked, borrowed until the batch's end.
            let mut last = match &place {
                Some((seq, hash)) => Place::After(*seq, hash),
                None if part.starts => Place::Start,
                None => Place::Seam,
            };
            for (i, row) in rows.iter().enumerate() {
                if let Place::Seam = last {
                    walked.first = Some((row.seq, row.prev_hash.to_owned()));
                }
                if let Some(problem) = step(last, &row, &self.heads) {
                    // Anything earlier in the batch that fails its hash check is the first
                    // problem (earlier batches were checked already).
                    let earlier = check(&self.key, chain, rows.slice(0..i));
                    let broken = earlier.unwrap_or(Broken {
                        chain: chain.to_string(),
                        seq: row.seq,
                        problem,
                    });
                    return end(walked, Some(broken), None);
                }
                walked.records += 1;
                last = Place::After(row.seq, row.hash);
            }
            let last = match last {
                Place::After(seq, hash) => Some((seq, hash.to_owned())),
                Place::Start | Place::Seam => None,
            };
            place = last;
            let last_row = rows
                .len()
                .checked_sub(1)
                .and_then(|i| rows.get(i))
                .map(|row| row.seq);
            // The projection's rows are compared up to the batch's last record; where the
            // part ends here and another follows, up to the part's end, so that no position
            // falls between two parts.
            let to = if more || part.ends {
                last_row
            } else {
                Some(part.to)
            };
            let batch = u64::try_from(rows.len()).unwrap_or(u64::MAX);
            in_flight = to.map(|to| Checking::start(&self.key, chain, from, to, rows));
            // The receiver is gone only when nobody follows the progress any more.
            let _ = told.send(batch);
            // Other tasks (requests, when the console runs this) get their turn.
            tokio::task::yield_now().await;
            next = last_row.and_then(|to| to.checked_add(1)).filter(|_| more);
        }
        let settled = settle(&self.store, chain, self.mark, in_flight.take(), compare_too).await;
        if let Err((broken, stopped)) = take(&mut walked, &mut compare_too, settled) {
            return end(walked, broken, stopped);
        }
        // Search rows past the chain's last record (or in a chain with none) name no record.
        if part.ends && compare_too {
            let after = match &place {
                Some((last, _)) => last.checked_add(1),
                None => Some(part.from),
            };
            if let Some(after) = after {
                match strays(&self.store, chain, after).await {
                    Ok(found) => walked.disagreement = found,
                    Err(e) => return end(walked, None, failed(e, true)),
                }
            }
        }
        walked.last = place;
        walked
    }
}

/// Takes a settled batch ([`settle`]) into a part's walk: the disagreement it found, if the
/// walk still compares (after one, it no longer does); or, as `Err`, the problem (a record
/// whose hash does not match) or the failure to read the projection that ends the walk.
fn take(
    walked: &mut Walked,
    compare_too: &mut bool,
    settled: Result<(Option<Broken>, Option<Broken>), AuditError>,
) -> Result<(), (Option<Broken>, Option<Stopped>)> {
    let (hash, found) = settled.map_err(|error| {
        (
            None,
            Some(Stopped {
                error,
                projection: true,
            }),
        )
    })?;
    if hash.is_some() {
        return Err((hash, None));
    }
    if *compare_too {
        walked.disagreement = found;
        *compare_too = walked.disagreement.is_none();
    }
    Ok(())
}

/// Waits for a batch's check: the first record whose hash does not match, if any; else,
/// when `compare_too`, the first place where the projection's rows for the batch do not say
/// what its bodies say. The projection's rows for the batch's positions are read while the
/// check runs, up to [`SIDE_ROWS_READ`] side rows a record; only when a table has more than
/// that are they read again after it, as many as the bodies call for ([`compare`]).
async fn settle(
    store: &Store,
    chain: &Arc<str>,
    mark: Option<i64>,
    checking: Option<Checking>,
    compare_too: bool,
) -> Result<(Option<Broken>, Option<Broken>), AuditError> {
    let Some(checking) = checking else {
        return Ok((None, None));
    };
    if !compare_too {
        let done = checking.finish(chain).await;
        return Ok((done.hash, None));
    }
    let (from, to) = (checking.from, checking.to);
    let side = limit(checking.records.saturating_mul(SIDE_ROWS_READ));
    let limits = (limit(checking.records), side, side);
    let (done, read) = tokio::join!(
        checking.finish(chain),
        store.audit_projection_range(chain, from, to, limits)
    );
    if done.hash.is_some() {
        return Ok((done.hash, None));
    }
    let read = read?;
    let whole = read.sources.len() < side as usize && read.agreements.len() < side as usize;
    let found = compare(store, chain, mark, &done, whole.then_some(read)).await?;
    Ok((None, found))
}

/// Side rows (of disclosing sources, and of agreements) read for each record of a batch
/// while its check runs: more than any record's body calls for in practice (a source or
/// agreement is named once however many resources it disclosed).
const SIDE_ROWS_READ: usize = 8;

/// A read's limit: one row more than `n`, so that a row too many is seen.
fn limit(n: usize) -> u32 {
    u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX)
}

/// A batch whose hashes are being checked on one blocking thread and whose bodies are being
/// read on another.
struct Checking {
    from: i64,
    to: i64,
    /// How many records the batch holds.
    records: usize,
    hashing: tokio::task::JoinHandle<Option<Broken>>,
    reading: tokio::task::JoinHandle<Vec<(i64, Option<Columns>)>>,
}

/// What a batch's blocking check found.
struct Checked {
    /// Positions `[from, to]` the batch covered.
    from: i64,
    to: i64,
    /// The first record whose keyed hash does not match its content.
    hash: Option<Broken>,
    /// Each record's position and what its body says its search rows are (`None`: the body
    /// is not a record's encoding).
    said: Vec<(i64, Option<Columns>)>,
}

impl Checking {
    fn start(key: &AuditKey, chain: &Arc<str>, from: i64, to: i64, rows: ChainRecords) -> Checking {
        let records = rows.len();
        let rows = Arc::new(rows);
        let hashing = {
            let (key, chain, rows) = (key.clone(), chain.clone(), rows.clone());
            tokio::task::spawn_blocking(move || check(&key, &chain, rows.iter()))
        };
        let reading = tokio::task::spawn_blocking(move || {
            rows.iter().map(|r| (r.seq, said(r.body))).collect()
        });
        Checking {
            from,
            to,
            records,
            hashing,
            reading,
        }
    }

    /// The check's outcome (a check that could not run is a problem at the batch's start).
    async fn finish(self, chain: &str) -> Checked {
        let (from, to) = (self.from, self.to);
        let stopped = |e: tokio::task::JoinError| Checked {
            from,
            to,
            hash: Some(Broken {
                chain: chain.to_owned(),
                seq: from,
                problem: format!("the check stopped: {e}"),
            }),
            said: Vec::new(),
        };
        let (hash, said) = tokio::join!(self.hashing, self.reading);
        match (hash, said) {
            (Ok(hash), Ok(said)) => Checked {
                from,
                to,
                hash,
                said,
            },
            (Err(e), _) | (_, Err(e)) => stopped(e),
        }
    }
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

/// Why `row` cannot come next after `place`, or is not the record a signed head names
/// there.
fn step(
    place: Place<'_>,
    row: &ChainRecord<'_>,
    heads: &BTreeMap<i64, SignedHead>,
) -> Option<String> {
    if let Some(problem) = follows(place, row.seq, row.prev_hash) {
        return Some(problem);
    }
    if let Some(head) = heads.get(&row.seq)
        && head.hash != row.hash
    {
        return Some("it is not the record a signed head vouches for here (replaced)".into());
    }
    None
}

/// Why a record at `seq` whose previous hash is `prev_hash` cannot come next after `place`
/// (at a part's start, where the record before is another part's, nothing is known yet: the
/// seam is checked once both parts are walked).
fn follows(place: Place<'_>, seq: i64, prev_hash: &str) -> Option<String> {
    let (expected_seq, expected_prev) = match place {
        Place::Seam => return None,
        Place::Start => (0, GENESIS),
        Place::After(seq, hash) => (seq.saturating_add(1), hash),
    };
    if seq != expected_seq {
        return Some(format!(
            "expected position {expected_seq}: a record is missing or was inserted"
        ));
    }
    if prev_hash != expected_prev {
        return Some(
            "does not follow the record before it (reordered, or one before it was replaced)"
                .into(),
        );
    }
    None
}

/// The first record of `rows` whose keyed hash does not match its content.
fn check<'a>(
    key: &AuditKey,
    chain: &str,
    mut rows: impl Iterator<Item = ChainRecord<'a>>,
) -> Option<Broken> {
    rows.find_map(|row| {
        (key.hash(chain, row.seq, row.prev_hash, row.body) != row.hash).then(|| Broken {
            chain: chain.to_owned(),
            seq: row.seq,
            problem: "its content was modified (hash mismatch)".to_owned(),
        })
    })
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
