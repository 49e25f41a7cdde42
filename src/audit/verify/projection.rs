//! What `audit verify` compares the search projection with: what each record's body says
//! its search rows are, and the projection's rows over a checked batch's positions.

use std::borrow::Cow;
use std::sync::Arc;

use super::{Broken, Checked, limit};
use crate::audit::body::disclosed::Either;
use crate::audit::{AuditError, Columns};
use crate::store::Store;

/// What a record's body says, as far as its search rows go: the fields the search
/// projection keeps.
#[derive(serde::Deserialize)]
struct Said<'a> {
    recorded_us: i64,
    #[serde(borrow)]
    person: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    org: Option<Cow<'a, str>>,
    #[serde(borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Cow<'a, str>,
    #[serde(borrow)]
    review: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "said_disclosed")]
    disclosed: Vec<SaidDisclosure<'a>>,
}

/// A body's `disclosed` in either of its forms (see `body::disclosed`), borrowing.
fn said_disclosed<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<SaidDisclosure<'a>>, D::Error> {
    d.deserialize_any(Either::new(
        |permits: Vec<SaidPermit<'a>>, resources: Vec<SaidResource<'a>>| {
            resources
                .into_iter()
                .map(|SaidResource(reference, at)| {
                    permits.get(at).map(|p| SaidDisclosure {
                        reference,
                        agreement: p.agreement.clone(),
                    })
                })
                .collect()
        },
    ))
}

#[derive(serde::Deserialize)]
struct SaidResource<'a>(#[serde(borrow)] Cow<'a, str>, usize);

#[derive(serde::Deserialize)]
struct SaidPermit<'a> {
    #[serde(borrow)]
    agreement: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct SaidDisclosure<'a> {
    #[serde(borrow)]
    reference: Cow<'a, str>,
    #[serde(borrow)]
    agreement: Cow<'a, str>,
}

/// The search rows a body calls for, by the projector's rule (`Columns::of`); `None` when
/// the body is not a record's encoding (no search row can match it).
pub(super) fn said(body: &str) -> Option<Columns> {
    let said: Said<'_> = serde_json::from_str(body).ok()?;
    let owned = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned);
    Some(Columns {
        recorded_us: said.recorded_us,
        person: owned(said.person),
        user: owned(said.user),
        org: owned(said.org),
        purpose: owned(said.purpose),
        outcome: said.outcome.into_owned(),
        review: owned(said.review),
        sources: crate::audit::distinct(
            said.disclosed
                .iter()
                .filter_map(|d| crate::audit::disclosing_source(&d.reference)),
        ),
        agreements: crate::audit::distinct(said.disclosed.iter().map(|d| &*d.agreement)),
    })
}

/// Compares the search projection's rows for a checked batch's positions (read in one
/// statement, so one snapshot) with what its bodies say: `read`, the rows read while the
/// check ran when no table had more than that read took, or else rows read now. Each read is
/// bounded: at most one search row more than the batch has records, and (read now) one side
/// row more than all its bodies call for (a row past that is one too many, and the first
/// wrong position is among those read).
pub(super) async fn compare(
    store: &Store,
    chain: &Arc<str>,
    mark: Option<i64>,
    checked: &Checked,
    read: Option<crate::store::ProjectionRange>,
) -> Result<Option<Broken>, AuditError> {
    let called_for = |values: fn(&Columns) -> &Vec<String>| -> usize {
        checked
            .said
            .iter()
            .filter_map(|(_, said)| said.as_ref().map(|c| values(c).len()))
            .sum()
    };
    let range = match read {
        Some(range) => range,
        None => {
            store
                .audit_projection_range(
                    chain,
                    checked.from,
                    checked.to,
                    (
                        limit(checked.said.len()),
                        limit(called_for(|c| &c.sources)),
                        limit(called_for(|c| &c.agreements)),
                    ),
                )
                .await?
        }
    };
    Ok(first_disagreement(
        &checked.said,
        mark,
        &range.search,
        &range.sources,
        &range.agreements,
    )
    .map(|(seq, problem)| Broken {
        chain: chain.to_string(),
        seq,
        problem: problem.to_owned(),
    }))
}

/// The first search row (or side row) of `chain` at a position from `after` on that names a
/// record the log (or the projection) does not hold: past the chain's last record read,
/// only records appended since are there, with their rows.
pub(super) async fn strays(
    store: &Store,
    chain: &Arc<str>,
    after: i64,
) -> Result<Option<Broken>, AuditError> {
    let (search, side) = store.audit_projection_strays(chain, after).await?;
    let found = match (search, side) {
        (Some(s), Some(d)) if d < s => Some((d, SIDES_STRAY)),
        (Some(s), _) => Some((s, STRAY)),
        (None, Some(d)) => Some((d, SIDES_STRAY)),
        (None, None) => None,
    };
    Ok(found.map(|(seq, problem)| Broken {
        chain: chain.to_string(),
        seq,
        problem: problem.to_owned(),
    }))
}

/// A search row whose columns differ from its record's body.
const DIFFERS: &str = "its searchable columns do not match its content";
/// A record whose side rows are not exactly the sources and agreements its body names.
const SIDES_DIFFER: &str =
    "its search rows for the sources and agreements of its disclosures do not match its content";
/// A record at or before its chain's mark with no search row.
const HIDDEN: &str = "it is missing from the search projection, so searches do not find it";
/// A search row for a record the log does not hold.
const STRAY: &str = "the search projection lists a record that is not in the log";
/// A side row for a record the search projection does not hold.
const SIDES_STRAY: &str =
    "the search projection lists a source or agreement of a record it does not hold";

/// The first position (and what is wrong there) where the search projection's rows do not
/// say what the records' bodies say, over one range of a chain's positions: `said` holds
/// the records there (in order) and what each body says, `search` the search rows and
/// `sources` and `agreements` the side rows there (each in order of position). Where one
/// position has several problems, the first of [`DIFFERS`], [`SIDES_DIFFER`], [`HIDDEN`],
/// [`STRAY`], [`SIDES_STRAY`] is named.
fn first_disagreement(
    said: &[(i64, Option<Columns>)],
    mark: Option<i64>,
    search: &[(i64, Columns)],
    sources: &[(i64, String, i64)],
    agreements: &[(i64, String, i64)],
) -> Option<(i64, &'static str)> {
    let record = |seq: i64| {
        said.binary_search_by_key(&seq, |(s, _)| *s)
            .ok()
            .map(|i| &said[i].1)
    };
    let searched = |seq: i64| search.binary_search_by_key(&seq, |(s, _)| *s).is_ok();
    let mut found: Option<(i64, usize, &'static str)> = None;
    let mut note = |seq: i64, rank: usize, problem: &'static str| {
        if found.is_none_or(|(s, r, _)| (seq, rank) < (s, r)) {
            found = Some((seq, rank, problem));
        }
    };
    for (seq, row) in search {
        match record(*seq) {
            None => note(*seq, 3, STRAY),
            Some(None) => note(*seq, 0, DIFFERS),
            Some(Some(said)) => {
                if !same_columns(row, said) {
                    note(*seq, 0, DIFFERS);
                }
                if !same_side(group(sources, *seq), &said.sources, said.recorded_us)
                    || !same_side(group(agreements, *seq), &said.agreements, said.recorded_us)
                {
                    note(*seq, 1, SIDES_DIFFER);
                }
            }
        }
    }
    for (seq, _) in said {
        if mark.is_some_and(|mark| *seq <= mark) && !searched(*seq) {
            note(*seq, 2, HIDDEN);
        }
    }
    for (seq, _, _) in sources.iter().chain(agreements) {
        if !searched(*seq) {
            note(*seq, 4, SIDES_STRAY);
        }
    }
    found.map(|(seq, _, problem)| (seq, problem))
}

/// The rows of `rows` (ordered by position) at `seq`.
fn group(rows: &[(i64, String, i64)], seq: i64) -> &[(i64, String, i64)] {
    let start = rows.partition_point(|(s, _, _)| *s < seq);
    let end = rows.partition_point(|(s, _, _)| *s <= seq);
    &rows[start..end]
}

/// Whether a search row's columns are what the body says (its side rows apart).
fn same_columns(row: &Columns, said: &Columns) -> bool {
    row.recorded_us == said.recorded_us
        && row.person == said.person
        && row.user == said.user
        && row.org == said.org
        && row.purpose == said.purpose
        && row.outcome == said.outcome
        && row.review == said.review
}

/// Whether a record's rows of one side table are exactly the values its body names (each
/// once), each at the record's time.
fn same_side(rows: &[(i64, String, i64)], said: &[String], recorded_us: i64) -> bool {
    if rows.len() != said.len() || rows.iter().any(|(_, _, us)| *us != recorded_us) {
        return false;
    }
    let mut values: Vec<&str> = rows.iter().map(|(_, v, _)| v.as_str()).collect();
    values.sort_unstable();
    values.iter().zip(said).all(|(v, s)| *v == s.as_str())
}
