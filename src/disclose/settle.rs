//! Settling a write left without an outcome (hazard H-016, R-016.1): read the source it was
//! sent to, say what is there, and record that in the audit chain as found later.
//!
//! What the intent names is compared with what the source holds now:
//! - the SHA-256 of the bytes sent, with what the source adds on taking a write taken off
//!   (`meta.versionId`, `meta.lastUpdated`, and a create's new `id`): the source holds the
//!   resource exactly as sent, so the write was made ([`Finding::Present`]);
//! - for an update, the version the caller read (`If-Match`): the resource is still at it, so
//!   the update was not made ([`Finding::Absent`]);
//! - for a create, the person's resources of the type at the source: none is as sent and none
//!   was written since the intent, so the create was not made ([`Finding::Absent`]).
//!
//! Anything else cannot be told from reading ([`Finding::Unclear`]: changed since, or a
//! source that rewrites what it is sent) or the source could not be read
//! ([`Finding::Unreachable`]); such a write stays unsettled for a person to check at the
//! source. Only a present or absent finding is recorded.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::audit::unsettled::{SETTLE_ROUTE, Unsettled, WRITE_SETTLED, settle_target};
use crate::audit::{Body, SourceOutcome, Written};
use crate::federation::normalise::{gateway_id, split_gateway_id};
use crate::sources::Source;
use crate::store::Store;

/// Slack for the clocks of the gateway and the source, when a create's candidates are
/// judged written before or after its intent.
const CLOCK_SLACK_US: i64 = 5 * 60 * 1_000_000;

/// What reading the source shows of a write left without an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The source holds the resource exactly as sent: the write was made.
    Present {
        /// `Type/{gateway id}`.
        resource: String,
        /// Its version there now.
        version: Option<String>,
    },
    /// The write was not made.
    Absent(String),
    /// Reading cannot tell: a person must check at the source.
    Unclear(String),
    /// The source could not be read.
    Unreachable(String),
}

impl Finding {
    /// One word: `present`, `absent`, `unclear`, `unreachable`.
    pub fn word(&self) -> &'static str {
        match self {
            Finding::Present { .. } => "present",
            Finding::Absent(_) => "absent",
            Finding::Unclear(_) => "unclear",
            Finding::Unreachable(_) => "unreachable",
        }
    }

    /// What was seen, in a sentence (ids and versions, never content).
    pub fn detail(&self) -> String {
        match self {
            Finding::Present { resource, version } => format!(
                "the source holds {resource}{} exactly as sent: the write was made",
                version
                    .as_deref()
                    .map(|v| format!(" at version {v}"))
                    .unwrap_or_default()
            ),
            Finding::Absent(why) | Finding::Unclear(why) | Finding::Unreachable(why) => why.clone(),
        }
    }
}

/// Reads the source `intent` was sent to (one of `sources`; the person's links in `store`)
/// and says what is there.
pub async fn examine(intent: &Unsettled, sources: &[Arc<dyn Source>], store: &Store) -> Finding {
    let Some(w) = intent.body.write.as_ref() else {
        return Finding::Unclear("the record is not a write".into());
    };
    let Some(source_id) = w.source.as_deref() else {
        return Finding::Unclear("the intent names no source".into());
    };
    let Some(source) = sources.iter().find(|s| s.info().id == source_id) else {
        return Finding::Unclear(format!(
            "the source `{source_id}` is not in the config: check it by hand"
        ));
    };
    let Some(sent) = w.sha256.as_deref() else {
        return Finding::Unclear("the intent names no hash of what was sent".into());
    };
    let Some(resource_type) = intent.resource_type() else {
        return Finding::Unclear("the intent names no type".into());
    };
    if w.action == "U" {
        let Some((_, local)) = w
            .resource
            .as_deref()
            .and_then(|r| r.split_once('/'))
            .and_then(|(_, id)| split_gateway_id(id))
        else {
            return Finding::Unclear("the update's intent names no resource".into());
        };
        return examine_update(source.as_ref(), resource_type, local, sent, w).await;
    }
    let Some(person) = intent
        .body
        .person
        .as_deref()
        .and_then(|p| Uuid::parse_str(p).ok())
    else {
        return Finding::Unclear("the intent names no person".into());
    };
    let patients = match source.own_patient_id(person) {
        Some(own) => vec![own],
        None => match store.person_by_id(person).await {
            Ok(Some(record)) => record
                .links
                .into_iter()
                .filter(|l| l.source_id == source_id)
                .map(|l| l.local_id)
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Finding::Unreachable(format!("the store cannot be read: {e}")),
        },
    };
    if patients.is_empty() {
        return Finding::Unclear(format!(
            "the gateway knows no patient id of the person at `{source_id}`"
        ));
    }
    examine_create(
        source.as_ref(),
        resource_type,
        &patients,
        sent,
        intent.body.recorded_us,
    )
    .await
}

async fn examine_update(
    source: &dyn Source,
    resource_type: &str,
    local: &str,
    sent: &str,
    w: &Written,
) -> Finding {
    let source_id = &source.info().id;
    let held = match source.read(resource_type, local).await {
        Ok(Some(held)) => held,
        Ok(None) => {
            return Finding::Unclear(format!(
                "{resource_type}/{source_id}.{local} is no longer at the source"
            ));
        }
        Err(e) => return Finding::Unreachable(format!("`{source_id}` could not be read: {e}")),
    };
    let version = held
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let resource = format!("{resource_type}/{source_id}.{local}");
    if as_sent(&held, true).as_deref() == Some(sent) {
        return Finding::Present { resource, version };
    }
    match (&version, &w.read_version) {
        (Some(now), Some(read)) if now == read => Finding::Absent(format!(
            "the source holds {resource} at version {now}, the version the caller read: the update was not made"
        )),
        _ => Finding::Unclear(format!(
            "the source holds {resource}{}, not as sent: changed since, or the source rewrote it; check by hand",
            version
                .as_deref()
                .map(|v| format!(" at version {v}"))
                .unwrap_or_default()
        )),
    }
}

async fn examine_create(
    source: &dyn Source,
    resource_type: &str,
    patients: &[String],
    sent: &str,
    intent_us: i64,
) -> Finding {
    let source_id = &source.info().id;
    let mut candidates = Vec::new();
    for patient in patients {
        match source.search(resource_type, patient).await {
            Ok(fetched) if fetched.truncated => {
                return Finding::Unclear(format!(
                    "the person's {resource_type}s at `{source_id}` are more than one read returns; check by hand"
                ));
            }
            Ok(fetched) => candidates.extend(fetched.resources),
            Err(e) => {
                return Finding::Unreachable(format!("`{source_id}` could not be read: {e}"));
            }
        }
    }
    for held in &candidates {
        if as_sent(held, false).as_deref() == Some(sent) {
            let Some(id) = held
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| gateway_id(source_id, id))
            else {
                continue;
            };
            return Finding::Present {
                resource: format!("{resource_type}/{id}"),
                version: held
                    .pointer("/meta/versionId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
        }
    }
    let since = intent_us.saturating_sub(CLOCK_SLACK_US);
    let newer = candidates
        .iter()
        .filter(|held| {
            held.pointer("/meta/lastUpdated")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| t.as_microsecond() >= since)
        })
        .count();
    if newer == 0 {
        Finding::Absent(format!(
            "none of the person's {} {resource_type}(s) at `{source_id}` is as sent, and none was written since the intent: the create was not made",
            candidates.len()
        ))
    } else {
        Finding::Unclear(format!(
            "{newer} of the person's {resource_type}(s) at `{source_id}` may have been written since the intent, none exactly as sent; check by hand"
        ))
    }
}

/// The SHA-256 (hex) of `held` as the gateway would have sent it: without what a source adds
/// on taking a write (`meta.versionId`, `meta.lastUpdated`, an emptied `meta`, and, for a
/// create, the new `id`).
fn as_sent(held: &Value, keep_id: bool) -> Option<String> {
    let mut body = held.clone();
    let obj = body.as_object_mut()?;
    if !keep_id {
        obj.remove("id");
    }
    if let Some(meta) = obj.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            obj.remove("meta");
        }
    }
    let bytes = serde_json::to_vec(&body).ok()?;
    Some(crate::hex(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref(),
    ))
}

/// The record settling `intent` with `finding`, made by `by` at `now_us`: stage
/// [`WRITE_SETTLED`], its target [`settle_target`] of the intent's record id, about the same
/// person, request id, source, agreement and rule. Only a present or absent finding settles a
/// write (`None` otherwise). A present write is `success` (200); an absent one `error` (404:
/// not at the source). Nothing in it claims to be the source's answer at the time.
pub fn settlement(intent: &Unsettled, finding: &Finding, by: &str, now_us: i64) -> Option<Body> {
    let w = intent.body.write.as_ref()?;
    let (outcome, status, resource, version) = match finding {
        Finding::Present { resource, version } => {
            ("success", 200, Some(resource.clone()), version.clone())
        }
        Finding::Absent(_) => ("error", 404, w.resource.clone(), None),
        Finding::Unclear(_) | Finding::Unreachable(_) => return None,
    };
    Some(Body {
        recorded_us: now_us,
        request_id: intent.body.request_id.clone(),
        user: Some(by.to_owned()),
        caller: "staff".to_owned(),
        method: "CLI".to_owned(),
        route: SETTLE_ROUTE.to_owned(),
        target: settle_target(&intent.record_id()),
        person: intent.body.person.clone(),
        sources: w
            .source
            .iter()
            .map(|s| SourceOutcome {
                source: s.clone(),
                outcome: "ok".to_owned(),
            })
            .collect(),
        policy_hash: intent.body.policy_hash.clone(),
        outcome: outcome.to_owned(),
        status,
        write: Some(Written {
            stage: WRITE_SETTLED.to_owned(),
            action: w.action.clone(),
            source: w.source.clone(),
            resource,
            version,
            sha256: w.sha256.clone(),
            agreement: w.agreement.clone(),
            rule: w.rule.clone(),
            read_version: w.read_version.clone(),
        }),
        ..Body::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sha(bytes: &[u8]) -> String {
        crate::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
    }

    #[test]
    fn what_a_source_adds_is_taken_off_before_comparing() {
        let sent = json!({"resourceType": "Goal", "lifecycleStatus": "active",
            "meta": {"security": [{"code": "R"}]}});
        let hash = sha(&serde_json::to_vec(&sent).expect("encodes"));
        let held = json!({"resourceType": "Goal", "lifecycleStatus": "active",
            "meta": {"security": [{"code": "R"}], "versionId": "1", "lastUpdated": "2026-12-01T10:00:00Z"},
            "id": "w7"});
        assert_eq!(as_sent(&held, false), Some(hash.clone()));
        assert_ne!(as_sent(&held, true), Some(hash), "an update keeps its id");
        let bare = json!({"resourceType": "Goal", "id": "g1"});
        let held = json!({"resourceType": "Goal", "id": "g1", "meta": {"versionId": "4"}});
        assert_eq!(
            as_sent(&held, true),
            Some(sha(&serde_json::to_vec(&bare).expect("encodes")))
        );
    }
}
