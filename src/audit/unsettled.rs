//! Writes whose outcome the audit chain does not know (hazard H-016, R-016.1).
//!
//! A write makes two records of the same request id in the gateway's chain: its intent,
//! committed before anything is sent to the source, and its outcome, committed before the
//! answer. An intent with no outcome after it means the gateway stopped (or its store
//! failed) between sending the write and recording what the source said: the write may or
//! may not be at the source. Such a write is *settled* later by reading the source
//! (`concord audit writes --unsettled --settle`), which appends a record of stage
//! [`WRITE_SETTLED`] saying what was found there, never what the source answered at the
//! time (nobody saw that).
//!
//! A write whose outcome says the source timed out or failed (`error`, the source's outcome
//! `timeout` or `failed`) is unknown in the same way: the source may have taken it before the
//! answer was lost. It is listed and settled the same way.
//!
//! Finding them reads only the search projection's indexes: the intents (outcome `pending`)
//! and the failed outcomes (`error`), both in the partial index of the unsuccessful; then
//! for each intent, the records about the same person within [`OUTCOME_WINDOW_US`] after it
//! (an outcome is recorded by then or never); and only for a write still unknown, the
//! person's later records for a settlement.

use super::{Body, WRITE_INTENT, WRITE_OUTCOME};
use crate::store::{AuditColumn, AuditPosition, AuditQuery, AuditSpan, Row, Store, StoreError};

/// Stage of the record that settles a write left without an outcome: what reading the
/// source later showed.
pub const WRITE_SETTLED: &str = "settled";

/// The route and the start of the target of a settlement record; the target ends with the
/// settled intent's record id (`{chain}.{seq}`).
pub const SETTLE_ROUTE: &str = "concord audit writes --settle";

/// The outcome word of a write's intent record.
pub const PENDING: &str = "pending";

/// How long after its intent a write's outcome is recorded, at the latest: the outcome's
/// body is made when the source has answered (or its timeout has passed), and every
/// source's timeout is far shorter than this. Spooled records keep the time they were made.
pub const OUTCOME_WINDOW_US: i64 = 10 * 60 * 1_000_000;

/// Slack for a clock stepped back between the intent and its outcome.
const CLOCK_SLACK_US: i64 = 60 * 1_000_000;

/// Rows asked for per page.
const PAGE: u32 = 500;

/// Why a write's outcome is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Its intent has no outcome after it.
    NoOutcome,
    /// Its outcome says the source did not answer in time.
    TimedOut,
    /// Its outcome says the source failed (could not be reached, or answered 5xx).
    Failed,
}

impl Unknown {
    /// In words.
    pub fn words(self) -> &'static str {
        match self {
            Unknown::NoOutcome => "no outcome recorded",
            Unknown::TimedOut => "the source timed out",
            Unknown::Failed => "the source failed",
        }
    }
}

/// A write whose outcome is not known and that has no settlement.
#[derive(Debug, Clone)]
pub struct Unsettled {
    /// The chain of its record: the intent, or the outcome saying the source failed.
    pub chain: String,
    /// Its position.
    pub seq: i64,
    /// The record.
    pub body: Body,
    /// Why its outcome is not known.
    pub unknown: Unknown,
}

impl Unsettled {
    /// The record's id, `{chain}.{seq}` (as the AuditEvent API names it).
    pub fn record_id(&self) -> String {
        format!("{}.{}", self.chain, self.seq)
    }

    /// The type written: from the resource an update names, or the path a create was sent
    /// to (`/fhir/Goal`).
    pub fn resource_type(&self) -> Option<&str> {
        let from_resource = self
            .body
            .write
            .as_ref()
            .and_then(|w| w.resource.as_deref())
            .and_then(|r| r.split_once('/'))
            .map(|(t, _)| t);
        from_resource.or_else(|| {
            self.body
                .target
                .strip_prefix("/fhir/")
                .and_then(|rest| rest.split(['/', '?']).next())
                .filter(|t| !t.is_empty())
        })
    }
}

/// The target of the record settling `intent` (`{chain}.{seq}`).
pub fn settle_target(intent: &str) -> String {
    format!("{SETTLE_ROUTE} {intent}")
}

/// The writes recorded in `span` whose outcome is not known and that have no settlement,
/// oldest first; at most `cap` write records are looked at (the newest first), and `true`
/// says the cap cut the look short. Reads the search projection: a caller outside the
/// gateway brings it up to date first ([`super::project_pending`]).
pub async fn unsettled(
    store: &Store,
    span: AuditSpan,
    cap: usize,
) -> Result<(Vec<Unsettled>, bool), StoreError> {
    let mut found = Vec::new();
    let mut looked = 0_usize;
    let mut after: Option<AuditPosition> = None;
    let mut cut = false;
    'pages: loop {
        let rows = store
            .audit_search(&AuditQuery {
                equals: vec![(
                    AuditColumn::Outcome,
                    vec![PENDING.to_owned(), "error".to_owned()],
                )],
                recorded: vec![vec![span]],
                scope: None,
                after: after.clone(),
                limit: PAGE,
            })
            .await?;
        for row in &rows {
            let Some(write) = unknown_of(row) else {
                continue;
            };
            if looked >= cap {
                cut = true;
                break 'pages;
            }
            looked += 1;
            if !is_settled(store, &write).await? {
                found.push(write);
            }
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE as usize => after = Some(position(last)),
            _ => break,
        }
    }
    found.reverse();
    Ok((found, cut))
}

/// The row as a write whose outcome may not be known: an intent, or an outcome saying the
/// source timed out or failed.
fn unknown_of(row: &Row) -> Option<Unsettled> {
    let body: Body = serde_json::from_str(&row.record.body).ok()?;
    let w = body.write.as_ref()?;
    let unknown = match w.stage.as_str() {
        WRITE_INTENT => Unknown::NoOutcome,
        WRITE_OUTCOME if body.sources.iter().any(|s| s.outcome == "timeout") => Unknown::TimedOut,
        WRITE_OUTCOME if body.sources.iter().any(|s| s.outcome == "failed") => Unknown::Failed,
        _ => return None,
    };
    Some(Unsettled {
        chain: row.record.chain.clone(),
        seq: row.record.seq,
        body,
        unknown,
    })
}

fn position(row: &Row) -> AuditPosition {
    AuditPosition {
        recorded_us: row.columns.recorded_us,
        chain: row.record.chain.clone(),
        seq: row.record.seq,
    }
}

/// Whether the intent has its outcome, or the write a settlement.
async fn is_settled(store: &Store, intent: &Unsettled) -> Result<bool, StoreError> {
    let Some(person) = intent.body.person.clone() else {
        // Every write record names the person (the door resolved them before deciding); one
        // that does not cannot be looked up by them and is listed.
        return Ok(false);
    };
    let from = intent.body.recorded_us.saturating_sub(CLOCK_SLACK_US);
    if intent.unknown == Unknown::NoOutcome {
        let window = AuditSpan {
            from: Some(from),
            to: Some(intent.body.recorded_us.saturating_add(OUTCOME_WINDOW_US)),
        };
        let nearby = person_records(store, &person, window).await?;
        if has_outcome(intent, &nearby) {
            return Ok(true);
        }
    }
    let target = settle_target(&intent.record_id());
    let later = person_records(
        store,
        &person,
        AuditSpan {
            from: Some(from),
            to: None,
        },
    )
    .await?;
    Ok(later.iter().any(|(_, _, body)| {
        body.write.as_ref().map(|w| w.stage.as_str()) == Some(WRITE_SETTLED)
            && body.target == target
    }))
}

/// The person's write records in `span`: (chain, seq, body).
async fn person_records(
    store: &Store,
    person: &str,
    span: AuditSpan,
) -> Result<Vec<(String, i64, Body)>, StoreError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let rows = store
            .audit_search(&AuditQuery {
                equals: vec![(AuditColumn::Person, vec![person.to_owned()])],
                recorded: vec![vec![span]],
                scope: None,
                after,
                limit: PAGE,
            })
            .await?;
        for row in &rows {
            if let Ok(body) = serde_json::from_str::<Body>(&row.record.body)
                && body.write.is_some()
            {
                out.push((row.record.chain.clone(), row.record.seq, body));
            }
        }
        if rows.len() < PAGE as usize {
            return Ok(out);
        }
        after = rows.last().map(position);
    }
}

/// Whether an outcome in the intent's chain answers it. Records of the same request id pair
/// in order (a client may send one request id twice): each outcome answers the oldest intent
/// still open before it.
fn has_outcome(intent: &Unsettled, records: &[(String, i64, Body)]) -> bool {
    let mut same: Vec<(i64, &str)> = records
        .iter()
        .filter(|(chain, _, body)| {
            *chain == intent.chain && body.request_id == intent.body.request_id
        })
        .filter_map(|(_, seq, body)| Some((*seq, body.write.as_ref()?.stage.as_str())))
        .collect();
    same.sort_unstable();
    let mut open = std::collections::VecDeque::new();
    for (seq, stage) in same {
        if stage == WRITE_INTENT {
            open.push_back(seq);
        } else if stage == WRITE_OUTCOME && open.pop_front() == Some(intent.seq) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Written;

    fn record(seq: i64, stage: &str, request_id: &str) -> (String, i64, Body) {
        (
            "c1".to_owned(),
            seq,
            Body {
                request_id: request_id.to_owned(),
                target: "/fhir/Goal".to_owned(),
                write: Some(Written {
                    stage: stage.to_owned(),
                    action: "C".to_owned(),
                    source: Some("gp".to_owned()),
                    resource: None,
                    version: None,
                    sha256: None,
                    agreement: None,
                    rule: None,
                    read_version: None,
                }),
                ..Body::default()
            },
        )
    }

    fn intent(seq: i64, request_id: &str) -> Unsettled {
        let (chain, seq, body) = record(seq, WRITE_INTENT, request_id);
        Unsettled {
            chain,
            seq,
            body,
            unknown: Unknown::NoOutcome,
        }
    }

    #[test]
    fn an_outcome_answers_the_oldest_open_intent_of_its_request_id() {
        let records = vec![
            record(3, WRITE_INTENT, "r1"),
            record(4, WRITE_INTENT, "r2"),
            record(5, WRITE_INTENT, "r1"),
            record(7, WRITE_OUTCOME, "r1"),
        ];
        assert!(has_outcome(&intent(3, "r1"), &records));
        assert!(
            !has_outcome(&intent(5, "r1"), &records),
            "one outcome, two intents"
        );
        assert!(!has_outcome(&intent(4, "r2"), &records));
        // An outcome in another chain is another gateway's.
        let mut elsewhere = record(6, WRITE_OUTCOME, "r2");
        elsewhere.0 = "c2".to_owned();
        assert!(!has_outcome(&intent(4, "r2"), &[elsewhere]));
    }

    #[test]
    fn the_type_comes_from_the_resource_or_the_path() {
        let mut create = intent(1, "r");
        assert_eq!(create.resource_type(), Some("Goal"));
        create.body.target = "/fhir/".to_owned();
        assert_eq!(create.resource_type(), None);
        if let Some(w) = create.body.write.as_mut() {
            w.resource = Some("CarePlan/gp.p1".to_owned());
        }
        assert_eq!(create.resource_type(), Some("CarePlan"));
        assert_eq!(create.record_id(), "c1.1");
        assert_eq!(
            settle_target(&create.record_id()),
            "concord audit writes --settle c1.1"
        );
    }
}
